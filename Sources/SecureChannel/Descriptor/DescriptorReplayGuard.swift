import Altp2m

/// What an agent remembers of the descriptors it accepted, to refuse old
/// ones shown again: for each channel id and each channel name, the highest
/// generation accepted.
///
/// The rule: a descriptor is accepted only if its generation is newer than
/// every generation already accepted for its channel id and for its name.
/// The same descriptor is therefore accepted once per guard, never twice.
///
/// The host numbers every descriptor it issues from one counter that only
/// grows (creates and re-issues alike, across all channels), so a channel
/// that is destroyed and re-created, or re-issued, comes back newer. Why
/// not accept the same (channel id, generation) again, say while it is
/// still the newest seen for its name, so that an agent restarted on a live
/// channel could reopen it: nothing the agent holds tells a live channel
/// from a destroyed one. After channel A is destroyed, first-fit
/// allocation may give its window to channel B; an old, unexpired envelope
/// of A published again would then map B's window. B may have another
/// name, and whoever rewrites the descriptor store can hide B's descriptor
/// until A's has been opened, so no record of names or windows can refuse
/// A reliably; refusing every second opening can. An agent that restarts
/// on a live channel asks for a re-issue (chanctl channel reissue), whose
/// newer generation the guard accepts.
///
/// Keep one guard per domain for as long as the host's registry lives, and
/// share it between every process of that domain that opens channels (the
/// guest agent keeps it in a locked file in its state directory); persist
/// ``byChannel`` and ``byName`` to carry it over a restart. A guard made
/// fresh for each opening refuses nothing.
public struct DescriptorReplayGuard: Equatable, Sendable {
    /// The highest generation accepted, by channel id.
    public private(set) var byChannel: [ChannelID: UInt64] = [:]
    /// The highest generation accepted, by channel name.
    public private(set) var byName: [String: UInt64] = [:]

    /// An empty guard.
    public init() {}

    /// A guard restored from saved entries.
    public init(byChannel: [ChannelID: UInt64], byName: [String: UInt64]) {
        self.byChannel = byChannel
        self.byName = byName
    }

    /// Whether `descriptor` is not newer than one already accepted.
    public func isReplay(_ descriptor: ChannelDescriptor) -> Bool {
        if let seen = byChannel[descriptor.channelID], descriptor.generation <= seen { return true }
        if let seen = byName[descriptor.name], descriptor.generation <= seen { return true }
        return false
    }

    /// Records an accepted descriptor.
    public mutating func accept(_ descriptor: ChannelDescriptor) {
        byChannel[descriptor.channelID] = max(byChannel[descriptor.channelID] ?? 0, descriptor.generation)
        byName[descriptor.name] = max(byName[descriptor.name] ?? 0, descriptor.generation)
    }
}
