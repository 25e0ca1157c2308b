import Altp2m

/// The calls of libxenstore (`xenstore.h`) the backend and the guest side
/// make, one method per C function. A method fails with the error xenstored
/// answered (`ENOENT`, `EACCES`, `EAGAIN` from a transaction end, ...).
///
/// `transaction` 0 is `XBT_NULL`: the call stands alone.
public protocol XenStoreLibrary: AnyObject {
    /// `xs_fileno`: readable while watch events wait.
    var fileDescriptor: Int32 { get }
    /// `xs_read`.
    func read(_ path: String, transaction: UInt32) throws(XenErrno) -> [UInt8]
    /// `xs_write`.
    func write(_ path: String, _ value: [UInt8], transaction: UInt32) throws(XenErrno)
    /// `xs_mkdir`.
    func mkdir(_ path: String, transaction: UInt32) throws(XenErrno)
    /// `xs_rm`.
    func remove(_ path: String, transaction: UInt32) throws(XenErrno)
    /// `xs_directory`: the children's names.
    func directory(_ path: String, transaction: UInt32) throws(XenErrno) -> [String]
    /// `xs_get_permissions`: the owner first.
    func getPermissions(_ path: String, transaction: UInt32) throws(XenErrno) -> [XenStoreAccess]
    /// `xs_set_permissions`: the owner first.
    func setPermissions(_ path: String, _ permissions: [XenStoreAccess], transaction: UInt32) throws(XenErrno)
    /// `xs_transaction_start`.
    func transactionStart() throws(XenErrno) -> UInt32
    /// `xs_transaction_end`: `EAGAIN` when another transaction won.
    func transactionEnd(_ transaction: UInt32, abort: Bool) throws(XenErrno)
    /// `xs_watch`.
    func watch(_ path: String, token: String) throws(XenErrno)
    /// `xs_unwatch`.
    func unwatch(_ path: String, token: String) throws(XenErrno)
    /// `xs_check_watch`: the next waiting event, `nil` when none waits
    /// (`EAGAIN` in C).
    func checkWatch() throws(XenErrno) -> (path: String, token: String)?
}

/// One entry of a node's permission list (`struct xs_permissions`): the
/// first entry names the owner and what every domain not listed may do.
public struct XenStoreAccess: Sendable, Equatable {
    /// `id`.
    public var domain: DomainID
    /// `XS_PERM_READ`.
    public var read: Bool
    /// `XS_PERM_WRITE`.
    public var write: Bool

    public init(domain: DomainID, read: Bool, write: Bool) {
        self.domain = domain
        self.read = read
        self.write = write
    }

    /// The `perms` bit mask (`XS_PERM_NONE` 0, `XS_PERM_READ` 1, `XS_PERM_WRITE` 2).
    public var bits: UInt32 { (read ? 1 : 0) | (write ? 2 : 0) }
}

extension XenStoreLibrary {
    /// `xs_read` outside a transaction, `nil` for a node that does not exist.
    public func readIfPresent(_ path: String, transaction: UInt32 = 0) throws(XenErrno) -> [UInt8]? {
        do { return try read(path, transaction: transaction) } catch {
            if error == .noEntry { return nil }
            throw error
        }
    }

    /// `xs_directory`, where a missing node has no children.
    public func directoryIfPresent(_ path: String, transaction: UInt32 = 0) throws(XenErrno) -> [String] {
        do { return try directory(path, transaction: transaction) } catch {
            if error == .noEntry { return [] }
            throw error
        }
    }

    /// `xs_rm`, where a missing node counts as removed.
    public func removeIfPresent(_ path: String, transaction: UInt32 = 0) throws(XenErrno) {
        do { try remove(path, transaction: transaction) } catch {
            if error != .noEntry { throw error }
        }
    }

    /// Runs `body` in a transaction, again while the end answers `EAGAIN`,
    /// at most `attempts` times; a failure inside aborts the transaction.
    public func withTransaction<R>(attempts: Int = 16,
                                   _ body: (UInt32) throws(XenErrno) -> R) throws(XenErrno) -> R {
        for _ in 0..<attempts {
            let transaction = try transactionStart()
            let result: R
            do { result = try body(transaction) } catch {
                try? transactionEnd(transaction, abort: true)
                throw error
            }
            do {
                try transactionEnd(transaction, abort: false)
                return result
            } catch {
                if error != .tryAgain { throw error }
            }
        }
        throw .tryAgain
    }
}
