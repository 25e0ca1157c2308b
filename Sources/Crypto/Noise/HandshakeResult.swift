/// What a finished Noise handshake hands over: one CipherState per direction,
/// the handshake hash and the peer's static key.
///
/// The handshake's own secrets (ephemeral keys, chaining key, handshake
/// key) are already wiped when this exists; the two CipherStates hold the
/// only keys left.
///
/// After a one-way handshake (`K`, `Kpsk0`) only the initiator sends (§7.4),
/// so Split()'s second CipherState is discarded: `responderToInitiator` is
/// then a state that refuses every `encrypt`, `decrypt` and `rekey` with
/// `CryptoError.unsupported` (``CipherState/isDiscarded``). The initiator's
/// `receiving` and the responder's `sending` are that state.
public struct HandshakeResult {
    /// The role of the party that holds this result.
    public let role: HandshakeState.Role
    /// Encrypts what the initiator sends and decrypts what the responder receives.
    public let initiatorToResponder: CipherState
    /// Encrypts what the responder sends and decrypts what the initiator
    /// receives; after a one-way handshake, a discarded state that refuses
    /// every use.
    public let responderToInitiator: CipherState
    /// Whether the handshake was one-way: only `initiatorToResponder` carries data.
    public let isOneWay: Bool
    /// `GetHandshakeHash()`: identical on both sides; use it for channel
    /// binding (for example sign it, or compare it out of band).
    public let handshakeHash: [UInt8]
    /// The peer's static public key: the one passed in advance (KK, IK
    /// initiator, NK initiator) or the one the peer sent and proved (XX, IK
    /// responder); nil when the pattern has none (NN, NK responder).
    public let remoteStaticKey: Curve25519.KeyAgreement.PublicKey?

    /// The CipherState this party encrypts with.
    public var sending: CipherState {
        role == .initiator ? initiatorToResponder : responderToInitiator
    }

    /// The CipherState this party decrypts with.
    public var receiving: CipherState {
        role == .initiator ? responderToInitiator : initiatorToResponder
    }
}
