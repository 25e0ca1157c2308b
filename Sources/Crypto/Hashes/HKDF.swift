/// HKDF as the Noise Protocol Framework defines it (§4.3): HMAC-based
/// extract-and-expand with a zero-length info and 2 or 3 outputs of the
/// hash's length. (Equal to RFC 5869 with an empty info for these sizes.)
public enum NoiseHKDF<H: HashFunction> {
    /// `HKDF(chaining_key, input_key_material, num_outputs)`; `outputs` is 2 or 3.
    public static func derive(chainingKey: SecureBytes, inputKeyMaterial: UnsafeRawBufferPointer, outputs: Int) -> [SecureBytes] {
        precondition(outputs == 2 || outputs == 3, "Noise HKDF produces 2 or 3 outputs")
        let tempKey = chainingKey.withUnsafeBytes { ck in
            HMAC<H>.authenticationCode(key: ck, message: [inputKeyMaterial])
        }
        var results: [SecureBytes] = []
        results.reserveCapacity(outputs)
        var previous: SecureBytes? = nil
        for i in 1...outputs {
            var counter = UInt8(i)
            let next = tempKey.withUnsafeBytes { tk in
                withUnsafeBytes(of: &counter) { c in
                    if let previous {
                        return previous.withUnsafeBytes { p in HMAC<H>.authenticationCode(key: tk, message: [p, c]) }
                    }
                    return HMAC<H>.authenticationCode(key: tk, message: [c])
                }
            }
            results.append(next)
            previous = next
        }
        return results
    }

    /// Convenience for array input key material.
    public static func derive(chainingKey: SecureBytes, inputKeyMaterial: [UInt8], outputs: Int) -> [SecureBytes] {
        inputKeyMaterial.withUnsafeBytes { derive(chainingKey: chainingKey, inputKeyMaterial: $0, outputs: outputs) }
    }
}
