/// HMAC (RFC 2104) over any `HashFunction`, with the hash's own block size,
/// as the Noise Protocol Framework specifies it (§4.3): for BLAKE2b that is
/// HMAC with a 128-byte block, which libsodium does not provide directly.
public enum HMAC<H: HashFunction> {
    /// The MAC of `message` under `key`, in guarded memory (HMAC outputs are
    /// keys in HKDF and Noise).
    public static func authenticationCode(key: UnsafeRawBufferPointer, message parts: [UnsafeRawBufferPointer]) -> SecureBytes {
        let block = H.blockByteCount
        var result = SecureBytes(zeros: H.byteCount)
        // The padded key and the inner digest are secret too, but short-lived:
        // they live on the stack and are wiped before returning, which spares
        // a guarded allocation (several system calls) per HMAC in handshakes.
        withUnsafeTemporaryAllocation(byteCount: 2 * block + H.byteCount, alignment: 16) { scratch in
            defer { secureZero(scratch) }
            let k0 = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<block])
            let pad = UnsafeMutableRawBufferPointer(rebasing: scratch[block..<2 * block])
            let inner = UnsafeMutableRawBufferPointer(rebasing: scratch[2 * block..<2 * block + H.byteCount])
            // K0: the key hashed if longer than a block, then zero-padded.
            k0.initializeMemory(as: UInt8.self, repeating: 0)
            if key.count > block {
                let h = H()
                h.update(key)
                h.finalize(into: UnsafeMutableRawBufferPointer(rebasing: k0[0..<H.byteCount]))
            } else if key.count > 0 {
                k0.copyMemory(from: key)
            }

            // inner = H((K0 ^ ipad) || message)
            for i in 0..<block { pad[i] = k0[i] ^ 0x36 }
            let hi = H()
            hi.update(UnsafeRawBufferPointer(pad))
            for part in parts { hi.update(part) }
            hi.finalize(into: inner)

            // result = H((K0 ^ opad) || inner)
            for i in 0..<block { pad[i] = k0[i] ^ 0x5c }
            let ho = H()
            ho.update(UnsafeRawBufferPointer(pad))
            ho.update(UnsafeRawBufferPointer(inner))
            result.withUnsafeMutableBytes { ho.finalize(into: $0) }
        }
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
