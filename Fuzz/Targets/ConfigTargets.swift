import AgentServices
import Altp2mGrant

/// Target `services`: guest-agent's `--services` file parser.
///
/// Oracle: a file that parses yields only rules whose pattern uses channel
/// name characters and wildcards, and whose `forward-unix` path is absolute
/// and fits a socket address; matching any name against every rule returns
/// (the glob matcher backtracks linearly, so long patterns cannot hang it).
enum ServicesTarget {
    static let target = FuzzTarget(
        name: "services", summary: "guest-agent --services files",
        run: { bytes throws(OracleViolation) in try run(bytes) }, seeds: seeds)

    static func run(_ bytes: [UInt8]) throws(OracleViolation) {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let config = try? ServiceConfig.parse(text, file: "services") else { return }
        for rule in config.rules {
            guard !rule.pattern.isEmpty, rule.pattern.utf8.allSatisfy({ isPatternByte($0) }) else {
                throw OracleViolation("accepted the pattern '\(rule.pattern)' on line \(rule.line)")
            }
            if case .forwardUnix(let path) = rule.service,
               !path.hasPrefix("/") || path.utf8.count >= ServiceConfig.socketPathCapacity {
                throw OracleViolation("accepted the socket path '\(path)' on line \(rule.line)")
            }
        }
        for name in ["a", "fuzz-channel", String(repeating: "ab", count: 32)] {
            _ = config.service(for: name)
        }
    }

    static func isPatternByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: "*") || b == UInt8(ascii: "?")
    }

    static func seeds() -> [[UInt8]] {
        [
            "# services\nweb-* forward-unix /run/web.sock\nlogs sink\nping? echo\n* refuse\n",
            "a*b*c*d echo   # comment\n\n\tq refuse\r\n",
        ].map { Array($0.utf8) }
    }
}

/// Target `agent-config`: guest-agent's configuration file
/// (/etc/secure-channel/agent.conf) parser.
///
/// Oracle: a file that parses yields only known keys, each once, on lines
/// in order; every value has its key's form (paths absolute, since the
/// directory given is; numbers in range; no control characters).
enum AgentConfigTarget {
    static let target = FuzzTarget(
        name: "agent-config", summary: "guest-agent's configuration file",
        run: { bytes throws(OracleViolation) in try run(bytes) }, seeds: seeds)

    static func run(_ bytes: [UInt8]) throws(OracleViolation) {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let file = try? AgentConfigFile.parse(text, file: "agent.conf", directory: "/etc/secure-channel") else { return }
        var seen = Set<String>(), lastLine = 0
        for entry in file.entries {
            guard let key = AgentConfigFile.key(named: entry.key), seen.insert(entry.key).inserted, entry.line > lastLine else {
                throw OracleViolation("accepted key '\(entry.key)' on line \(entry.line) (unknown, repeated or out of order)")
            }
            lastLine = entry.line
            guard valid(entry.value, key.form) else {
                throw OracleViolation("accepted \(entry.key) = \(entry.value) on line \(entry.line)")
            }
        }
    }

    static func valid(_ value: AgentConfigFile.Value, _ form: AgentConfigFile.Form) -> Bool {
        switch (value, form) {
        case (.text(let t), _) where t.isEmpty || t.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }):
            return false
        case (.text(let t), .word): return !t.contains(" ") && !t.contains("\t")
        case (.text(let t), .path): return t.hasPrefix("/")
        case (.text(let t), .hex(let digits)): return t.count == digits && t.allSatisfy(\.isHexDigit)
        case (.text(let t), .choice(let words)): return words.contains(t)
        case (.integer(let n), .integer(let range)): return range.contains(n)
        case (.seconds(let s), .seconds(let max)): return s > 0 && s <= max
        default: return false
        }
    }

    static func seeds() -> [[UInt8]] {
        [
            "# agent\ndomain = web\nkey = web.key # here\nhost-key = \(String(repeating: "ab", count: 32))\nbackend = xen\n"
                + "state-dir = ../state\nenforcement = software\nlog-level = debug\nservices = /etc/s.conf\n"
                + "wait = spin\npoll-ms = 20\nhandshake-timeout = 1.5\n",
            "\tdomain=a\r\n\n  # c\nwait = block\n",
        ].map { Array($0.utf8) }
    }
}

/// Target `policy`: the grant module's `policy.json`.
///
/// Oracle: a policy that decodes encodes to bytes that decode to the same
/// policy (what `chanctl policy` writes back is what it read).
enum PolicyTarget {
    static let target = FuzzTarget(
        name: "policy", summary: "the grant module's policy.json",
        run: { bytes throws(OracleViolation) in try run(bytes) }, seeds: seeds)

    static func run(_ bytes: [UInt8]) throws(OracleViolation) {
        guard let policy = try? GrantPolicy.decode(bytes) else { return }
        guard let again = try? GrantPolicy.decode(policy.encoded()), again == policy else {
            throw OracleViolation("a decoded policy does not survive encoding and decoding")
        }
        _ = policy.refusal(between: "a", and: "b", pages: 4, suite: .chachapoly, mode: .encrypted,
                           oneWay: false, channelCounts: (0, 0))
    }

    static func seeds() -> [[UInt8]] {
        let rich = GrantPolicy(maxChannelsPerDomain: 8, rules: [
            GrantPolicy.Rule(domains: ["web", "db"], maxPages: 16, suites: [.chachapoly], modes: [.encrypted], oneWayRequired: false),
            GrantPolicy.Rule(domains: ["logs", "metrics"], maxPages: 4, suites: [.aesgcm, .chachapoly], modes: [.isolated], oneWayRequired: true),
        ])
        return [GrantPolicy().encoded(), rich.encoded()]
    }
}
