import Altp2m

/// What an agent remembers of the descriptors it accepted, to refuse old
/// ones shown again: for each channel id and each channel name, the highest
/// generation accepted.
///
/// The rule: a descriptor is accepted if its generation is newer than every
/// generation accepted for its channel id and for its name, or if it is the
/// very descriptor generation last accepted for both (the same channel id,
/// the same name, the same generation): an agent that restarts, or a side
/// whose peer restarted, opens the same channel again. An older generation
/// is refused, and so is the newest generation of a name under another
/// channel id.
///
/// The host numbers every descriptor it issues from one counter that only
/// grows (creates and re-issues alike, across all channels), so a channel
/// that is destroyed and re-created, or re-issued, comes back newer, and a
/// re-issue makes every earlier descriptor of the channel a replay. What the
/// guard cannot tell is a live channel from a destroyed one whose newest
/// descriptor is published again: after channel A is destroyed, first fit
/// may give its window to channel B, and whoever rewrites the store can hide
/// B's descriptor until A's was opened again. The window tells: the host
/// writes the channel id into the window's header at creation, and an
/// endpoint refuses a window whose header names another channel
/// (``ChannelEndpoint`` at open), so A's descriptor never opens B's window.
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

    /// Whether `descriptor` is older than one already accepted for its
    /// channel id or name, or its generation was accepted for that name
    /// under another channel id (the same generation of the same channel
    /// and name is accepted again: a reopening).
    public func isReplay(_ descriptor: ChannelDescriptor) -> Bool {
        let seenChannel = byChannel[descriptor.channelID]
        if let seenChannel, descriptor.generation < seenChannel { return true }
        if let seenName = byName[descriptor.name] {
            if descriptor.generation < seenName { return true }
            if descriptor.generation == seenName, seenChannel != seenName { return true }
        }
        return false
    }

    /// Records an accepted descriptor.
    public mutating func accept(_ descriptor: ChannelDescriptor) {
        byChannel[descriptor.channelID] = max(byChannel[descriptor.channelID] ?? 0, descriptor.generation)
        byName[descriptor.name] = max(byName[descriptor.name] ?? 0, descriptor.generation)
    }
}
