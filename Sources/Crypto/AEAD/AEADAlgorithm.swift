internal import CSodium

/// The authenticated ciphers ChannelCrypto offers, all with 256-bit keys and
/// 128-bit tags appended to the ciphertext.
public enum AEADAlgorithm: String, Sendable, CaseIterable, CustomStringConvertible {
    /// ChaCha20-Poly1305, IETF variant (RFC 8439): 96-bit nonce. The default:
    /// constant-time everywhere, no hardware requirement.
    case chaChaPoly
    /// XChaCha20-Poly1305: 192-bit nonce, safe with random nonces.
    case xChaChaPoly
    /// AES-256-GCM: 96-bit nonce; available only on CPUs with AES-NI and
    /// PCLMULQDQ (libsodium has no constant-time software fallback).
    case aesGCM

    public var description: String { rawValue }

    /// Key length in bytes.
    public var keyByteCount: Int { 32 }

    /// Nonce length in bytes.
    public var nonceByteCount: Int {
        switch self {
        case .chaChaPoly, .aesGCM: return 12
        case .xChaChaPoly: return 24
        }
    }

    /// Authentication tag length in bytes.
    public var tagByteCount: Int { 16 }

    /// Whether this machine can run the algorithm.
    public var isAvailable: Bool {
        switch self {
        case .chaChaPoly, .xChaChaPoly: return true
        case .aesGCM:
            Sodium.ensureInitialized()
            return crypto_aead_aes256gcm_is_available() == 1
        }
    }

    /// Largest plaintext accepted in one message. libsodium's own limits are
    /// far larger (2^38 B for the IETF construction); this bound keeps every
    /// size computation comfortably within `Int`.
    public static let maximumMessageByteCount = 1 << 32
}
