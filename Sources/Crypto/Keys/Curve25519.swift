/// Namespace for the Curve25519 key types, as in swift-crypto:
/// `Curve25519.KeyAgreement` (X25519) and `Curve25519.Signing` (Ed25519).
public enum Curve25519 {
    /// X25519 Diffie-Hellman keys.
    public enum KeyAgreement {}
    /// Ed25519 signature keys.
    public enum Signing {}
}
