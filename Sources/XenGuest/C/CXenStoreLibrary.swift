#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import XenInterface
internal import CXenGuest

/// ``XenStoreLibrary`` over libxenstore: argument conversion, `free` of
/// what the library allocated, `false`/`NULL` with `errno` as a thrown
/// ``XenErrno``.
final class CXenStoreLibrary: XenStoreLibrary {
    private let xsh: OpaquePointer

    /// `xs_open(0)`.
    init() throws(XenErrno) {
        guard let xsh = xs_open(0) else { throw currentXenErrno() }
        self.xsh = xsh
    }

    deinit { xs_close(xsh) }

    var fileDescriptor: Int32 { xs_fileno(xsh) }

    @inline(__always)
    private func check(_ ok: Bool) throws(XenErrno) {
        if !ok { throw currentXenErrno() }
    }

    func read(_ path: String, transaction: UInt32) throws(XenErrno) -> [UInt8] {
        var length: UInt32 = 0
        guard let value = xs_read(xsh, transaction, path, &length) else { throw currentXenErrno() }
        defer { free(value) }
        return Array(UnsafeRawBufferPointer(start: value, count: Int(length)))
    }

    func write(_ path: String, _ value: [UInt8], transaction: UInt32) throws(XenErrno) {
        guard let length = UInt32(exactly: value.count) else { throw .tooBig }
        try check(value.withUnsafeBytes { xs_write(xsh, transaction, path, $0.baseAddress, length) })
    }

    func mkdir(_ path: String, transaction: UInt32) throws(XenErrno) {
        try check(xs_mkdir(xsh, transaction, path))
    }

    func remove(_ path: String, transaction: UInt32) throws(XenErrno) {
        try check(xs_rm(xsh, transaction, path))
    }

    func directory(_ path: String, transaction: UInt32) throws(XenErrno) -> [String] {
        var count: UInt32 = 0
        guard let list = xs_directory(xsh, transaction, path, &count) else { throw currentXenErrno() }
        defer { free(list) }
        return (0..<Int(count)).compactMap { list[$0].map { String(cString: $0) } }
    }

    func getPermissions(_ path: String, transaction: UInt32) throws(XenErrno) -> [XenStoreAccess] {
        var count: UInt32 = 0
        guard let list = xs_get_permissions(xsh, transaction, path, &count) else { throw currentXenErrno() }
        defer { free(list) }
        return (0..<Int(count)).map { index in
            let entry = list[index]
            return XenStoreAccess(domain: DomainID(rawValue: UInt16(truncatingIfNeeded: entry.id)),
                                  read: entry.perms & UInt32(XS_PERM_READ) != 0,
                                  write: entry.perms & UInt32(XS_PERM_WRITE) != 0)
        }
    }

    func setPermissions(_ path: String, _ permissions: [XenStoreAccess], transaction: UInt32) throws(XenErrno) {
        var entries = permissions.map { xs_permissions(id: UInt32($0.domain.rawValue), perms: $0.bits) }
        try check(xs_set_permissions(xsh, transaction, path, &entries, UInt32(entries.count)))
    }

    func transactionStart() throws(XenErrno) -> UInt32 {
        let transaction = xs_transaction_start(xsh)
        guard transaction != 0 else { throw currentXenErrno() }
        return transaction
    }

    func transactionEnd(_ transaction: UInt32, abort: Bool) throws(XenErrno) {
        try check(xs_transaction_end(xsh, transaction, abort))
    }

    func watch(_ path: String, token: String) throws(XenErrno) {
        try check(xs_watch(xsh, path, token))
    }

    func unwatch(_ path: String, token: String) throws(XenErrno) {
        try check(xs_unwatch(xsh, path, token))
    }

    func checkWatch() throws(XenErrno) -> (path: String, token: String)? {
        guard let vector = xs_check_watch(xsh) else {
            if errnoValue() == EAGAIN { return nil }
            throw currentXenErrno()
        }
        defer { free(vector) }
        guard let path = vector[Int(XS_WATCH_PATH.rawValue)], let token = vector[Int(XS_WATCH_TOKEN.rawValue)] else {
            throw .invalid
        }
        return (String(cString: path), String(cString: token))
    }
}

/// Connects to xenstore through libxenstore (`xs_open`). dom0's
/// `XenControl` (XenBackend) uses xenstore as the guests do; the C library
/// is wrapped once, here with the guest's libraries, and reached through
/// this function, so the wrapper stays internal.
package func openCXenStore() throws(XenErrno) -> any XenStoreLibrary {
    try CXenStoreLibrary()
}
