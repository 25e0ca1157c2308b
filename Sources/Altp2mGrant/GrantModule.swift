#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import ChannelCrypto

/// The host side of secure channels: creates channels between two domains,
/// destroys them, and keeps the keys, the policy and the registry that go
/// with them.
///
/// A channel is `N` shared frames that each domain sees through a window of
/// `N` gfns, and only in its *channel view* (one altp2m view per domain,
/// shared by all of that domain's channels); every other view, view 0
/// included, denies the window and the gfns that back it. Each agent gets a
/// descriptor sealed to its key and signed by the host. See docs/GRANT.md.
///
/// ## State directory
/// `host-ed25519.key` (the signing key, 0600, made on first use),
/// `agents.json` (agent public keys by domain name), `policy.json` (what may
/// be connected; without it nothing may), `channels.json` (the registry,
/// replaced atomically), `grant.lock` (one grant module per directory) and
/// `audit.log` (one line per change of policy, keys or channels, appended).
///
/// ## Use
/// ```swift
/// let grants = try GrantModule(host: host, stateDirectory: "/var/lib/secure-channel/grant")
/// try grants.allow("web", "db")
/// let made = try grants.createChannel(ChannelRequest(name: "orders", between: "web", and: "db", pageCount: 17))
/// ```
///
/// One owner at a time, like the hypervisor handle it drives; the methods
/// are synchronous and not thread-safe.
public final class GrantModule {
    /// The hypervisor the module works on.
    public let host: any ChannelHost
    /// The directory that holds the keys, the policy and the registry.
    public let stateDirectory: String

    let clock: () -> UInt64
    var keys: AgentKeyRing
    let registry: ChannelRegistry
    private let lock: StateLock
    let auditLog: AuditLog

    /// Who the next operations are recorded as in the audit log
    /// (`audit.log`); this process until the caller says otherwise (the
    /// simulator daemon sets it to each request's client).
    public var auditActor: AuditActor = .currentProcess
    /// Why the last audit record could not be written, or nil when it was.
    /// (Each recorded operation sets or clears it; a caller may clear it.)
    public var lastAuditFailure: String?

    /// The policy file's name in the state directory.
    public static let policyFile = "policy.json"
    /// The registry file's name in the state directory.
    public static let registryFile = "channels.json"

    /// Opens (creating if needed) the grant state in `stateDirectory`.
    ///
    /// - Parameters:
    ///   - host: the hypervisor backend.
    ///   - stateDirectory: a directory private to this user (0700); created if missing.
    ///   - registryStorage: where the registry lives; by default
    ///     `channels.json` in the state directory.
    ///   - clock: the current time in Unix seconds (descriptor creation and expiry).
    ///   - lockWaitMilliseconds: how long to wait for another grant module
    ///     on the same directory (`grant.lock`) to finish; 0 fails at once.
    ///     `chanctl` waits, so that an operator's command and a
    ///     `chanctl domain watch` sweep that collide both go through.
    /// - Throws: ``GrantError`` naming the file and the fix.
    public init(host: any ChannelHost, stateDirectory: String, registryStorage: (any RegistryStorage)? = nil,
                clock: @escaping () -> UInt64 = GrantModule.systemClock,
                lockWaitMilliseconds: Int = 0) throws(GrantError) {
        self.host = host
        self.stateDirectory = stateDirectory
        self.clock = clock
        try StateFiles.preparePrivateDirectory(stateDirectory)
        lock = try StateLock(path: "\(stateDirectory)/grant.lock", waitMilliseconds: lockWaitMilliseconds)
        auditLog = AuditLog(path: "\(stateDirectory)/\(Self.auditFile)")
        keys = try AgentKeyRing(directory: stateDirectory)
        registry = try ChannelRegistry(
            storage: registryStorage ?? FileRegistryStorage(path: "\(stateDirectory)/\(Self.registryFile)"))
        // policy.json is read when it is needed, so a malformed one does not
        // keep the operator from listing or destroying channels.
    }

