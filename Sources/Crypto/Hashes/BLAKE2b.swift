internal import CSodium

/// BLAKE2b with a 64-byte digest (`crypto_generichash_blake2b`), unkeyed or keyed.
public final class BLAKE2b: HashFunction {
    public static let noiseName = "BLAKE2b"
    public static let byteCount = 64
    public static let blockByteCount = 128
    /// Keyed BLAKE2b accepts keys of 16 to 64 bytes.
    public static let keyByteCountRange = 16...64

    // libsodium's state is declared 64-byte aligned, which Swift cannot import
    // as a type; it lives in raw memory with that alignment.
    private let state: UnsafeMutableRawPointer
    private let stateSize: Int
    private let outputByteCount: Int

    public convenience init() {
        self.init(uncheckedKey: nil, outputByteCount: BLAKE2b.byteCount)
    }

    /// A keyed BLAKE2b (a MAC) with an output of `outputByteCount` bytes (1...64).
    public convenience init(key: SymmetricKey, outputByteCount: Int = BLAKE2b.byteCount) throws(CryptoError) {
        guard BLAKE2b.keyByteCountRange.contains(key.byteCount) else {
            throw .incorrectKeySize(expected: 32, actual: key.byteCount)
        }
        guard (1...64).contains(outputByteCount) else {
            throw .malformedInput("BLAKE2b output length \(outputByteCount) is outside 1...64")
        }
        self.init(uncheckedKey: key, outputByteCount: outputByteCount)
    }

    private init(uncheckedKey key: SymmetricKey?, outputByteCount: Int) {
        Sodium.ensureInitialized()
        stateSize = crypto_generichash_blake2b_statebytes()
        state = UnsafeMutableRawPointer.allocate(byteCount: stateSize, alignment: 64)
        self.outputByteCount = outputByteCount
        let rc: Int32
        if let key {
            rc = key.withUnsafeBytes { k in
                crypto_generichash_blake2b_init(OpaquePointer(state), k.baseAddress!.assumingMemoryBound(to: UInt8.self), k.count, outputByteCount)
            }
        } else {
            rc = crypto_generichash_blake2b_init(OpaquePointer(state), nil, 0, outputByteCount)
        }
        precondition(rc == 0, "crypto_generichash_blake2b_init rejected checked arguments")
    }

    deinit {
        sodium_memzero(state, stateSize)
        state.deallocate()
    }

    public func update(_ data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        _ = crypto_generichash_blake2b_update(OpaquePointer(state), base.assumingMemoryBound(to: UInt8.self), UInt64(data.count))
    }

    public func finalize(into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count >= outputByteCount, "BLAKE2b output buffer too small")
        _ = crypto_generichash_blake2b_final(OpaquePointer(state), output.baseAddress!.assumingMemoryBound(to: UInt8.self), outputByteCount)
    }
}
