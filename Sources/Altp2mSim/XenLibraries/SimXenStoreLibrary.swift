import Altp2m
import XenInterface
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// ``XenStoreLibrary`` on the simulator's xenstored, through a
/// ``SimXenStore`` connection (as dom0, or as a guest with its token).
public final class SimXenStoreLibrary: XenStoreLibrary {
    public let connection: SimXenStore

    /// `xs_open` on the simulator at `stateDirectory`, as the domain whose
    /// `token` is given, or as dom0.
    public init(stateDirectory: StateDirectory = .resolve(), token: String? = nil) throws(SimClientError) {
        connection = try SimXenStore(stateDirectory: stateDirectory, token: token)
    }

    public var fileDescriptor: Int32 { connection.fileDescriptor }

    private func t(_ transaction: UInt32) -> UInt32? { transaction == 0 ? nil : transaction }

    public func read(_ path: String, transaction: UInt32) throws(XenErrno) -> [UInt8] {
        try asErrno { () throws(SimClientError) in try connection.read(path, transaction: t(transaction)) }
    }

    public func write(_ path: String, _ value: [UInt8], transaction: UInt32) throws(XenErrno) {
        try asErrno { () throws(SimClientError) in try connection.write(path, value, transaction: t(transaction)) }
    }

    public func mkdir(_ path: String, transaction: UInt32) throws(XenErrno) {
        try asErrno { () throws(SimClientError) in try connection.mkdir(path, transaction: t(transaction)) }
    }

    public func remove(_ path: String, transaction: UInt32) throws(XenErrno) {
        try asErrno { () throws(SimClientError) in try connection.remove(path, transaction: t(transaction)) }
    }

    public func directory(_ path: String, transaction: UInt32) throws(XenErrno) -> [String] {
        try asErrno { () throws(SimClientError) in try connection.directory(path, transaction: t(transaction)) }
    }

    public func getPermissions(_ path: String, transaction: UInt32) throws(XenErrno) -> [XenStoreAccess] {
        try asErrno { () throws(SimClientError) in try connection.permissions(path, transaction: t(transaction)) }.map {
            XenStoreAccess(domain: $0.domain, read: $0.access.contains(.read), write: $0.access.contains(.write))
        }
    }

    public func setPermissions(_ path: String, _ permissions: [XenStoreAccess], transaction: UInt32) throws(XenErrno) {
        let list = permissions.map { entry in
            XenStorePermission(entry.domain, XenStorePermission.Access(rawValue: UInt8(entry.bits)))
        }
        try asErrno { () throws(SimClientError) in try connection.setPermissions(path, list, transaction: t(transaction)) }
    }

    public func transactionStart() throws(XenErrno) -> UInt32 {
        try asErrno { () throws(SimClientError) in try connection.transactionStart() }
    }

    public func transactionEnd(_ transaction: UInt32, abort: Bool) throws(XenErrno) {
        try asErrno { () throws(SimClientError) in try connection.transactionEnd(transaction, abort: abort) }
    }

    public func watch(_ path: String, token: String) throws(XenErrno) {
        try asErrno { () throws(SimClientError) in try connection.watch(path, token: token) }
    }

    public func unwatch(_ path: String, token: String) throws(XenErrno) {
        try asErrno { () throws(SimClientError) in try connection.unwatch(path, token: token) }
    }

    public func checkWatch() throws(XenErrno) -> (path: String, token: String)? {
        try asErrno { () throws(SimClientError) in try connection.readWatch(timeoutMilliseconds: 0) }
    }
}