    /// The current time from the system clock, in Unix seconds.
    public static func systemClock() -> UInt64 { UInt64(max(0, time(nil))) }

    // MARK: Keys

    /// The host's Ed25519 public key: agents pin it to verify descriptors.
    public var hostPublicKey: Curve25519.Signing.PublicKey { keys.hostKey.publicKey }

    /// The registered agent keys, by domain name.
    public var agentKeys: [String: Curve25519.KeyAgreement.PublicKey] { keys.agents }

    /// Registers (or replaces) the X25519 public key of the agent in the
    /// domain named `domain`; descriptors for that domain are sealed to it.
    public func registerAgentKey(_ key: Curve25519.KeyAgreement.PublicKey, forDomain domain: String) throws(GrantError) {
        try audited(.keyRegister, domains: [domain], details: ["public_key": key.hex]) { () throws(GrantError) in
            guard !domain.isEmpty else { throw .invalidArgument("a domain name is needed to register an agent key") }
            try keys.register(key, for: domain)
        }
    }

    /// Forgets the agent key of a domain; returns whether one was registered.
    @discardableResult
    public func removeAgentKey(forDomain domain: String) throws(GrantError) -> Bool {
        try audited(.keyRemove, domains: [domain]) { () throws(GrantError) -> Bool in try keys.remove(domain) }
    }

    // MARK: Policy

    private var policyPath: String { "\(stateDirectory)/\(Self.policyFile)" }

    /// Reads `policy.json` (an absent file is the empty, deny-all policy).
    /// The file is read again for every creation, so hand edits take effect.
    public func loadPolicy() throws(GrantError) -> GrantPolicy {
        guard let bytes = try StateFiles.read(policyPath) else { return GrantPolicy() }
        return try GrantPolicy.decode(bytes, path: policyPath)
    }

    /// Replaces `policy.json`.
    public func savePolicy(_ policy: GrantPolicy) throws(GrantError) {
        try StateFiles.writeAtomically(policyPath, policy.encoded())
    }

    /// Allows channels between the domains named `a` and `b` (replacing an
    /// earlier rule for the pair): what `chanctl policy allow A B` does.
    public func allow(_ a: String, _ b: String, maxPages: Int = 64,
                      suites: [ChannelDescriptor.CipherSuite] = ChannelDescriptor.CipherSuite.allCases,
                      modes: [ChannelDescriptor.Mode] = [.encrypted], oneWayRequired: Bool = false) throws(GrantError) {
        let details = ["max_pages": "\(maxPages)", "suites": suites.map(\.description).joined(separator: ","),
                       "modes": modes.map(\.description).joined(separator: ","), "one_way_required": "\(oneWayRequired)"]
        try audited(.policyAllow, domains: [a, b], details: details) { () throws(GrantError) in
            guard !a.isEmpty, !b.isEmpty, a != b else {
                throw .invalidArgument("a policy rule names two different domains")
            }
            guard RingGeometry.pageCountRange.contains(maxPages) else {
                throw .invalidArgument("maxPages must be within \(RingGeometry.pageCountRange), not \(maxPages)")
            }
            guard !suites.isEmpty, !modes.isEmpty else {
                throw .invalidArgument("a policy rule must allow at least one suite and one mode")
            }
            var policy = try loadPolicy()
            policy.rules.removeAll { $0.covers(a, b) }
            policy.rules.append(GrantPolicy.Rule(domains: [a, b], maxPages: maxPages, suites: suites, modes: modes,
                                                 oneWayRequired: oneWayRequired))
            try savePolicy(policy)
        }
    }

