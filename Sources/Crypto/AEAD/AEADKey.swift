internal import CSodium

/// An AEAD key bound to its algorithm, ready for many seal/open calls.
///
/// For AES-256-GCM the key schedule is expanded once (`beforenm`) into guarded
/// memory, so a message costs only the encryption itself. The `seal`/`open`
/// variants that take buffers allocate nothing and may work in place, which is
/// what a ring that encrypts straight into shared memory needs.
///
/// The type is immutable after initialisation and safe to share across threads.
public final class AEADKey: @unchecked Sendable {
    // @unchecked: `key` and `aesState` are written only in init.
    public let algorithm: AEADAlgorithm
    private let key: SecureBytes
    /// libsodium's precomputed AES state (crypto_aead_aes256gcm_state, 512
    /// bytes, 16-byte aligned); nil for the ChaCha algorithms.
    private let aesState: SecureBytes?

    /// Binds `key` to `algorithm`.
    /// - Throws: `incorrectKeySize` for a key that is not 32 bytes,
    ///   `unsupported` for AES-256-GCM on a CPU without the instructions.
    public init(_ algorithm: AEADAlgorithm, key: SymmetricKey) throws(CryptoError) {
        Sodium.ensureInitialized()
        guard key.byteCount == algorithm.keyByteCount else {
            throw .incorrectKeySize(expected: algorithm.keyByteCount, actual: key.byteCount)
        }
        self.algorithm = algorithm
        self.key = key.bytes
        if algorithm == .aesGCM {
            guard algorithm.isAvailable else {
                throw .unsupported("AES-256-GCM needs a CPU with AES-NI and PCLMULQDQ; use ChaCha20-Poly1305")
            }
            // sodium_malloc returns memory aligned for any type, which covers
            // the state's 16-byte alignment requirement.
            let state = SecureBytes(zeros: crypto_aead_aes256gcm_statebytes())
            state.withUnsafeBytes { s in
                key.withUnsafeBytes { k in
                    _ = crypto_aead_aes256gcm_beforenm(
                        UnsafeMutableRawPointer(mutating: s.baseAddress!).assumingMemoryBound(to: crypto_aead_aes256gcm_state.self),
                        k.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
            aesState = state
        } else {
            aesState = nil
        }
    }

    /// Convenience: binds raw key bytes (copied into guarded memory).
    public convenience init(_ algorithm: AEADAlgorithm, key raw: [UInt8]) throws(CryptoError) {
        try self.init(algorithm, key: SymmetricKey(copying: raw))
    }

    // MARK: Zero-copy interface

    /// Encrypts `plaintext` into `output` and appends the tag.
    ///
    /// `output` may start at the same address as `plaintext` (in-place
    /// encryption); other overlaps are not allowed. Allocates nothing.
    /// - Returns: the number of bytes written, `plaintext.count + 16`.
    @discardableResult
    public func seal(
        nonce: UnsafeRawBufferPointer,
        plaintext: UnsafeRawBufferPointer,
        authenticating aad: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        try checkNonce(nonce)
        let needed = plaintext.count + algorithm.tagByteCount
        guard plaintext.count <= AEADAlgorithm.maximumMessageByteCount else {
            throw .malformedInput("message of \(plaintext.count) bytes exceeds the AEAD limit")
        }
        guard output.count >= needed else {
            throw .bufferTooSmall(needed: needed, available: output.count)
        }
        var written: UInt64 = 0
        let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let m = plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let ad = aad.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let npub = nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let rc: Int32 = key.withUnsafeBytes { k in
            let kp = k.baseAddress!.assumingMemoryBound(to: UInt8.self)
            switch algorithm {
            case .chaChaPoly:
                return crypto_aead_chacha20poly1305_ietf_encrypt(
                    out, &written, m, UInt64(plaintext.count), ad, UInt64(aad.count), nil, npub, kp)
            case .xChaChaPoly:
                return crypto_aead_xchacha20poly1305_ietf_encrypt(
                    out, &written, m, UInt64(plaintext.count), ad, UInt64(aad.count), nil, npub, kp)
            case .aesGCM:
                return aesState!.withUnsafeBytes { s in
                    crypto_aead_aes256gcm_encrypt_afternm(
                        out, &written, m, UInt64(plaintext.count), ad, UInt64(aad.count), nil, npub,
                        s.baseAddress!.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self))
                }
            }
        }
        guard rc == 0 else { throw .libsodiumFailure("\(algorithm) encrypt") }
        return Int(written)
    }

    /// Verifies and decrypts `ciphertext` (which ends with the tag) into `output`.
    ///
    /// Nothing is written to `output` unless the tag verifies. `output` may
    /// start at the same address as `ciphertext`. Allocates nothing.
    /// - Returns: the plaintext length, `ciphertext.count - 16`.
    @discardableResult
    public func open(
        nonce: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawBufferPointer,
        authenticating aad: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        try checkNonce(nonce)
        let tag = algorithm.tagByteCount
        guard ciphertext.count >= tag else {
            throw .malformedInput("ciphertext of \(ciphertext.count) bytes is shorter than the \(tag)-byte tag")
        }
        let needed = ciphertext.count - tag
        guard output.count >= needed else {
            throw .bufferTooSmall(needed: needed, available: output.count)
        }
        var written: UInt64 = 0
        // libsodium wants a non-null output pointer even for empty plaintexts.
        var scratch: UInt8 = 0
        let rc: Int32 = withUnsafeMutablePointer(to: &scratch) { scratchPtr in
            let out = output.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? scratchPtr
            let c = ciphertext.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let ad = aad.baseAddress?.assumingMemoryBound(to: UInt8.self)
            let npub = nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)
            return key.withUnsafeBytes { k in
                let kp = k.baseAddress!.assumingMemoryBound(to: UInt8.self)
                switch algorithm {
                case .chaChaPoly:
                    return crypto_aead_chacha20poly1305_ietf_decrypt(
                        out, &written, nil, c, UInt64(ciphertext.count), ad, UInt64(aad.count), npub, kp)
                case .xChaChaPoly:
                    return crypto_aead_xchacha20poly1305_ietf_decrypt(
                        out, &written, nil, c, UInt64(ciphertext.count), ad, UInt64(aad.count), npub, kp)
                case .aesGCM:
                    return aesState!.withUnsafeBytes { s in
                        crypto_aead_aes256gcm_decrypt_afternm(
                            out, &written, nil, c, UInt64(ciphertext.count), ad, UInt64(aad.count), npub,
                            s.baseAddress!.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self))
                    }
                }
            }
        }
        guard rc == 0 else { throw .authenticationFailure }
        return Int(written)
    }

