import Altp2m

/// What an agent remembers of the descriptors it accepted, to refuse old
/// ones shown again: for each channel id and each channel name, the highest
/// generation accepted.
///
/// The host numbers every descriptor it issues with a generation that only
/// grows (re-issues included), so a descriptor is a replay when its channel
/// id or its name was already accepted at the same or a newer generation.
/// Keep one guard per agent for its lifetime; persist ``entries`` to carry
/// it over a restart (an agent that restarts without it should ask for a
/// re-issue, which its restored guard then accepts).
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