    /// Sets the most channels one domain may take part in: what `chanctl
    /// policy limit --max-channels-per-domain N` does. Existing channels
    /// stay; the cap applies to the next creation.
    public func setMaxChannelsPerDomain(_ count: Int) throws(GrantError) {
        try audited(.policyLimit, details: ["max_channels_per_domain": "\(count)"]) { () throws(GrantError) in
            guard GrantPolicy.maxChannelsPerDomainRange.contains(count) else {
                throw .invalidArgument("maxChannelsPerDomain must be within \(GrantPolicy.maxChannelsPerDomainRange), not \(count)")
            }
            var policy = try loadPolicy()
            policy.maxChannelsPerDomain = count
            try savePolicy(policy)
        }
    }

    /// Removes the rule for `a` and `b`; returns whether there was one.
    /// Existing channels stay until destroyed.
    @discardableResult
    public func disallow(_ a: String, _ b: String) throws(GrantError) -> Bool {
        try audited(.policyDeny, domains: [a, b]) { () throws(GrantError) -> Bool in
            var policy = try loadPolicy()
            let before = policy.rules.count
            policy.rules.removeAll { $0.covers(a, b) }
            guard policy.rules.count != before else { return false }
            try savePolicy(policy)
            return true
        }
    }

    // MARK: Inspection

    /// Every channel, by name.
    public func listChannels() -> [ChannelSummary] {
        registry.contents.channels.values.sorted { $0.name < $1.name }.map(summary)
    }

    /// Every domain that carries a channel, with the name it was registered
    /// under: the domains whose death `domainDied` must hear of.
    public var domainsWithChannels: [DomainID: String] {
        var domains: [DomainID: String] = [:]
        for side in registry.contents.channels.values.flatMap(\.sides) { domains[side.domain] = side.domainName }
        return domains
    }

    /// A channel's state: whether the hypervisor still holds what the grant
    /// module set up (remap, lock-out, visibility), its views and its age.
    public func showChannel(_ name: String) throws(GrantError) -> ChannelDetails {
        guard let channel = registry.contents.channels[name] else { throw .noSuchChannel(name) }
        var problems: [String] = []
        var views: [DomainID: [ActiveView]] = [:]
        for side in channel.sides {
            do {
                views[side.domain] = try host.activeViews(side.domain)
            } catch {
                problems.append("\(side.domainName) (\(side.domain)): cannot list views: \(error)")
                continue
            }
            if (try? host.logDirtyMode(side.domain)) == true {
                problems.append("\(side.domainName) (\(side.domain)) is in log-dirty mode (live migration or VRAM tracking): a write fault there resets the channel's gfns to the default access in every view; destroy it (chanctl channel destroy \(channel.name)) and create it again once the migration has finished")
            }
            problems += verifyWindow(side, pageCount: channel.pageCount)
            if let visible = views[side.domain]?.first(where: { $0.view == side.view })?.isVisible, !visible {
                problems.append("\(side.domainName) (\(side.domain)): the channel \(side.view) is hidden from VMFUNC")
            }
        }
        let now = clock()
        let state: ChannelDetails.State = !problems.isEmpty ? .degraded(problems)
            : now >= channel.expiresAt ? .descriptorsExpired : .active
        return ChannelDetails(channel: summary(channel), state: state,
                              ageSeconds: now > channel.createdAt ? now - channel.createdAt : 0, views: views)
    }

    func summary(_ channel: ChannelState) -> ChannelSummary {
        func end(_ side: SideState) -> ChannelEndInfo {
            ChannelEndInfo(domain: side.domain, domainName: side.domainName, view: side.view,
                           windowFirstGFN: side.windowFirstGFN ?? .invalid, backingGFNs: side.backing)
        }
        return ChannelSummary(name: channel.name, id: channel.id, initiator: end(channel.initiator),
                              responder: end(channel.responder), pageCount: channel.pageCount,
                              isOneWay: channel.isOneWay, suite: channel.suite, mode: channel.mode,
                              notificationPort: channel.port ?? 0, createdAt: channel.createdAt,
                              expiresAt: channel.expiresAt, generation: channel.generation,
                              reissuedAt: channel.reissuedAt)
    }
}
