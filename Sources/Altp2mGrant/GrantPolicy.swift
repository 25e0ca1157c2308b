import Altp2m
import FoundationEssentials

/// Which channels the grant module may create: `policy.json` in its state
/// directory. Without a rule for a pair of domains, nothing is allowed
/// (default deny).
///
/// ```json
/// {
///   "version": 1,
///   "maxChannelsPerDomain": 16,
///   "rules": [
///     { "domains": ["web", "db"], "maxPages": 64,
///       "suites": ["chachapoly", "aesgcm"], "modes": ["encrypted"],
///       "oneWayRequired": false }
///   ]
/// }
/// ```
///
/// Rules name domains by name (ids change when a guest restarts); a rule
/// covers both directions. Decoding is strict: an unknown key (a typo such as
/// `"maxPage"`) is an error, not a silently ignored setting. Omitted rule keys
/// take the defaults of ``Rule/init(domains:maxPages:suites:modes:oneWayRequired:)``.
public struct GrantPolicy: Equatable, Sendable {
    /// The file format version this code reads and writes.
    public static let currentVersion = 1
    /// The default cap on channels per domain.
    public static let defaultMaxChannelsPerDomain = 16
    /// What the cap may be set to (every channel of a domain shares its one
    /// channel view; each takes its own window of guest frames).
    public static let maxChannelsPerDomainRange = 1...4096

    /// The most channels one domain may take part in.
    public var maxChannelsPerDomain: Int
    /// The allowed pairs and their limits.
    public var rules: [Rule]

    /// A policy; the default allows nothing.
    public init(maxChannelsPerDomain: Int = GrantPolicy.defaultMaxChannelsPerDomain, rules: [Rule] = []) {
        self.maxChannelsPerDomain = maxChannelsPerDomain
        self.rules = rules
    }

    /// What one pair of domains may have.
    public struct Rule: Equatable, Sendable {
        /// The two domain names.
        public var domains: [String]
        /// The largest window, in pages (2...512).
        public var maxPages: Int
        /// The cipher suites allowed.
        public var suites: [ChannelDescriptor.CipherSuite]
        /// The modes allowed. Isolated mode (no encryption) must be named explicitly.
        public var modes: [ChannelDescriptor.Mode]
        /// Whether channels between the two must be one-way.
        public var oneWayRequired: Bool

        /// A rule; the defaults allow windows up to 64 pages, both suites,
        /// encrypted mode only, two-way channels.
        public init(domains: [String], maxPages: Int = 64,
                    suites: [ChannelDescriptor.CipherSuite] = ChannelDescriptor.CipherSuite.allCases,
                    modes: [ChannelDescriptor.Mode] = [.encrypted], oneWayRequired: Bool = false) {
            self.domains = domains
            self.maxPages = maxPages
            self.suites = suites
            self.modes = modes
            self.oneWayRequired = oneWayRequired
        }

        /// Whether the rule is for the pair `a`, `b` (either order).
        public func covers(_ a: String, _ b: String) -> Bool {
            Set(domains) == Set([a, b]) && domains.count == 2
        }
    }

    /// The rule for a pair, if any.
    public func rule(for a: String, _ b: String) -> Rule? {
        rules.first { $0.covers(a, b) }
    }

    /// Checks a request against the policy.
    /// - Parameter channelCounts: how many channels each of the two domains
    ///   already has.
    /// - Returns: `nil` if allowed, else the refusal (a sentence with its fix).
    public func refusal(between a: String, and b: String, pages: Int, suite: ChannelDescriptor.CipherSuite,
                        mode: ChannelDescriptor.Mode, oneWay: Bool, channelCounts: (Int, Int)) -> String? {
        guard let rule = rule(for: a, b) else {
            return "no policy allows \(a) <-> \(b); run: chanctl policy allow \(a) \(b)"
        }
        if pages > rule.maxPages {
            return "the policy allows at most \(rule.maxPages) pages per channel between \(a) and \(b), not \(pages); ask for fewer pages or raise maxPages in policy.json"
        }
        if !rule.suites.contains(suite) {
            return "the policy for \(a) <-> \(b) does not allow cipher suite \(suite) (allowed: \(rule.suites.map(\.description).joined(separator: ", ")))"
        }
        if !rule.modes.contains(mode) {
            return "the policy for \(a) <-> \(b) does not allow \(mode) mode (allowed: \(rule.modes.map(\.description).joined(separator: ", ")))"
        }
        if rule.oneWayRequired && !oneWay {
            return "the policy for \(a) <-> \(b) requires one-way channels; ask for a one-way channel"
        }
        for (name, count) in [(a, channelCounts.0), (b, channelCounts.1)] where count >= maxChannelsPerDomain {
            return "\(name) already has \(count) channels, the most the policy allows (maxChannelsPerDomain = \(maxChannelsPerDomain)); destroy one first"
        }
        return nil
    }

    // MARK: File format

    /// Parses `policy.json`.
    /// - Throws: ``GrantError/policyFile(_:)`` naming the rule and key at fault.
    public static func decode(_ bytes: [UInt8], path: String = "policy.json") throws(GrantError) -> GrantPolicy {
        let document: PolicyDocument
        do {
            document = try JSONDecoder().decode(PolicyDocument.self, from: Data(bytes))
        } catch let error as PolicyDocument.Problem {
            throw .policyFile("\(path): \(error.text)")
        } catch {
            throw .policyFile("\(path): not valid JSON (\(error)); see docs/GRANT.md for the format")
        }
        return document.policy
    }

