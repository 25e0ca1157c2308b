import Altp2mSim
#if canImport(Glibc)
import Glibc
#endif

/// A command's failure with its exit code and what to print.
struct CommandFailure: Error {
    /// 2: the command line was wrong.
    static let usageExitCode: Int32 = 2

    var exitCode: Int32
    var json: JSONValue
    var text: String

    /// A failure that is not the hypervisor's (exit 1).
    static func failure(_ message: String) -> CommandFailure {
        CommandFailure(exitCode: 1, json: ["ok": false, "error": .string(message)], text: message)
    }

    /// Bad usage found after parsing (exit 2).
    static func usage(_ message: String) -> CommandFailure {
        CommandFailure(exitCode: usageExitCode, json: ["ok": false, "error": .string(message)], text: message)
    }

    /// A simulator error: hypervisor errors exit 3, everything else 1.
    init(_ error: SimClientError) {
        switch error {
        case .hypervisor: exitCode = 3
        case .badArgument: exitCode = Self.usageExitCode
        default: exitCode = 1
        }
        json = error.json
        text = error.description
    }

    init(exitCode: Int32, json: JSONValue, text: String) {
        self.exitCode = exitCode
        self.json = json
        self.text = text
    }

    func report(json wantsJSON: Bool) {
        if wantsJSON {
            print(json.serialized)
        } else {
            var standardError = StandardError()
            print("chanctl: \(text)", to: &standardError)
        }
    }
}

enum JSONValueOutput {
    /// `{"ok":false,"error":...}` as text.
    static func error(_ message: String) -> String {
        JSONValue.object(["ok": false, "error": .string(message)]).serialized
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        let bytes = Array(string.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

/// Prints a successful response: the object itself under `--json`, else
/// `text(response)` or, by default, one `key: value` line per field.
func emit(_ response: JSONValue, json: Bool, text: ((JSONValue) -> String)? = nil) {
    if json {
        var object = response.object ?? [:]
        object["ok"] = true
        print(JSONValue.object(object).serialized)
        return
    }
    if let text {
        let rendered = text(response)
        if !rendered.isEmpty { print(rendered) }
        return
    }
    print(renderFields(response))
}

/// `key: value` lines for every field but `ok`, keys sorted.
func renderFields(_ value: JSONValue, indent: String = "") -> String {
    guard let object = value.object else { return indent + renderScalar(value) }
    var lines: [String] = []
    for key in object.keys.sorted() where key != "ok" {
        let field = object[key]!
        switch field {
        case .object:
            lines.append("\(indent)\(key):")
            lines.append(renderFields(field, indent: indent + "  "))
        case .array(let items) where items.contains(where: { $0.object != nil }):
            lines.append("\(indent)\(key):")
            for item in items { lines.append(renderFields(item, indent: indent + "  ") + "\n") }
        default:
            lines.append("\(indent)\(key): \(renderScalar(field))")
        }
    }
    return lines.joined(separator: "\n")
}

func renderScalar(_ value: JSONValue) -> String {
    switch value {
    case .string(let s): s
    case .null: "-"
    case .array(let items): items.map(renderScalar).joined(separator: " ")
    default: value.serialized
    }
}
