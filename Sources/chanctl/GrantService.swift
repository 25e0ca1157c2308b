import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto

/// The grant module behind `chanctl keys|policy|channel`.
///
/// With the simulator it runs inside the daemon (`sim serve` registers it as
/// a ``SimDaemonExtension``) over the daemon's journaled channel host, with
/// its state in `STATE/grant`; the commands send `grant.*` requests. With
/// `--backend xen` the same operations run in the `chanctl` process over
/// `XenControl`. Either way the answers are these fields.
final class GrantService: SimDaemonExtension {
    let grants: GrantModule
    /// Who the request being answered comes from, for the audit log.
    private let requester: () -> AuditActor

    init(grants: GrantModule, requester: @escaping () -> AuditActor = { .currentProcess }) {
        self.grants = grants
        self.requester = requester
    }

    /// The grant module inside a daemon, on its journaled host; the audit
    /// log records each request's client (SO_PEERCRED), not the daemon.
    static func inDaemon(_ daemon: SimDaemon) throws(GrantError) -> GrantService {
        GrantService(grants: try GrantModule(host: daemon.journaledChannelHost,
                                             stateDirectory: daemon.stateDirectory.grantPath)) { [weak daemon] in
            guard let peer = daemon?.currentRequestPeer else { return .currentProcess }
            return AuditActor(uid: peer.uid, pid: peer.pid)
        }
    }

    func handles(_ op: String) -> Bool { op.hasPrefix("grant.") }

    func domainDied(_ domain: DomainID) {
        grants.auditActor = requester()
        _ = try? grants.domainDied(domain)
    }

    func domainWillBeDestroyed(_ domain: DomainID) {
        grants.auditActor = requester()
        _ = try? grants.domainDied(domain)
    }

    /// An agent process left a running domain: its channels stay, and the
    /// peers of those whose window it mapped are told (a per-side count in
    /// the control page, then a wake-up).
    func guestProcessExited(_ domain: DomainID, windows: [GuestWindowMapping]) {
        _ = try? grants.agentProcessExited(domain, mapped: windows.map { ($0.firstGFN, $0.pageCount) })
    }

    // MARK: Operations

    func handle(_ op: String, arguments a: [String: JSONValue]) throws(SimDaemonExtensionError) -> [String: JSONValue] {
        grants.auditActor = requester()
        grants.lastAuditFailure = nil
        var fields = try perform(op, arguments: a)
        if let failure = grants.lastAuditFailure {
            // The operation happened; say loudly that its record is missing.
            fields["audit_error"] = .string(failure)
        }
        return fields
    }

