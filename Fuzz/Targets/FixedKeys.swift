import ChannelCrypto

/// Keys fixed for every fuzz run, so a corpus input means the same thing in
/// every run and on every machine. The fuzzer holds none of the private
/// halves: whatever it writes, it cannot sign as the host, seal to an agent
/// it does not know, or complete a handshake as a party it is not.
enum FixedKeys {
    static func bytes(_ seed: UInt8) -> [UInt8] { (0..<32).map { UInt8(truncatingIfNeeded: Int($0) &* 29 &+ Int(seed)) } }

    /// The two agents' static X25519 keys (initiator, responder).
    static let initiator = agreementKey(1)
    static let responder = agreementKey(2)
    /// The pre-shared key both descriptors carry.
    static let presharedKey = SymmetricKey(copying: bytes(3))
    /// The host's Ed25519 signing key (dom0).
    static let host = signingKey(4)
    /// Ephemeral keys for the Noise target's genuine messages.
    static let initiatorEphemeral = agreementKey(5)
    static let responderEphemeral = agreementKey(6)

    static func agreementKey(_ seed: UInt8) -> Curve25519.KeyAgreement.PrivateKey {
        // Fixed 32-byte scalars are always valid X25519 private keys.
        try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: bytes(seed))
    }

    static func signingKey(_ seed: UInt8) -> Curve25519.Signing.PrivateKey {
        try! Curve25519.Signing.PrivateKey(seed: bytes(seed))
    }
}
