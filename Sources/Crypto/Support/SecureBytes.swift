internal import CSodium

/// Bytes that hold a secret: kept in guarded memory from `sodium_malloc`
/// (locked against swapping, with guard pages) and wiped when released.
///
/// `SecureBytes` is a reference to immutable-after-initialisation storage;
/// copies share the storage, and the last release zeroes it (sodium_free
/// zeroes before unmapping). Use it for keys, pre-shared keys and chaining
/// keys; never for bulk data.
public struct SecureBytes: @unchecked Sendable {
    // @unchecked: the storage is written only during initialisation (and by
    // `withUnsafeMutableBytes` on a uniquely referenced value), so sharing
    // across threads is read-only.
    final class Storage {
        let pointer: UnsafeMutableRawPointer
        let count: Int

        init(count: Int) {
            Sodium.ensureInitialized()
            // sodium_malloc(0) is legal but returns a guard-only region; keep
            // one byte so the pointer is always valid to pass to C.
            guard let p = sodium_malloc(max(count, 1)) else {
                fatalError("sodium_malloc(\(count)) failed: out of locked memory")
            }
            pointer = p
            self.count = count
        }

        deinit {
            sodium_free(pointer)
        }
    }

    var storage: Storage

    /// `count` zero bytes.
    public init(zeros count: Int) {
        storage = Storage(count: count)
        sodium_memzero(storage.pointer, max(count, 1))
    }

    /// `count` bytes from the operating system's CSPRNG.
    public init(randomCount count: Int) {
        storage = Storage(count: count)
        randombytes_buf(storage.pointer, count)
    }

    /// A copy of `bytes`. The caller remains responsible for wiping its own copy.
    public init(_ bytes: some Collection<UInt8>) {
        storage = Storage(count: bytes.count)
        let out = UnsafeMutableRawBufferPointer(start: storage.pointer, count: bytes.count)
        out.copyBytes(from: bytes)
    }

    /// A copy of the bytes in `buffer`.
    public init(copying buffer: UnsafeRawBufferPointer) {
        storage = Storage(count: buffer.count)
        if let base = buffer.baseAddress, buffer.count > 0 {
            storage.pointer.copyMemory(from: base, byteCount: buffer.count)
        }
    }

    /// The number of bytes.
    public var count: Int { storage.count }

    /// Calls `body` with the secret bytes. Do not let the pointer escape.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: storage.pointer, count: storage.count))
    }

    /// Calls `body` with mutable access, copying the storage first if it is shared.
    public mutating func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = Storage(count: storage.count)
            copy.pointer.copyMemory(from: storage.pointer, byteCount: storage.count)
            storage = copy
        }
        return try body(UnsafeMutableRawBufferPointer(start: storage.pointer, count: storage.count))
    }

    /// The bytes as an ordinary array. The array is not wiped on release: use
    /// only for public values or at an API boundary that needs an array.
    public var unsafeArray: [UInt8] { withUnsafeBytes { Array($0) } }
}

extension SecureBytes: Equatable {
    /// Constant-time comparison (the lengths are not secret).
    public static func == (lhs: SecureBytes, rhs: SecureBytes) -> Bool {
        lhs.withUnsafeBytes { a in rhs.withUnsafeBytes { b in constantTimeEquals(a, b) } }
    }
}

extension SecureBytes: CustomStringConvertible {
    /// Never prints the secret.
    public var description: String { "SecureBytes(\(count) bytes, redacted)" }
}