    private func perform(_ op: String, arguments a: [String: JSONValue]) throws(SimDaemonExtensionError) -> [String: JSONValue] {
        func string(_ key: String) throws(SimDaemonExtensionError) -> String {
            guard let value = a[key]?.string, !value.isEmpty else { throw .usage("missing argument '\(key)'") }
            return value
        }
        do {
            switch op {
            case "grant.keys.show":
                return ["public_key": .string(Hex.encode(grants.hostPublicKey.rawRepresentation))]

            case "grant.keys.register":
                let domain = try string("domain")
                let text = try string("public_key")
                let key: Curve25519.KeyAgreement.PublicKey
                do { key = try Curve25519.KeyAgreement.PublicKey(hex: text) } catch {
                    throw SimDaemonExtensionError.usage("bad public key '\(text)': expected 64 hex digits (an X25519 public key; guest-agent keygen prints one)")
                }
                try grants.registerAgentKey(key, forDomain: domain)
                return ["domain": .string(domain), "public_key": .string(key.hex)]

            case "grant.policy.allow":
                let first = try string("a"), second = try string("b")
                let maxPages = Int(a["max_pages"]?.int64 ?? 64)
                var suites = ChannelDescriptor.CipherSuite.allCases
                if let names = a["suites"]?.array {
                    suites = []
                    for name in names {
                        guard let text = name.string, let suite = ChannelDescriptor.CipherSuite(text) else {
                            throw SimDaemonExtensionError.usage("bad suite \(name.string.map { "'\($0)'" } ?? "value"): expected chachapoly or aesgcm")
                        }
                        if !suites.contains(suite) { suites.append(suite) }
                    }
                }
                var modes: [ChannelDescriptor.Mode] = [.encrypted]
                if let names = a["modes"]?.array {
                    modes = []
                    for name in names {
                        guard let text = name.string, let mode = ChannelDescriptor.Mode(text) else {
                            throw SimDaemonExtensionError.usage("bad mode \(name.string.map { "'\($0)'" } ?? "value"): expected encrypted or isolated")
                        }
                        if !modes.contains(mode) { modes.append(mode) }
                    }
                }
                try grants.allow(first, second, maxPages: maxPages, suites: suites, modes: modes)
                return ["domains": .array([.string(first), .string(second)]), "max_pages": .int(Int64(maxPages)),
                        "suites": .array(suites.map { .string($0.description) }),
                        "modes": .array(modes.map { .string($0.description) })]

            case "grant.policy.limit":
                guard let count = a["max_channels_per_domain"]?.int64 else {
                    throw SimDaemonExtensionError.usage("grant.policy.limit needs max_channels_per_domain")
                }
                try grants.setMaxChannelsPerDomain(Int(count))
                return ["max_channels_per_domain": .int(count)]

            case "grant.policy.deny":
                let first = try string("a"), second = try string("b")
                let removed = try grants.disallow(first, second)
                return ["domains": .array([.string(first), .string(second)]), "removed": .bool(removed)]

            case "grant.policy.show":
                let policy = try grants.loadPolicy()
                return [
                    "max_channels_per_domain": .int(Int64(policy.maxChannelsPerDomain)),
                    "rules": .array(policy.rules.map { rule in
                        .object([
                            "domains": .array(rule.domains.map { .string($0) }),
                            "max_pages": .int(Int64(rule.maxPages)),
                            "suites": .array(rule.suites.map { .string($0.description) }),
                            "modes": .array(rule.modes.map { .string($0.description) }),
                            "one_way_required": .bool(rule.oneWayRequired),
                        ])
                    }),
                ]

            case "grant.channel.create":
                let name = try string("name")
                let first = try string("a"), second = try string("b")
                let pages = Int(a["pages"]?.int64 ?? 16)
                guard let suite = ChannelDescriptor.CipherSuite(a["suite"]?.string ?? "chachapoly") else {
                    throw SimDaemonExtensionError.usage("bad --suite: expected chachapoly or aesgcm")
                }
                guard let mode = ChannelDescriptor.Mode(a["mode"]?.string ?? "encrypted") else {
                    throw SimDaemonExtensionError.usage("bad --mode: expected encrypted or isolated")
                }
                let request = ChannelRequest(name: name, between: DomainReference(parsing: first),
                                             and: DomainReference(parsing: second), pageCount: pages,
                                             oneWay: a["one_way"]?.bool ?? false, suite: suite, mode: mode)
                let made: ChannelCreation
                do { made = try grants.createChannel(request) } catch {
                    throw Self.setupError(error)
                }
                var fields = Self.summary(made.channel)
                fields["warnings"] = .array(made.warnings.map { .string($0) })
                return fields

            case "grant.channel.list":
                return ["channels": .array(grants.listChannels().map { .object(Self.summary($0)) })]

            case "grant.channel.show":
                let details = try grants.showChannel(try string("name"))
                var fields = Self.summary(details.channel)
                fields["state"] = .string(details.state.description)
                fields["age_s"] = .int(Int64(details.ageSeconds))
                var views: [String: JSONValue] = [:]
                for end in [details.channel.initiator, details.channel.responder] {
                    views[end.domainName] = .array((details.views[end.domain] ?? []).map { view in
                        .object(["view": .int(Int64(view.view.rawValue)), "visible": view.isVisible.map { .bool($0) } ?? .null])
                    })
                }
                fields["active_views"] = .object(views)
                return fields

            case "grant.channel.reissue":
                let lifetime = a["lifetime"]?.int64 ?? 3600
                guard lifetime >= 1 else { throw SimDaemonExtensionError.usage("bad --lifetime \(lifetime): expected at least 1 second") }
                return Self.summary(try grants.reissueDescriptors(try string("name"), lifetime: UInt64(lifetime)))

            case "grant.channel.destroy":
                let name = try string("name")
                let teardown = try grants.destroyChannel(name)
                return ["name": .string(name), "problems": .array(teardown.problems.map { .string($0) }),
                        "notes": .array(teardown.notes.map { .string($0) })]

            case "grant.audit.show":
                return ["records": .array(try grants.auditRecords().map { .object(Self.auditRecord($0)) })]

            default:
                throw SimDaemonExtensionError.usage("unknown operation '\(op)'")
            }
        } catch let error as SimDaemonExtensionError {
            throw error
        } catch let error as GrantError {
            throw Self.grantError(error)
        } catch {
            throw .failure("\(error)")
        }
    }

    // MARK: JSON

    static func summary(_ c: ChannelSummary) -> [String: JSONValue] {
        var views: [String: JSONValue] = [:]
        var windows: [String: JSONValue] = [:]
        for end in [c.initiator, c.responder] {
            views[end.domainName] = .int(Int64(end.view.rawValue))
            windows[end.domainName] = .object([
                "first_gfn": .uint(end.windowFirstGFN.rawValue), "pages": .int(Int64(c.pageCount)),
                "domid": .int(Int64(end.domain.rawValue)),
            ])
        }
        return [
            "name": .string(c.name), "channel": .string(Hex.encode(c.id.bytes)),
            "initiator": .string(c.initiator.domainName), "responder": .string(c.responder.domainName),
            "views": .object(views), "windows": .object(windows), "pages": .int(Int64(c.pageCount)),
            "one_way": .bool(c.isOneWay), "suite": .string(c.suite.description), "mode": .string(c.mode.description),
            "port": .int(Int64(c.notificationPort)), "generation": .uint(c.generation),
            "created_at": .uint(c.createdAt), "expires_at": .uint(c.expiresAt),
            "reissued_at": c.reissuedAt.map { .uint($0) } ?? .null,
        ]
    }

    static func auditRecord(_ r: AuditRecord) -> [String: JSONValue] {
        var fields: [String: JSONValue] = [
            "time": .string(r.time), "uid": .uint(UInt64(r.uid)), "user": .string(r.user), "pid": .int(Int64(r.pid)),
            "action": .string(r.action), "outcome": .string(r.outcome),
        ]
        if let channel = r.channel { fields["channel"] = .string(channel) }
        if let domains = r.domains { fields["domains"] = .array(domains.map { .string($0) }) }
        if let generation = r.generation { fields["generation"] = .uint(generation) }
        if let details = r.details { fields["details"] = .object(details.mapValues { .string($0) }) }
        if let error = r.error { fields["error"] = .string(error) }
        return fields
    }

    static func setupError(_ error: ChannelSetupError) -> SimDaemonExtensionError {
        switch error.cause {
        case .hypervisor(let errno): .hypervisor(errno, error.description)
        default: .failure(error.description)
        }
    }

    static func grantError(_ error: GrantError) -> SimDaemonExtensionError {
        switch error {
        case .hypervisor(let errno, _): .hypervisor(errno, error.description)
        case .invalidArgument(let text): .usage(text)
        default: .failure(error.description)
        }
    }
}
