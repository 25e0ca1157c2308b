internal import CSodium

/// Anonymous public-key encryption to an X25519 key (libsodium's sealed
/// boxes): anyone who knows the recipient's public key can seal; only the
/// holder of the private key can open, and the box says nothing about who
/// sealed it.
///
/// Each box carries a fresh ephemeral X25519 public key (32 bytes) and a
/// Poly1305 tag (16 bytes) in front of an XSalsa20 ciphertext; the nonce is
/// BLAKE2b(ephemeral public key || recipient public key), so nothing else is
/// sent. The grant module seals channel descriptors to an agent's key this way.
///
/// A sealed box authenticates the content, not the sender: when the sender
/// matters, sign the plaintext (`Curve25519.Signing`) before sealing.
public enum AnonymousSealedBox {
    /// Bytes a sealed box adds to its plaintext (`crypto_box_SEALBYTES`, 48).
    public static let overhead = Int(crypto_box_sealbytes())

    // MARK: Zero-copy interface

    /// Seals `plaintext` to `recipient` into `output`.
    ///
    /// The corresponding C function is `crypto_box_seal`.
    /// - Returns: the number of bytes written, `plaintext.count + overhead`.
    /// - Throws: `bufferTooSmall` when `output` cannot hold the box,
    ///   `malformedInput` when `recipient` is a low-order point (every
    ///   "shared" key with it would be public) or the message is too large.
    @discardableResult
    public static func seal(
        _ plaintext: UnsafeRawBufferPointer,
        to recipient: Curve25519.KeyAgreement.PublicKey,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        Sodium.ensureInitialized()
        guard plaintext.count <= AEADAlgorithm.maximumMessageByteCount else {
            throw .malformedInput("message of \(plaintext.count) bytes exceeds the sealed-box limit")
        }
        let needed = plaintext.count + overhead
        guard output.count >= needed, let out = output.baseAddress else {
            throw .bufferTooSmall(needed: needed, available: output.count)
        }
        var empty: UInt8 = 0
        let rc = withUnsafePointer(to: &empty) { emptyPointer in
            let m = plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? emptyPointer
            return recipient.rawRepresentation.withUnsafeBufferPointer { pk in
                crypto_box_seal(out.assumingMemoryBound(to: UInt8.self), m, UInt64(plaintext.count), pk.baseAddress!)
            }
        }
        // crypto_box_seal fails only when the X25519 result is all zeros,
        // which happens exactly for low-order recipient keys.
        guard rc == 0 else {
            throw .malformedInput("X25519 public key is a low-order point (all-zero shared secret)")
        }
        return needed
    }

    /// Opens a box sealed to `recipient`'s public key into `output`.
    ///
    /// Decrypt into `SecureBytes.withUnsafeMutableBytes` when the content is
    /// secret, so no copy of it lingers in ordinary memory.
    ///
    /// The corresponding C function is `crypto_box_seal_open`.
    /// - Returns: the plaintext length, `box.count - overhead`.
    /// - Throws: `malformedInput` when `box` is shorter than `overhead`,
    ///   `bufferTooSmall` when `output` cannot hold the plaintext,
    ///   `authenticationFailure` when the box was not sealed to this key or
    ///   was modified.
    @discardableResult
    public static func open(
        _ box: UnsafeRawBufferPointer,
        with recipient: Curve25519.KeyAgreement.PrivateKey,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        Sodium.ensureInitialized()
        guard box.count >= overhead, let c = box.baseAddress else {
            throw .malformedInput("sealed box of \(box.count) bytes is shorter than its \(overhead)-byte overhead")
        }
        let needed = box.count - overhead
        guard output.count >= needed else {
            throw .bufferTooSmall(needed: needed, available: output.count)
        }
        var scratch: UInt8 = 0
        let rc = withUnsafeMutablePointer(to: &scratch) { scratchPointer in
            // libsodium wants a valid output pointer even for an empty plaintext.
            let m = output.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? scratchPointer
            return recipient.publicKey.rawRepresentation.withUnsafeBufferPointer { pk in
                recipient.rawRepresentation.withUnsafeBytes { sk in
                    crypto_box_seal_open(m, c.assumingMemoryBound(to: UInt8.self), UInt64(box.count),
                                         pk.baseAddress!, sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        guard rc == 0 else { throw .authenticationFailure }
        return needed
    }

    // MARK: Convenience interface

    /// Seals `plaintext` to `recipient`, returning the box
    /// (`plaintext.count + overhead` bytes).
    public static func seal(_ plaintext: [UInt8], to recipient: Curve25519.KeyAgreement.PublicKey) throws(CryptoError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plaintext.count + overhead)
        let result: Result<Int, CryptoError> = plaintext.withUnsafeBytes { p in
            out.withUnsafeMutableBytes { o in
                Result { () throws(CryptoError) -> Int in try seal(p, to: recipient, into: o) }
            }
        }
        _ = try result.get()
        return out
    }

    /// Opens a box sealed to `recipient`'s public key, returning the plaintext.
    public static func open(_ box: [UInt8], with recipient: Curve25519.KeyAgreement.PrivateKey) throws(CryptoError) -> [UInt8] {
        guard box.count >= overhead else {
            throw .malformedInput("sealed box of \(box.count) bytes is shorter than its \(overhead)-byte overhead")
        }
        var out = [UInt8](repeating: 0, count: box.count - overhead)
        let result: Result<Int, CryptoError> = box.withUnsafeBytes { b in
            out.withUnsafeMutableBytes { o in
                Result { () throws(CryptoError) -> Int in try open(b, with: recipient, into: o) }
            }
        }
        _ = try result.get()
        return out
    }
}
