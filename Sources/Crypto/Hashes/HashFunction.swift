/// A cryptographic hash with incremental input, as Noise and HMAC need it.
///
/// Hashers are reference types because libsodium's states are C structs with
/// alignment Swift cannot express; each instance owns its state and wipes it
/// on release (it may hold HMAC key material).
public protocol HashFunction: AnyObject {
    /// Noise's name for the hash ("BLAKE2b", "SHA256", "SHA512").
    static var noiseName: String { get }
    /// Digest length in bytes (Noise's HASHLEN).
    static var byteCount: Int { get }
    /// Input block length in bytes (Noise's BLOCKLEN, used by HMAC).
    static var blockByteCount: Int { get }

    /// A fresh hasher.
    init()
    /// Absorbs `data`.
    func update(_ data: UnsafeRawBufferPointer)
    /// Writes the digest into `output` (at least `byteCount` bytes). The
    /// hasher must not be used afterwards.
    func finalize(into output: UnsafeMutableRawBufferPointer)
}

extension HashFunction {
    /// Absorbs the bytes of an array.
    public func update(_ data: [UInt8]) {
        data.withUnsafeBytes { update($0) }
    }

    /// The digest as a new array. The hasher must not be used afterwards.
    public func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.byteCount)
        out.withUnsafeMutableBytes { finalize(into: $0) }
        return out
    }

    /// The digest of `data`.
    public static func hash(_ data: [UInt8]) -> [UInt8] {
        let h = Self()
        h.update(data)
        return h.finalize()
    }

    /// The digest of the concatenation of `parts`.
    public static func hash(_ parts: [UInt8]...) -> [UInt8] {
        let h = Self()
        for p in parts { h.update(p) }
        return h.finalize()
    }
}
