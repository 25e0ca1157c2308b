import Altp2m

/// Why ``DescriptorOpener`` refused a descriptor. Each check has its own
/// case, so an agent (and its operator) can tell a forgery from a key
/// mix-up from a stale descriptor.
public enum DescriptorError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The host's signature does not verify under the pinned host key: the
    /// envelope was modified (any byte of it) or signed by another host.
    case badSignature
    /// The signature is good but the sealed box does not open with this
    /// agent's private key: the descriptor was sealed to another agent key
    /// (the key registered for this domain is not this agent's).
    case notForThisKey
    /// A signed, opened descriptor has a field the format does not allow;
    /// the value names the field.
    case malformed(String)
    /// The descriptor is for another domain.
    case wrongRecipient
    /// The host signed the descriptor for the channel `signed`, but it was
    /// found where the channel `expected` should be (the name the agent was
    /// asked to open, or its key in the descriptor store). Whoever can write
    /// the store can copy any envelope under any name; only the signed name
    /// says which channel it is, so a service chosen by the store key would
    /// otherwise be steered by the store's writer.
    case nameMismatch(expected: String, signed: String)
    /// The descriptor's expiry has passed.
    case expired
    /// A newer descriptor of this channel (or of this channel name) was
    /// already accepted (``DescriptorReplayGuard``).
    case replayed
    /// The envelope or descriptor is in a format version this build does not read.
    case unsupportedVersion

    public var description: String {
        switch self {
        case .badSignature:
            "the descriptor's host signature does not verify: it was modified or not signed by the pinned host key"
        case .notForThisKey:
            "the descriptor was not sealed to this agent's key; register this agent's public key for its domain (chanctl keys register) and re-issue the channel"
        case .malformed(let field):
            "the descriptor's field '\(field)' is malformed"
        case .wrongRecipient:
            "the descriptor is for another domain"
        case let .nameMismatch(expected, signed):
            "the descriptor stored as '\(expected)' was signed for the channel '\(signed)': someone copied it under another name; do not use it, and check who can write dom0's descriptor store"
        case .expired:
            "the descriptor has expired; ask for a re-issue (chanctl channel reissue)"
        case .replayed:
            "a newer descriptor of this channel (or of a channel of this name) was already accepted in this domain: this one is a replay of an older generation; read the channel's current descriptor, or ask for a re-issue (chanctl channel reissue)"
        case .unsupportedVersion:
            "the descriptor's format version is not supported by this build"
        }
    }

    init(_ decoding: ChannelDescriptor.DecodingError) {
        switch decoding {
        case .unsupportedVersion: self = .unsupportedVersion
        default: self = .malformed(decoding.field)
        }
    }
}
