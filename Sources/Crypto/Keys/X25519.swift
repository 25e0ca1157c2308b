internal import CSodium

extension Curve25519.KeyAgreement {
    /// Length of X25519 public keys, private keys and shared secrets.
    public static let byteCount = 32

    /// An X25519 public key (32 bytes, little-endian u-coordinate).
    public struct PublicKey: Sendable, Hashable, CustomStringConvertible {
        /// The raw key bytes.
        public let rawRepresentation: [UInt8]

        /// A public key from its 32 raw bytes.
        public init(rawRepresentation raw: some Collection<UInt8>) throws(CryptoError) {
            guard raw.count == Curve25519.KeyAgreement.byteCount else {
                throw .incorrectKeySize(expected: Curve25519.KeyAgreement.byteCount, actual: raw.count)
            }
            rawRepresentation = Array(raw)
        }

        /// A public key from 64 hex digits.
        public init(hex: String) throws(CryptoError) {
            try self.init(rawRepresentation: Hex.decode(hex))
        }

        /// The key as 64 lower-case hex digits.
        public var hex: String { Hex.encode(rawRepresentation) }
        public var description: String { "X25519 public key \(hex)" }
    }

    /// An X25519 private key, held in guarded memory.
    public struct PrivateKey: Sendable, CustomStringConvertible {
        /// The raw scalar (32 bytes; libsodium clamps it when used).
        public let rawRepresentation: SecureBytes
        /// The matching public key.
        public let publicKey: PublicKey

        /// A fresh random key pair.
        public init() {
            Sodium.ensureInitialized()
            let secret = SecureBytes(randomCount: Curve25519.KeyAgreement.byteCount)
            // Cannot fail: every 32-byte string is a valid scalar.
            self = try! PrivateKey(rawRepresentation: secret)
        }

        /// A private key from its 32 raw bytes (test vectors, key files).
        public init(rawRepresentation raw: SecureBytes) throws(CryptoError) {
            Sodium.ensureInitialized()
            guard raw.count == Curve25519.KeyAgreement.byteCount else {
                throw .incorrectKeySize(expected: Curve25519.KeyAgreement.byteCount, actual: raw.count)
            }
            var pub = [UInt8](repeating: 0, count: Curve25519.KeyAgreement.byteCount)
            let rc = raw.withUnsafeBytes { s in
                pub.withUnsafeMutableBytes { p in
                    crypto_scalarmult_base(p.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                           s.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
            guard rc == 0 else { throw .libsodiumFailure("crypto_scalarmult_base") }
            rawRepresentation = raw
            publicKey = try PublicKey(rawRepresentation: pub)
        }

        /// A private key copied from raw bytes.
        public init(rawRepresentation raw: [UInt8]) throws(CryptoError) {
            try self.init(rawRepresentation: SecureBytes(raw))
        }

        /// The X25519 shared secret with `peer`.
        ///
        /// - Throws: `malformedInput` when the result is all zeros, which
        ///   happens exactly when `peer` is a low-order point: such a "secret"
        ///   is known to an attacker, so libsodium refuses it.
        public func sharedSecret(with peer: PublicKey) throws(CryptoError) -> SecureBytes {
            var out = SecureBytes(zeros: Curve25519.KeyAgreement.byteCount)
            let rc = out.withUnsafeMutableBytes { o in
                rawRepresentation.withUnsafeBytes { s in
                    peer.rawRepresentation.withUnsafeBytes { p in
                        crypto_scalarmult(o.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                          s.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                          p.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    }
                }
            }
            guard rc == 0 else {
                throw .malformedInput("X25519 public key is a low-order point (all-zero shared secret)")
            }
            return out
        }

        public var description: String { "X25519 private key (public \(publicKey.hex))" }
    }
}
