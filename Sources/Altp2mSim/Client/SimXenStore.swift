import Altp2m
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A xenstore connection on the simulator, with libxenstore's calls as
/// methods (each names the C function it mirrors).
///
/// Its own connection to the daemon: watches and transactions belong to it
/// and end when it closes. As a guest (with the domain's token), relative
/// paths are under `/local/domain/DOMID` and node permissions apply; as dom0
/// (no token) every node is reachable. Errors are
/// ``SimClientError/hypervisor(_:message:)`` with xenstored's error number
/// (`ENOENT`, `EACCES`, `EINVAL`, `EAGAIN`, ...).
public final class SimXenStore {
    /// `xs_fileno`: readable while watch events wait for ``readWatch(timeoutMilliseconds:)``.
    public let fileDescriptor: Int32
    /// The domain this connection speaks for.
    public let domain: DomainID
    let client: SimClient

    /// `xs_open`.
    public init(stateDirectory: StateDirectory = .resolve(), token: String? = nil) throws(SimClientError) {
        client = try SimClient(stateDirectory: stateDirectory, token: token)
        let (response, fds) = try client.exchange("xs.open", [:])
        guard let fd = fds.first else {
            client.close()
            throw .connection("xs.open answered without its descriptor")
        }
        WireFrame.closeAll(Array(fds.dropFirst()))
        fileDescriptor = fd
        domain = DomainID(rawValue: UInt16(truncatingIfNeeded: response["domid"]?.int64 ?? 0))
    }

    deinit {
        client.close()
        _ = systemClose(fileDescriptor)
    }

    /// `xs_close`: watches and open transactions end.
    public func close() { client.close() }

    private func args(_ path: String, _ transaction: UInt32?) -> [String: JSONValue] {
        ["path": .string(path), "transaction": .int(Int64(transaction ?? 0))]
    }

    /// `xs_read`.
    public func read(_ path: String, transaction: UInt32? = nil) throws(SimClientError) -> [UInt8] {
        let response = try client.call("xs.read", args(path, transaction))
        return SimGuestPlatform.bytes(hex: response["value_hex"]?.string ?? "") ?? []
    }

    /// `xs_read` of a text value.
    public func readString(_ path: String, transaction: UInt32? = nil) throws(SimClientError) -> String {
        String(decoding: try read(path, transaction: transaction), as: UTF8.self)
    }

    /// `xs_write`.
    public func write(_ path: String, _ value: [UInt8], transaction: UInt32? = nil) throws(SimClientError) {
        var a = args(path, transaction)
        a["value_hex"] = .string(SimGuestPlatform.hex(value))
        _ = try client.call("xs.write", a)
    }

    /// `xs_write` of a text value.
    public func write(_ path: String, _ value: String, transaction: UInt32? = nil) throws(SimClientError) {
        try write(path, Array(value.utf8), transaction: transaction)
    }

    /// `xs_mkdir`.
    public func mkdir(_ path: String, transaction: UInt32? = nil) throws(SimClientError) {
        _ = try client.call("xs.mkdir", args(path, transaction))
    }

    /// `xs_rm`.
    public func remove(_ path: String, transaction: UInt32? = nil) throws(SimClientError) {
        _ = try client.call("xs.rm", args(path, transaction))
    }

    /// `xs_directory`.
    public func directory(_ path: String, transaction: UInt32? = nil) throws(SimClientError) -> [String] {
        (try client.call("xs.directory", args(path, transaction))["children"]?.array ?? []).compactMap(\.string)
    }

    /// `xs_get_permissions`.
    public func permissions(_ path: String, transaction: UInt32? = nil) throws(SimClientError) -> [XenStorePermission] {
        (try client.call("xs.get-perms", args(path, transaction))["perms"]?.array ?? [])
            .compactMap { $0.string.flatMap(XenStorePermission.init) }
    }

    /// `xs_set_permissions`.
    public func setPermissions(_ path: String, _ permissions: [XenStorePermission],
                               transaction: UInt32? = nil) throws(SimClientError) {
        var a = args(path, transaction)
        a["perms"] = .array(permissions.map { .string($0.description) })
        _ = try client.call("xs.set-perms", a)
    }

    /// `xs_transaction_start`.
    public func transactionStart() throws(SimClientError) -> UInt32 {
        UInt32(truncatingIfNeeded: try client.call("xs.transaction-start")["transaction"]?.int64 ?? 0)
    }

    /// `xs_transaction_end`: commit (`abort` false) or abort. A commit that
    /// conflicts throws `EAGAIN`: run the whole transaction again.
    public func transactionEnd(_ transaction: UInt32, abort: Bool = false) throws(SimClientError) {
        _ = try client.call("xs.transaction-end", ["transaction": .int(Int64(transaction)), "commit": .bool(!abort)])
    }

    /// The client-side retry convention around `xs_transaction_start/end`:
    /// runs `body` in a transaction and starts again while the commit
    /// answers `EAGAIN` (at most `attempts` times).
    public func withTransaction<R>(attempts: Int = 16,
                                   _ body: (UInt32) throws(SimClientError) -> R) throws(SimClientError) -> R {
        var attempt = 0
        while true {
            attempt += 1
            let transaction = try transactionStart()
            let result: R
            do { result = try body(transaction) } catch {
                try? transactionEnd(transaction, abort: true)
                throw error
            }
            do {
                try transactionEnd(transaction)
                return result
            } catch {
                guard case .hypervisor(.tryAgain, _) = error, attempt < attempts else { throw error }
            }
        }
    }

    /// `xs_watch`: the watch fires once at once, then on every change of
    /// the path or below it.
    public func watch(_ path: String, token: String) throws(SimClientError) {
        _ = try client.call("xs.watch", ["path": .string(path), "watch_token": .string(token)])
    }

    /// `xs_unwatch`.
    public func unwatch(_ path: String, token: String) throws(SimClientError) {
        _ = try client.call("xs.unwatch", ["path": .string(path), "watch_token": .string(token)])
    }

    /// `xs_read_watch`: the next event (path, token), waiting at most
    /// `timeoutMilliseconds` for one; nil if none came.
    public func readWatch(timeoutMilliseconds: Int32) throws(SimClientError) -> (path: String, token: String)? {
        var poller = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        _ = poll(&poller, 1, timeoutMilliseconds)
        guard let event = try client.call("xs.read-watch")["event"], let path = event["path"]?.string,
              let token = event["watch_token"]?.string else { return nil }
        return (path, token)
    }
}
