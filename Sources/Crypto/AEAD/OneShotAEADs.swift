/// One-shot entry points shaped like swift-crypto's (`ChaChaPoly.seal(...)`),
/// for callers that encrypt a single message with a key they hold. Code that
/// encrypts many messages with one key should keep an `AEADKey`.

/// ChaCha20-Poly1305 (IETF, 96-bit nonce).
public enum ChaChaPoly {
    public static func seal(_ plaintext: [UInt8], using key: SymmetricKey, nonce: [UInt8], authenticating aad: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        try AEADKey(.chaChaPoly, key: key).seal(plaintext, nonce: nonce, authenticating: aad)
    }
    public static func open(_ ciphertext: [UInt8], using key: SymmetricKey, nonce: [UInt8], authenticating aad: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        try AEADKey(.chaChaPoly, key: key).open(ciphertext, nonce: nonce, authenticating: aad)
    }
}

/// XChaCha20-Poly1305 (192-bit nonce).
public enum XChaChaPoly {
    public static func seal(_ plaintext: [UInt8], using key: SymmetricKey, nonce: [UInt8], authenticating aad: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        try AEADKey(.xChaChaPoly, key: key).seal(plaintext, nonce: nonce, authenticating: aad)
    }
    public static func open(_ ciphertext: [UInt8], using key: SymmetricKey, nonce: [UInt8], authenticating aad: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        try AEADKey(.xChaChaPoly, key: key).open(ciphertext, nonce: nonce, authenticating: aad)
    }
}

/// AES-256-GCM (96-bit nonce); throws `unsupported` on CPUs without AES-NI.
public enum AESGCM {
    /// Whether this CPU can run AES-256-GCM.
    public static var isAvailable: Bool { AEADAlgorithm.aesGCM.isAvailable }

    public static func seal(_ plaintext: [UInt8], using key: SymmetricKey, nonce: [UInt8], authenticating aad: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        try AEADKey(.aesGCM, key: key).seal(plaintext, nonce: nonce, authenticating: aad)
    }
    public static func open(_ ciphertext: [UInt8], using key: SymmetricKey, nonce: [UInt8], authenticating aad: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        try AEADKey(.aesGCM, key: key).open(ciphertext, nonce: nonce, authenticating: aad)
    }
}
