import Altp2mSim
import ArgumentParser

/// `chanctl audit show`: the grant module's audit log (`audit.log` in its
/// state directory), one line per change of policy, keys or channels.
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "The grant module's audit log: who changed policy, keys or channels, when, and how it ended.",
        subcommands: [Show.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the audit log, oldest first (--json: {\"records\":[...]}).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions

        func run() throws {
            try grantRun(options, backend, "grant.audit.show") { r in
                let records = r["records"]?.array ?? []
                return records.isEmpty ? "no audit records" : records.map(Self.line).joined(separator: "\n")
            }
        }

        /// `TIME uid=UID(USER) pid=PID ACTION [CHANNEL] [A,B] [generation=G] [k=v ...] ok|failed: ERROR`
        static func line(_ r: JSONValue) -> String {
            func text(_ key: String) -> String { r[key].map(renderScalar) ?? "" }
            var parts = [text("time"), "uid=\(text("uid"))(\(text("user")))", "pid=\(text("pid"))", text("action")]
            if r["channel"] != nil { parts.append(text("channel")) }
            if let domains = r["domains"]?.array { parts.append(domains.map(renderScalar).joined(separator: ",")) }
            if r["generation"] != nil { parts.append("generation=\(text("generation"))") }
            if case .object(let details)? = r["details"] {
                parts += details.keys.sorted().map { "\($0)=\(renderScalar(details[$0] ?? .null))" }
            }
            parts.append(r["error"].map { "failed: \(renderScalar($0))" } ?? text("outcome"))
            return parts.joined(separator: " ")
        }
    }
}
