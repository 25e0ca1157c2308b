/// HMAC (RFC 2104) over any `HashFunction`, with the hash's own block size,
/// as the Noise Protocol Framework specifies it (§4.3): for BLAKE2b that is
/// HMAC with a 128-byte block, which libsodium does not provide directly.
public enum HMAC<H: HashFunction> {
    /// The MAC of `message` under `key`, in guarded memory (HMAC outputs are
    /// keys in HKDF and Noise).
    public static func authenticationCode(key: UnsafeRawBufferPointer, message parts: [UnsafeRawBufferPointer]) -> SecureBytes {
        let block = H.blockByteCount
        // K0: the key hashed if longer than a block, then zero-padded.
        var k0 = SecureBytes(zeros: block)
        k0.withUnsafeMutableBytes { k in
            if key.count > block {
                let h = H()
                h.update(key)
                h.finalize(into: UnsafeMutableRawBufferPointer(rebasing: k[0..<H.byteCount]))
            } else if key.count > 0 {
                k.copyMemory(from: key)
            }
        }
        var pad = SecureBytes(zeros: block)
        var inner = SecureBytes(zeros: H.byteCount)
        var result = SecureBytes(zeros: H.byteCount)

        // inner = H((K0 ^ ipad) || message)
        pad.withUnsafeMutableBytes { p in
            k0.withUnsafeBytes { k in for i in 0..<block { p[i] = k[i] ^ 0x36 } }
        }
        let hi = H()
        pad.withUnsafeBytes { hi.update($0) }
        for part in parts { hi.update(part) }
        inner.withUnsafeMutableBytes { hi.finalize(into: $0) }

        // result = H((K0 ^ opad) || inner)
        pad.withUnsafeMutableBytes { p in
            k0.withUnsafeBytes { k in for i in 0..<block { p[i] = k[i] ^ 0x5c } }
        }
        let ho = H()
        pad.withUnsafeBytes { ho.update($0) }
        inner.withUnsafeBytes { ho.update($0) }
        result.withUnsafeMutableBytes { ho.finalize(into: $0) }
        return result
    }

    /// The MAC of `message` under `key`.
    public static func authenticationCode(for message: [UInt8], using key: [UInt8]) -> SecureBytes {
        key.withUnsafeBytes { k in message.withUnsafeBytes { m in authenticationCode(key: k, message: [m]) } }
    }

    /// Whether `mac` is the MAC of `message` under `key` (constant time).
    public static func isValidAuthenticationCode(_ mac: [UInt8], for message: [UInt8], using key: [UInt8]) -> Bool {
        let expected = authenticationCode(for: message, using: key)
        return expected.withUnsafeBytes { e in mac.withUnsafeBytes { constantTimeEquals(e, $0) } }
    }
}
