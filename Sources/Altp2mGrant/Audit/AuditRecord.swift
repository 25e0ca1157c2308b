/// One line of the grant module's audit log (`audit.log`): when, who, what
/// and how it ended. Written as one JSON object per line.
public struct AuditRecord: Codable, Sendable, Equatable {
    /// When the operation ended, UTC, ISO 8601 to the second (`2026-12-05T12:00:00Z`).
    public var time: String
    /// The invoking user id.
    public var uid: UInt32
    /// Its user name.
    public var user: String
    /// The invoking process id.
    public var pid: Int32
    /// What was done: one of ``AuditAction``'s raw values.
    public var action: String
    /// The channel's name, for channel operations.
    public var channel: String?
    /// The domains concerned, as named in the request or the registry.
    public var domains: [String]?
    /// The descriptor generation the operation produced (create, reissue) or
    /// ended (destroy, teardown).
    public var generation: UInt64?
    /// Further arguments: pages, suite, mode, max pages, the key, a reason.
    public var details: [String: String]?
    /// `ok` or `failed`.
    public var outcome: String
    /// Why it failed (the error's text, which names the fix).
    public var error: String?

    public static let succeeded = "ok"
    public static let failed = "failed"
}

/// The operations the audit log records.
public enum AuditAction: String, Sendable, CaseIterable {
    case policyAllow = "policy.allow"
    case policyDeny = "policy.deny"
    case policyLimit = "policy.limit"
    case keyRegister = "keys.register"
    case keyRemove = "keys.remove"
    case channelCreate = "channel.create"
    case channelReissue = "channel.reissue"
    case channelDestroy = "channel.destroy"
    /// A channel torn down because one of its domains died or was destroyed.
    case channelTeardown = "channel.teardown"
}
