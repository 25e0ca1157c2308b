internal import CSodium

extension Curve25519.Signing {
    /// Length of an Ed25519 public key.
    public static let publicKeyByteCount = 32
    /// Length of an Ed25519 private key in its RFC 8032 form, the seed.
    public static let seedByteCount = 32
    /// Length of libsodium's expanded secret key: the seed followed by the public key.
    public static let secretKeyByteCount = 64
    /// Length of a detached Ed25519 signature.
    public static let signatureByteCount = 64

    /// An Ed25519 public key (32 bytes, RFC 8032 encoding).
    ///
    /// Verification uses libsodium's `crypto_sign_verify_detached`, which is
    /// stricter than RFC 8032 requires, in ways that only ever reject:
    /// - the scalar `S` of the signature must be canonical (`S < L`), so a
    ///   signature cannot be made malleable by adding the group order;
    /// - the public key and the signature's `R` must not be points of small
    ///   order, and the public key must be canonically encoded.
    /// Every signature produced by a correct signer passes; only crafted
    /// signatures or keys are refused. Wycheproof's Ed25519 vectors expect
    /// exactly this behaviour (their malleability and small-order cases are
    /// "invalid"), so every case must match; see docs/CRYPTO.md.
    public struct PublicKey: Sendable, Hashable, CustomStringConvertible {
        /// The raw key bytes.
        public let rawRepresentation: [UInt8]

        /// A public key from its 32 raw bytes.
        ///
        /// Only the length is checked here: whether the bytes encode a usable
        /// point is decided by every verification, which rejects signatures
        /// under keys that are not canonical or of small order.
        /// - Throws: `incorrectKeySize` for a key that is not 32 bytes.
        public init(rawRepresentation raw: some Collection<UInt8>) throws(CryptoError) {
            guard raw.count == Curve25519.Signing.publicKeyByteCount else {
                throw .incorrectKeySize(expected: Curve25519.Signing.publicKeyByteCount, actual: raw.count)
            }
            rawRepresentation = Array(raw)
        }

        /// A public key from 64 hex digits.
        /// - Throws: `malformedInput` for bad hex, `incorrectKeySize` for the wrong length.
        public init(hex: String) throws(CryptoError) {
            try self.init(rawRepresentation: Hex.decode(hex))
        }

        /// The key as 64 lower-case hex digits.
        public var hex: String { Hex.encode(rawRepresentation) }

        public var description: String { "Ed25519 public key \(hex)" }

        /// Whether `signature` is a valid detached signature of `message`
        /// under this key. A signature of the wrong length is simply invalid.
        ///
        /// The corresponding C function is `crypto_sign_verify_detached`.
        public func isValidSignature(_ signature: UnsafeRawBufferPointer, for message: UnsafeRawBufferPointer) -> Bool {
            guard signature.count == Curve25519.Signing.signatureByteCount,
                  let sig = signature.baseAddress else { return false }
            Sodium.ensureInitialized()
            // A zero-length message may come with a nil base address; libsodium
            // reads no message bytes then, but wants a valid pointer.
            var empty: UInt8 = 0
            return withUnsafePointer(to: &empty) { emptyPointer in
                let m = message.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? emptyPointer
                return rawRepresentation.withUnsafeBufferPointer { pk in
                    crypto_sign_verify_detached(
                        sig.assumingMemoryBound(to: UInt8.self), m, UInt64(message.count), pk.baseAddress!) == 0
                }
            }
        }

        /// Whether `signature` is a valid detached signature of `message`.
        public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
            signature.withUnsafeBytes { s in message.withUnsafeBytes { m in isValidSignature(s, for: m) } }
        }

        /// Checks that `signature` is a valid detached signature of `message`.
        ///
        /// - Throws: `malformedInput` when the signature is not 64 bytes long,
        ///   `authenticationFailure` when it does not verify.
        public func verify(_ signature: UnsafeRawBufferPointer, for message: UnsafeRawBufferPointer) throws(CryptoError) {
            guard signature.count == Curve25519.Signing.signatureByteCount else {
                throw .malformedInput("an Ed25519 signature is \(Curve25519.Signing.signatureByteCount) bytes, got \(signature.count)")
            }
            guard isValidSignature(signature, for: message) else { throw .authenticationFailure }
        }

