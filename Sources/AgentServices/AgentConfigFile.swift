#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// guest-agent's configuration file (default `/etc/secure-channel/agent.conf`):
/// one `key = value` per line, keys named as the long options without their
/// dashes, `#` comments. A value on the command line wins over the file's.
///
/// Parsing is separate from reading, and pure, so the fuzzer and the unit
/// tests reach it; every value is checked here, so a mistake is reported
/// with FILE:LINE before the agent attaches.
package struct AgentConfigFile: Sendable, Equatable {
    package static let defaultPath = "/etc/secure-channel/agent.conf"

    /// The form a key's value takes.
    package enum Form: Sendable, Equatable {
        /// Non-empty text without whitespace (a domain name).
        case word
        /// A file or directory; a relative one is taken from the file's directory.
        case path
        /// Exactly this many hex digits.
        case hex(digits: Int)
        /// One of these words.
        case choice([String])
        /// A whole number in the range.
        case integer(ClosedRange<Int>)
        /// Seconds, more than 0 and at most this many.
        case seconds(max: Double)

        /// What a correct value looks like, for error messages.
        package var expected: String {
            switch self {
            case .word: "a name without spaces"
            case .path: "a path (absolute, or relative to this file's directory)"
            case .hex(let digits): "\(digits) hex digits"
            case .choice(let words): "one of " + words.joined(separator: ", ")
            case .integer(let range): "a whole number in \(range.lowerBound)...\(range.upperBound)"
            case .seconds(let max): "seconds, more than 0 and at most \(Int(max))"
            }
        }
    }

    /// A key the file may hold.
    package struct Key: Sendable, Equatable {
        package var name: String
        package var form: Form
        /// Used by `run` only; other commands read the file and ignore it.
        package var runOnly: Bool
    }

    /// Every key, in the order the documentation lists them. The choices
    /// repeat the command line's (guest-agent checks they agree).
    package static let keys: [Key] = [
        Key(name: "domain", form: .word, runOnly: false),
        Key(name: "key", form: .path, runOnly: false),
        Key(name: "host-key", form: .hex(digits: 64), runOnly: false),
        Key(name: "backend", form: .choice(["sim", "xen", "xen-sim"]), runOnly: false),
        Key(name: "state-dir", form: .path, runOnly: false),
        Key(name: "enforcement", form: .choice(["software", "mprotect"]), runOnly: false),
        Key(name: "log-level", form: .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]), runOnly: false),
        Key(name: "services", form: .path, runOnly: true),
        Key(name: "wait", form: .choice(["spin", "block", "adaptive"]), runOnly: true),
        Key(name: "poll-ms", form: .integer(1...10_000), runOnly: true),
        Key(name: "handshake-timeout", form: .seconds(max: 3600), runOnly: true),
    ]

    package static func key(named name: String) -> Key? { keys.first { $0.name == name } }

    /// A checked value.
    package enum Value: Sendable, Equatable {
        case text(String)
        case integer(Int)
        case seconds(Double)

        package var text: String? { if case .text(let t) = self { t } else { nil } }
    }

    /// One `key = value` line.
    package struct Entry: Sendable, Equatable {
        package var key: String
        package var value: Value
        /// 1-based line in the file.
        package var line: Int

        package init(key: String, value: Value, line: Int) {
            self.key = key
            self.value = value
            self.line = line
        }
    }

    /// A mistake in the file: where, what, and the fix.
    package struct ContentError: Error, CustomStringConvertible, Equatable {
        package var file: String
        package var line: Int
        package var problem: String
        package var description: String { "\(file):\(line): \(problem)" }

        package init(file: String, line: Int, problem: String) {
            self.file = file
            self.line = line
            self.problem = problem
        }
    }

    /// The file the entries came from, as given.
    package var file: String
    package var entries: [Entry]

    package func entry(_ key: String) -> Entry? { entries.first { $0.key == key } }

    /// Lines longer than this are refused: a configuration line is short,
    /// and a bound keeps a wrong file (or fuzzed input) cheap to reject.
    package static let maximumLineBytes = 4096

    /// The entries of `text`. `file` names it in errors; `directory` is what
    /// a relative path is resolved against (the file's directory).
    package static func parse(_ text: String, file: String, directory: String) throws(ContentError) -> AgentConfigFile {
        var entries: [Entry] = []
        var number = 0
        // "\r\n" is one Character in Swift: split on it too, or a file
        // written on Windows would be one long line.
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            number += 1
            func fail(_ problem: String) -> ContentError { ContentError(file: file, line: number, problem: problem) }
            guard rawLine.utf8.count <= maximumLineBytes else {
                throw fail("the line is longer than \(maximumLineBytes) bytes; is this the agent's configuration file?")
            }
            let line = withoutComment(rawLine)
            if line.isEmpty { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw fail("'\(line)' is not a setting: write KEY = VALUE, e.g. 'domain = web'")
            }
            let name = trimmed(line[..<equals])
            let rawValue = trimmed(line[line.index(after: equals)...])
            if name.hasPrefix("--") {
                throw fail("write the key without dashes: '\(name.dropFirst(2)) = \(rawValue)'")
            }
            guard let key = key(named: name) else {
                throw fail("unknown key '\(name)': the keys are \(keys.map(\.name).joined(separator: ", "))")
            }
            if let earlier = entries.first(where: { $0.key == name }) {
                throw fail("'\(name)' is set twice, on line \(earlier.line) and line \(number): keep one of them")
            }
            guard !rawValue.isEmpty else {
                throw fail("'\(name)' has no value: write '\(name) = VALUE' with \(key.form.expected), or remove the line")
            }
            guard let value = check(rawValue, as: key.form, directory: directory) else {
                throw fail("bad \(name) '\(rawValue)': expected \(key.form.expected)")
            }
            entries.append(Entry(key: name, value: value, line: number))
        }
        return AgentConfigFile(file: file, entries: entries)
    }

    /// The line without its comment: `#` at the start of the line or after
    /// whitespace starts one (so a value may still contain a `#` inside a word).
    static func withoutComment(_ line: Substring) -> String {
        var previous: Character = " "
        var end = line.endIndex
        for index in line.indices {
            let c = line[index]
            if c == "#", previous == " " || previous == "\t" { end = index; break }
            previous = c
        }
        return trimmed(line[..<end])
    }

    static func trimmed(_ text: Substring) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = text.firstIndex(where: { !isSpace($0) }),
              let last = text.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(text[first...last])
    }

    /// `raw` as a value of `form`, or nil when it is not one.
    static func check(_ raw: String, as form: Form, directory: String) -> Value? {
        let hasSpace = raw.contains { $0 == " " || $0 == "\t" }
        // A control character in a value is a corrupted file, never meant.
        guard !raw.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return nil }
        switch form {
        case .word:
            return hasSpace ? nil : .text(raw)
        case .path:
            return .text(resolve(raw, against: directory))
        case .hex(let digits):
            return raw.count == digits && raw.allSatisfy(\.isHexDigit) ? .text(raw) : nil
        case .choice(let words):
            return words.contains(raw) ? .text(raw) : nil
        case .integer(let range):
            guard let n = Int(raw), range.contains(n) else { return nil }
            return .integer(n)
        case .seconds(let max):
            guard raw.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), let s = Double(raw), s > 0, s <= max else {
                return nil
            }
            return .seconds(s)
        }
    }

    /// A relative path from the file is taken from the file's directory, not
    /// from wherever the agent was started (a service's working directory is `/`).
    package static func resolve(_ path: String, against directory: String) -> String {
        if path.hasPrefix("/") { return path }
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        return (base.isEmpty ? "." : base) + "/" + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
    }

    /// The directory of `path` (".", for a bare name).
    package static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
