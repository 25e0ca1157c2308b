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
