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
    // @unchecked: every stored property is written only in init.
    public let algorithm: AEADAlgorithm
    private let key: SecureBytes
    /// libsodium's precomputed AES state (crypto_aead_aes256gcm_state, 512
    /// bytes, 16-byte aligned); nil for the ChaCha algorithms.
    private let aesState: SecureBytes?
    /// The bytes libsodium is handed on every call: the key for ChaCha, the
    /// expanded AES state for AES-GCM. Kept as a raw pointer so the per-message
    /// path is a few checks and one C call, with no closure, no retain/release
    /// and no double indirection (the benchmark holds the wrapper to 5 % of
    /// libsodium at 64 bytes). Valid for the object's lifetime: it points into
    /// the guarded storage of `key` or `aesState`, which this object keeps
    /// alive and never mutates.
    private let secret: UnsafeRawPointer

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
            // sodium_malloc places an allocation so that it ends at a page
            // boundary; for the state's 512 bytes that start is 512-aligned,
            // which covers its 16-byte alignment requirement.
            let state = SecureBytes(zeros: crypto_aead_aes256gcm_statebytes())
            precondition(Int(bitPattern: state.storage.pointer) % 16 == 0, "AES-GCM state is not 16-byte aligned")
            state.withUnsafeBytes { s in
                key.withUnsafeBytes { k in
                    _ = crypto_aead_aes256gcm_beforenm(
                        UnsafeMutableRawPointer(mutating: s.baseAddress!).assumingMemoryBound(to: crypto_aead_aes256gcm_state.self),
                        k.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
            aesState = state
            secret = UnsafeRawPointer(state.storage.pointer)
        } else {
            aesState = nil
            secret = UnsafeRawPointer(key.bytes.storage.pointer)
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
        let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let m = plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let ad = aad.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let npub = nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)
        // The length out-parameter is nil: the length is known (`needed`), and
        // an address-taken local would cost a stack protector on every call.
        let rc: Int32
        switch algorithm {
        case .chaChaPoly:
            rc = crypto_aead_chacha20poly1305_ietf_encrypt(
                out, nil, m, UInt64(plaintext.count), ad, UInt64(aad.count), nil, npub,
                secret.assumingMemoryBound(to: UInt8.self))
        case .xChaChaPoly:
            rc = crypto_aead_xchacha20poly1305_ietf_encrypt(
                out, nil, m, UInt64(plaintext.count), ad, UInt64(aad.count), nil, npub,
                secret.assumingMemoryBound(to: UInt8.self))
        case .aesGCM:
            rc = crypto_aead_aes256gcm_encrypt_afternm(
                out, nil, m, UInt64(plaintext.count), ad, UInt64(aad.count), nil, npub,
                secret.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self))
        }
        guard rc == 0 else { throw .libsodiumFailure("\(algorithm) encrypt") }
        return needed
    }

    /// Verifies and decrypts `ciphertext` (which ends with the tag) into `output`.
    ///
    /// No unauthenticated plaintext is ever visible: when the tag does not
    /// verify, libsodium (1.0.18, every algorithm here) overwrites the first
    /// `ciphertext.count - 16` bytes of `output` with zeros. `output` may
    /// start at the same address as `ciphertext`, but then a failed open
    /// wipes the ciphertext too: copy out of memory a peer can write before
    /// opening, rather than opening in place there. Allocates nothing.
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
        let c = ciphertext.baseAddress!.assumingMemoryBound(to: UInt8.self)
        // libsodium wants a non-null output pointer even for an empty
        // plaintext, and then writes nothing through it; the ciphertext's own
        // address serves, without an address-taken local (and the stack
        // protector that would come with it) on the per-message path.
        let out = (output.baseAddress ?? UnsafeMutableRawPointer(mutating: ciphertext.baseAddress!))
            .assumingMemoryBound(to: UInt8.self)
        let ad = aad.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let npub = nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let rc: Int32
        switch algorithm {
        case .chaChaPoly:
            rc = crypto_aead_chacha20poly1305_ietf_decrypt(
                out, nil, nil, c, UInt64(ciphertext.count), ad, UInt64(aad.count), npub,
                secret.assumingMemoryBound(to: UInt8.self))
        case .xChaChaPoly:
            rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
                out, nil, nil, c, UInt64(ciphertext.count), ad, UInt64(aad.count), npub,
                secret.assumingMemoryBound(to: UInt8.self))
        case .aesGCM:
            rc = crypto_aead_aes256gcm_decrypt_afternm(
                out, nil, nil, c, UInt64(ciphertext.count), ad, UInt64(aad.count), npub,
                secret.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self))
        }
        guard rc == 0 else { throw .authenticationFailure }
        return needed
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
        // The zero-copy open does every check, in its order, so both
        // interfaces report the same error for the same input.
        var out = [UInt8](repeating: 0, count: max(0, ciphertext.count - algorithm.tagByteCount))
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
