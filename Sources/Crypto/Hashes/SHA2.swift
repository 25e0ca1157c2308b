internal import CSodium

/// SHA-256 (`crypto_hash_sha256`).
public final class SHA256: HashFunction {
    public static let noiseName = "SHA256"
    public static let byteCount = 32
    public static let blockByteCount = 64

    private var state = crypto_hash_sha256_state()

    public init() {
        Sodium.ensureInitialized()
        crypto_hash_sha256_init(&state)
    }

    deinit {
        withUnsafeMutableBytes(of: &state) { secureZero($0) }
    }

    public func update(_ data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(data.count))
    }

    public func finalize(into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count >= Self.byteCount, "SHA-256 output buffer too small")
        crypto_hash_sha256_final(&state, output.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }
}

/// SHA-512 (`crypto_hash_sha512`).
public final class SHA512: HashFunction {
    public static let noiseName = "SHA512"
    public static let byteCount = 64
    public static let blockByteCount = 128

    private var state = crypto_hash_sha512_state()

    public init() {
        Sodium.ensureInitialized()
        crypto_hash_sha512_init(&state)
    }

    deinit {
        withUnsafeMutableBytes(of: &state) { secureZero($0) }
    }

    public func update(_ data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        crypto_hash_sha512_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(data.count))
    }

    public func finalize(into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count >= Self.byteCount, "SHA-512 output buffer too small")
        crypto_hash_sha512_final(&state, output.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }
}
