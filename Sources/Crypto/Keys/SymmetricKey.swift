/// A secret symmetric key held in guarded, wiped-on-release memory.
public struct SymmetricKey: Sendable, Equatable, CustomStringConvertible {
    /// The key bytes.
    public let bytes: SecureBytes

    /// A fresh random key of `byteCount` bytes (32 for every AEAD here).
    public init(randomByteCount byteCount: Int = 32) {
        bytes = SecureBytes(randomCount: byteCount)
    }

    /// A key made from existing secret bytes.
    public init(_ bytes: SecureBytes) {
        self.bytes = bytes
    }

    /// A key copied from raw bytes (test vectors, key files).
    public init(copying raw: some Collection<UInt8>) {
        bytes = SecureBytes(raw)
    }

    /// The key length in bytes.
    public var byteCount: Int { bytes.count }

    /// Calls `body` with the key bytes; do not let the pointer escape.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try bytes.withUnsafeBytes(body)
    }

    public var description: String { "SymmetricKey(\(byteCount) bytes, redacted)" }
}
