/// Everything that can go wrong on a channel, named for what happened.
public enum ChannelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The peer closed its sending direction; every message it sent before
    /// closing has been received.
    case peerClosed
    /// The peer's domain died or the host tore the channel down.
    case peerDied(String)
    /// The peer's agent opened the channel again (a restarted process): the
    /// session this side was in is over. Everything the peer sent in it
    /// before it restarted was delivered; nothing of the new session was.
    /// Open the channel again to talk to the new incarnation (the
    /// descriptor is the same; the replay guard accepts its generation again).
    case peerRestarted
    /// The host re-issued the channel's descriptors (`chanctl channel
    /// reissue`): the session opened with an older one is cut off. Read the
    /// channel's descriptor again and open it.
    case descriptorsReissued(generation: UInt64)
    /// This side already closed the channel (or its sending direction).
    case closed
    /// The peer broke the wire protocol; the channel is unusable. The string
    /// names the field and values.
    case protocolViolation(String)
    /// A frame failed authentication: it was forged, altered or replayed.
    case authenticationFailed
    /// The channel descriptor was refused; the string says which check failed.
    case descriptorRejected(String)
    /// The operation did not complete within its deadline.
    case timeout
    /// The message is larger than one frame can carry.
    case messageTooLarge(limit: Int)
    /// The caller's buffer cannot hold the next message; nothing was lost,
    /// receive again with at least `needed` bytes.
    case bufferTooSmall(needed: Int)
    /// The session reached a hard limit of its keys (messages or age); a new
    /// channel (and handshake) is needed.
    case keyLimitReached(String)
    /// The handshake failed for a reason other than authentication.
    case handshakeFailed(String)
    /// The platform underneath refused (VMFUNC #UD, mapping failure).
    case platform(String)
    /// A send (`send`, `trySend`, `withSendBuffer`, `closeSending`) on the
    /// reading end of a one-way channel, which may write nothing but its
    /// consumer index. Nothing was sent.
    case receiveOnly
    /// A receive on the writing end of a one-way channel, which has no ring
    /// to read. Nothing was received.
    case sendOnly
    /// The caller passed a value the call cannot take (the string names the
    /// parameter and the value). Nothing was sent or received.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .peerClosed: return "the peer closed the channel"
        case let .peerDied(why): return "the peer is gone: \(why)"
        case .peerRestarted: return "the peer's agent restarted and opened the channel again; open it again to start a new session"
        case let .descriptorsReissued(generation):
            return "the host re-issued the channel's descriptors (generation \(generation)); read the new descriptor and open the channel again"
        case .closed: return "the channel is closed on this side"
        case let .protocolViolation(why): return "protocol violation by the peer: \(why)"
        case .authenticationFailed: return "a frame failed authentication (forged, altered or replayed)"
        case let .descriptorRejected(why): return "descriptor rejected: \(why)"
        case .timeout: return "timed out"
        case let .messageTooLarge(limit): return "message too large: at most \(limit) bytes fit in one frame"
        case let .bufferTooSmall(needed): return "receive buffer too small: the next message has \(needed) bytes"
        case let .keyLimitReached(why): return "key limit reached: \(why); open a new channel"
        case let .handshakeFailed(why): return "handshake failed: \(why)"
        case let .platform(why): return "platform error: \(why)"
        case .receiveOnly: return "this end of a one-way channel only receives: it cannot send (the other end is the writer)"
        case .sendOnly: return "this end of a one-way channel only sends: it has nothing to receive (the other end is the reader)"
        case let .invalidArgument(why): return "invalid argument: \(why)"
        }
    }
}