        /// Checks that `signature` is a valid detached signature of `message`.
        ///
        /// - Throws: `malformedInput` when the signature is not 64 bytes long,
        ///   `authenticationFailure` when it does not verify.
        public func verify(_ signature: [UInt8], for message: [UInt8]) throws(CryptoError) {
            let result: Result<Void, CryptoError> = signature.withUnsafeBytes { s in
                message.withUnsafeBytes { m in
                    Result { () throws(CryptoError) in try verify(s, for: m) }
                }
            }
            try result.get()
        }
    }

    /// An Ed25519 private key, held in guarded memory.
    ///
    /// Internally it keeps libsodium's 64-byte secret key (seed followed by
    /// public key); `seed` is the 32-byte RFC 8032 private key, which is what
    /// key files store.
    public struct PrivateKey: Sendable, CustomStringConvertible {
        /// libsodium's secret key, `seed || publicKey`.
        private let secretKey: SecureBytes
        /// The matching public key.
        public let publicKey: PublicKey

        /// A fresh random key pair.
        public init() {
            // Every 32-byte string is a valid seed, so this cannot fail.
            self = try! PrivateKey(seed: SecureBytes(randomCount: Curve25519.Signing.seedByteCount))
        }

        /// The key pair derived from a 32-byte seed (the RFC 8032 private key).
        ///
        /// The corresponding C function is `crypto_sign_seed_keypair`.
        /// - Throws: `incorrectKeySize` for a seed that is not 32 bytes.
        public init(seed: SecureBytes) throws(CryptoError) {
            Sodium.ensureInitialized()
            guard seed.count == Curve25519.Signing.seedByteCount else {
                throw .incorrectKeySize(expected: Curve25519.Signing.seedByteCount, actual: seed.count)
            }
            var sk = SecureBytes(zeros: Curve25519.Signing.secretKeyByteCount)
            var pk = [UInt8](repeating: 0, count: Curve25519.Signing.publicKeyByteCount)
            let rc = sk.withUnsafeMutableBytes { s in
                seed.withUnsafeBytes { sd in
                    pk.withUnsafeMutableBufferPointer { p in
                        crypto_sign_seed_keypair(p.baseAddress!, s.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                 sd.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    }
                }
            }
            guard rc == 0 else { throw .libsodiumFailure("crypto_sign_seed_keypair") }
            secretKey = sk
            publicKey = try PublicKey(rawRepresentation: pk)
        }

        /// The key pair derived from a 32-byte seed copied from an array.
        public init(seed: [UInt8]) throws(CryptoError) {
            try self.init(seed: SecureBytes(seed))
        }

        /// A key pair from libsodium's 64-byte secret key (`seed || publicKey`),
        /// as `crypto_sign_keypair` produces it.
        ///
        /// The public half is recomputed from the seed and must match: signing
        /// with a wrong public key in the hash lets two signatures of one
        /// message reveal the private scalar, so a corrupted secret key is
        /// refused rather than used.
        /// - Throws: `incorrectKeySize` for a key that is not 64 bytes,
        ///   `malformedInput` when the public half does not belong to the seed.
        public init(secretKey: SecureBytes) throws(CryptoError) {
            guard secretKey.count == Curve25519.Signing.secretKeyByteCount else {
                throw .incorrectKeySize(expected: Curve25519.Signing.secretKeyByteCount, actual: secretKey.count)
            }
            let seedCount = Curve25519.Signing.seedByteCount
            let seed = secretKey.withUnsafeBytes { SecureBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<seedCount])) }
            let derived = try PrivateKey(seed: seed)
            let matches = secretKey.withUnsafeBytes { s in
                derived.publicKey.rawRepresentation.withUnsafeBytes { p in
                    constantTimeEquals(UnsafeRawBufferPointer(rebasing: s[seedCount...]), p)
                }
            }
            guard matches else {
                throw .malformedInput("the Ed25519 secret key's public half does not match its seed")
            }
            self = derived
        }

        /// The 32-byte seed (the RFC 8032 private key), in guarded memory.
        public var seed: SecureBytes {
            secretKey.withUnsafeBytes { SecureBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<Curve25519.Signing.seedByteCount])) }
        }

        /// The 32-byte seed, as swift-crypto names it.
        public var rawRepresentation: SecureBytes { seed }

        /// A detached 64-byte signature of `message`. Ed25519 is deterministic:
        /// the same key and message always give the same signature.
        ///
        /// The corresponding C function is `crypto_sign_detached`.
        public func signature(for message: UnsafeRawBufferPointer) -> [UInt8] {
            var sig = [UInt8](repeating: 0, count: Curve25519.Signing.signatureByteCount)
            var empty: UInt8 = 0
            let rc = withUnsafePointer(to: &empty) { emptyPointer in
                let m = message.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? emptyPointer
                return sig.withUnsafeMutableBufferPointer { s in
                    secretKey.withUnsafeBytes { sk in
                        crypto_sign_detached(s.baseAddress!, nil, m, UInt64(message.count),
                                             sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    }
                }
            }
            // crypto_sign_detached has no failure path for valid arguments.
            precondition(rc == 0, "crypto_sign_detached failed")
            return sig
        }

        /// A detached 64-byte signature of `message`.
        public func signature(for message: [UInt8]) -> [UInt8] {
            message.withUnsafeBytes { signature(for: $0) }
        }

        public var description: String { "Ed25519 private key (public \(publicKey.hex))" }
    }
}
