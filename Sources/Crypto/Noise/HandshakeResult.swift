/// What a finished Noise handshake hands over: one CipherState per direction,
/// the handshake hash and the peer's static key.
///
/// The handshake's own secrets (ephemeral keys, chaining key, handshake
/// key) are already wiped when this exists; the two CipherStates hold the
/// only keys left.
public struct HandshakeResult {
    /// The role of the party that holds this result.
    public let role: HandshakeState.Role
    /// Encrypts what the initiator sends and decrypts what the responder receives.
    public let initiatorToResponder: CipherState
    /// Encrypts what the responder sends and decrypts what the initiator receives.
    public let responderToInitiator: CipherState
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