    /// The policy as `policy.json` bytes (sorted keys, indented).
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // Encoding plain strings, integers and booleans cannot fail.
        let data = (try? encoder.encode(PolicyDocument(policy: self))) ?? Data()
        return Array(data) + [UInt8(ascii: "\n")]
    }
}

/// The JSON shape of `policy.json`, with strict key checking.
struct PolicyDocument: Codable {
    var policy: GrantPolicy

    init(policy: GrantPolicy) { self.policy = policy }

    struct Problem: Error { var text: String }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    private static let topKeys = ["version", "maxChannelsPerDomain", "rules"]
    private static let ruleKeys = ["domains", "maxPages", "suites", "modes", "oneWayRequired"]

    init(from decoder: any Decoder) throws {
        let top = try decoder.container(keyedBy: Key.self)
        try Self.rejectUnknown(top.allKeys, allowed: Self.topKeys, where: "top level")
        let version = try top.decodeIfPresent(Int.self, forKey: Key("version")) ?? GrantPolicy.currentVersion
        guard version == GrantPolicy.currentVersion else {
            throw Problem(text: "version \(version) is not supported (this build reads \(GrantPolicy.currentVersion))")
        }
        let maxChannels = try top.decodeIfPresent(Int.self, forKey: Key("maxChannelsPerDomain"))
            ?? GrantPolicy.defaultMaxChannelsPerDomain
        guard maxChannels >= 1 else { throw Problem(text: "maxChannelsPerDomain must be at least 1, not \(maxChannels)") }
        var rules: [GrantPolicy.Rule] = []
        if top.contains(Key("rules")) {
            var list = try top.nestedUnkeyedContainer(forKey: Key("rules"))
            while !list.isAtEnd {
                let number = rules.count + 1
                let rule = try list.nestedContainer(keyedBy: Key.self)
                try Self.rejectUnknown(rule.allKeys, allowed: Self.ruleKeys, where: "rule \(number)")
                let domains = try rule.decodeIfPresent([String].self, forKey: Key("domains")) ?? []
                guard domains.count == 2, domains[0] != domains[1], domains.allSatisfy({ !$0.isEmpty }) else {
                    throw Problem(text: "rule \(number): \"domains\" must name two different domains")
                }
                var parsed = GrantPolicy.Rule(domains: domains)
                if let pages = try rule.decodeIfPresent(Int.self, forKey: Key("maxPages")) {
                    guard RingGeometry.pageCountRange.contains(pages) else {
                        throw Problem(text: "rule \(number): maxPages \(pages) is outside \(RingGeometry.pageCountRange)")
                    }
                    parsed.maxPages = pages
                }
                if let names = try rule.decodeIfPresent([String].self, forKey: Key("suites")) {
                    parsed.suites = try names.map { name throws(Problem) in
                        guard let suite = ChannelDescriptor.CipherSuite(name) else {
                            throw Problem(text: "rule \(number): unknown suite '\(name)' (chachapoly, aesgcm)")
                        }
                        return suite
                    }
                }
                if let names = try rule.decodeIfPresent([String].self, forKey: Key("modes")) {
                    parsed.modes = try names.map { name throws(Problem) in
                        guard let mode = ChannelDescriptor.Mode(name) else {
                            throw Problem(text: "rule \(number): unknown mode '\(name)' (encrypted, isolated)")
                        }
                        return mode
                    }
                }
                parsed.oneWayRequired = try rule.decodeIfPresent(Bool.self, forKey: Key("oneWayRequired")) ?? false
                if rules.contains(where: { $0.covers(domains[0], domains[1]) }) {
                    throw Problem(text: "rule \(number): a second rule for \(domains[0]) <-> \(domains[1])")
                }
                rules.append(parsed)
            }
        }
        policy = GrantPolicy(maxChannelsPerDomain: maxChannels, rules: rules)
    }

    func encode(to encoder: any Encoder) throws {
        var top = encoder.container(keyedBy: Key.self)
        try top.encode(GrantPolicy.currentVersion, forKey: Key("version"))
        try top.encode(policy.maxChannelsPerDomain, forKey: Key("maxChannelsPerDomain"))
        var list = top.nestedUnkeyedContainer(forKey: Key("rules"))
        for rule in policy.rules {
            var entry = list.nestedContainer(keyedBy: Key.self)
            try entry.encode(rule.domains, forKey: Key("domains"))
            try entry.encode(rule.maxPages, forKey: Key("maxPages"))
            try entry.encode(rule.suites.map(\.description), forKey: Key("suites"))
            try entry.encode(rule.modes.map(\.description), forKey: Key("modes"))
            try entry.encode(rule.oneWayRequired, forKey: Key("oneWayRequired"))
        }
    }

    private static func rejectUnknown(_ keys: [Key], allowed: [String], where place: String) throws {
        if let unknown = keys.first(where: { !allowed.contains($0.stringValue) }) {
            throw Problem(text: "\(place): unknown key '\(unknown.stringValue)'; expected one of \(allowed.joined(separator: ", "))")
        }
    }
}
