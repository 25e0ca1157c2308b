import Altp2m

/// How a domain's `access_required` stood when the grant module gave the
/// domain its first channel, recorded in the registry with the domain's
/// state. The grant module sets the flag on every domain with a channel,
/// and the record decides what the teardown that retires the domain does
/// with it: it clears only a flag it knows it turned on, so a setting that
/// belongs to someone else (a VM-introspection or monitoring tool that wants
/// violations with no listener to crash the domain) survives the channels.
enum AccessRequiredOrigin: String, Equatable, Sendable {
    /// The host read the flag as off: the grant module turned it on, and
    /// clears it again when the domain's last channel goes.
    case grantModule = "grant-module"
    /// The host read the flag as on: someone else set it, and it is left on.
    case foundSet = "found-set"
    /// The host has no call that reads the flag (Xen: only
    /// `XEN_DOMCTL_set_access_required` exists). It is left on at retirement,
    /// since clearing it could undo someone else's setting, and the teardown
    /// says so and how to clear it.
    case unknown

    /// The origin of what `ChannelHost.accessRequired(_:)` read before the
    /// grant module set the flag.
    init(found: Bool?) {
        switch found {
        case false?: self = .grantModule
        case true?: self = .foundSet
        case nil: self = .unknown
        }
    }

    /// The origin a registry written before origins were recorded means by
    /// its `accessRequiredByUs`: `true` was written for a flag read as off or
    /// unread, and was cleared at retirement, as ``grantModule`` is.
    init(accessRequiredByUs: Bool) {
        self = accessRequiredByUs ? .grantModule : .foundSet
    }
}
