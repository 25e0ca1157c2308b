/// A Noise protocol (Noise revision 34, §8): a handshake pattern with its
/// modifiers, a DH function, a cipher and a hash, as in
/// `Noise_KKpsk2_25519_ChaChaPoly_BLAKE2b`.
///
/// The name is hashed into the handshake, so both parties must use the same
/// one byte for byte; build it with `init(_:)` from the string or with the
/// memberwise initialiser, which spells the name canonically.
public struct NoiseProtocol: Sendable, Hashable, CustomStringConvertible {
    /// The DH functions supported (§12.1).
    public enum DHFunction: String, Sendable, Hashable, CaseIterable {
        /// X25519; DHLEN = 32.
        case curve25519 = "25519"

        /// The length of public keys and DH outputs in bytes (Noise's DHLEN).
        public var byteCount: Int { Curve25519.KeyAgreement.byteCount }
    }

    /// The cipher functions supported (§12.3, §12.4).
    public enum Cipher: String, Sendable, Hashable, CaseIterable {
        /// ChaCha20-Poly1305; the nonce is 32 zero bits then the 64-bit
        /// counter, little-endian.
        case chaChaPoly = "ChaChaPoly"
        /// AES-256-GCM; the nonce is 32 zero bits then the 64-bit counter,
        /// big-endian. Needs a CPU with AES-NI and PCLMULQDQ.
        case aesGCM = "AESGCM"

        /// The AEAD that implements the cipher.
        public var aeadAlgorithm: AEADAlgorithm {
            switch self {
            case .chaChaPoly: return .chaChaPoly
            case .aesGCM: return .aesGCM
            }
        }
    }

    /// The hash functions supported (§12.5, §12.6, §12.7).
    public enum Hash: Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// BLAKE2b: HASHLEN 64, BLOCKLEN 128.
        case blake2b
        /// SHA-256: HASHLEN 32, BLOCKLEN 64.
        case sha256
        /// SHA-512: HASHLEN 64, BLOCKLEN 128.
        case sha512

        /// The hash's name in a protocol name ("BLAKE2b", "SHA256", "SHA512").
        public var name: String { function.noiseName }
        /// Digest length in bytes (Noise's HASHLEN).
        public var byteCount: Int { function.byteCount }
        /// Block length in bytes (Noise's BLOCKLEN, used by HMAC).
        public var blockByteCount: Int { function.blockByteCount }
        public var description: String { name }

        /// The implementation from Hashes/. Dispatch through the metatype
        /// happens only during the handshake, never per transport message.
        var function: any HashFunction.Type {
            switch self {
            case .blake2b: return BLAKE2b.self
            case .sha256: return SHA256.self
            case .sha512: return SHA512.self
            }
        }
    }

    /// The canonical protocol name, for example `"Noise_KKpsk2_25519_AESGCM_BLAKE2b"`.
    public let name: String
    /// The handshake pattern, modifiers applied.
    public let pattern: HandshakePattern
    /// The DH function (always 25519 here).
    public let dh: DHFunction
    /// The cipher of the handshake and of both transport CipherStates.
    public let cipher: Cipher
    /// The hash of the handshake hash, HMAC and HKDF.
    public let hash: Hash

    public var description: String { name }

    /// A protocol from its parts; the name is spelled from them.
    public init(pattern: HandshakePattern, dh: DHFunction = .curve25519, cipher: Cipher, hash: Hash) {
        self.pattern = pattern
        self.dh = dh
        self.cipher = cipher
        self.hash = hash
        self.name = "Noise_\(pattern.name)_\(dh.rawValue)_\(cipher.rawValue)_\(hash.name)"
    }

    /// Parses a protocol name such as `"Noise_KKpsk2_25519_ChaChaPoly_BLAKE2b"`.
    /// - Throws: `unsupported` naming the pattern, modifier, DH function,
    ///   cipher or hash this implementation lacks (for example `448`,
    ///   `BLAKE2s`, `fallback`); `malformedInput` if the string is not a
    ///   Noise protocol name.
    public init(_ name: String) throws(CryptoError) {
        let parts = name.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "Noise" else {
            throw .malformedInput("\"\(name)\" is not a Noise protocol name of the form Noise_PATTERN_DH_CIPHER_HASH")
        }
        let pattern = try HandshakePattern(name: String(parts[1]))
        guard let dh = DHFunction(rawValue: String(parts[2])) else {
            throw .unsupported("Noise DH function \(parts[2]) in \(name) (supported: 25519)")
        }
        guard let cipher = Cipher(rawValue: String(parts[3])) else {
            throw .unsupported("Noise cipher \(parts[3]) in \(name) (supported: ChaChaPoly, AESGCM)")
        }
        guard let hash = Hash.allCases.first(where: { $0.name == parts[4] }) else {
            throw .unsupported("Noise hash \(parts[4]) in \(name) (supported: BLAKE2b, SHA256, SHA512)")
        }
        self.init(pattern: pattern, dh: dh, cipher: cipher, hash: hash)
    }
}