    // MARK: Convenience interface

    /// Encrypts `plaintext`, returning ciphertext followed by the tag.
    public func seal(_ plaintext: [UInt8], nonce: [UInt8], authenticating aad: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plaintext.count + algorithm.tagByteCount)
        let result: Result<Int, CryptoError> = nonce.withUnsafeBytes { nb in
            plaintext.withUnsafeBytes { pb in
                aad.withUnsafeBytes { ab in
                    out.withUnsafeMutableBytes { ob in
                        Result { () throws(CryptoError) -> Int in try seal(nonce: nb, plaintext: pb, authenticating: ab, into: ob) }
                    }
                }
            }
        }
        _ = try result.get()
        return out
    }

    /// Verifies and decrypts `ciphertext` (ciphertext followed by the tag).
    public func open(_ ciphertext: [UInt8], nonce: [UInt8], authenticating aad: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        guard ciphertext.count >= algorithm.tagByteCount else {
            throw .malformedInput("ciphertext of \(ciphertext.count) bytes is shorter than the \(algorithm.tagByteCount)-byte tag")
        }
        var out = [UInt8](repeating: 0, count: ciphertext.count - algorithm.tagByteCount)
        let result: Result<Int, CryptoError> = nonce.withUnsafeBytes { nb in
            ciphertext.withUnsafeBytes { cb in
                aad.withUnsafeBytes { ab in
                    out.withUnsafeMutableBytes { ob in
                        Result { () throws(CryptoError) -> Int in try open(nonce: nb, ciphertext: cb, authenticating: ab, into: ob) }
                    }
                }
            }
        }
        _ = try result.get()
        return out
    }

    @inline(__always)
    private func checkNonce(_ nonce: UnsafeRawBufferPointer) throws(CryptoError) {
        guard nonce.count == algorithm.nonceByteCount, nonce.baseAddress != nil else {
            throw .incorrectNonceSize(expected: algorithm.nonceByteCount, actual: nonce.count)
        }
    }
}
