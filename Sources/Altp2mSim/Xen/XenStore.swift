import Altp2m

/// xenstored 4.17 (`tools/xenstore/`) as a pure state machine: a tree of
/// nodes with values and permissions, per-connection transactions and
/// watches, and the special `@introduceDomain` / `@releaseDomain` events.
///
/// The daemon owns one, opens a connection per client connection that uses
/// it, journals the nodes each change leaves (``takeChanges()``) and makes
/// a connection's descriptor readable while it has watch events.
/// Operations are in `XenStore+Operations.swift`, watches and domains in
/// `XenStore+Watches.swift`.
public final class XenStore {
    /// A node: `struct node` without the accounting.
    public struct Node: Equatable, Sendable {
        public var value: [UInt8]
        public var permissions: [XenStorePermission]
        /// Child names, in creation order (`add_child` appends).
        public var children: [String]
        /// Bumped by each write (`access_node`), compared at commit.
        var generation: UInt64 = 0
    }

    /// A registered watch (`struct watch`).
    struct Watch: Equatable {
        let path: String
        let token: String
        /// Whether it was given relative to the implicit path; its events
        /// are then reported relative too (`get_watch_path`).
        let relative: Bool
    }

    /// An open transaction (`struct transaction`): reads record the
    /// generation they saw, writes go to a private overlay until commit.
    struct Transaction {
        /// Generation seen at the first read of each node (nil: absent).
        var seen: [String: UInt64?] = [:]
        /// Nodes written (a node) or deleted (nil) in the transaction.
        var overlay: [String: Node?] = [:]
        /// Watch events to fire at commit: path -> exact (`queue_watches`).
        var watches: [String: Bool] = [:]
    }

    /// One client of xenstored (`struct connection`).
    struct Connection {
        let domain: DomainID
        var privileged: Bool { domain == .controlDomain }
        var watches: [Watch] = []
        var transactions: [UInt32: Transaction] = [:]
        var nextTransaction: UInt32 = 1
        /// Watch events not yet read: (path as reported, token).
        var events: [(path: String, token: String)] = []
    }

    /// xenstored's default quotas for unprivileged domains.
    public static let watchQuota = 128
    public static let transactionQuota = 10
    public static let permissionQuota = 5

    /// `NO_GENERATION` is nil; the global counter of `access_node`.
    private var generation: UInt64 = 0
    private(set) var nodes: [String: Node] = [:]
    /// Permissions of `@releaseDomain` and `@introduceDomain` (`dom_release_perms`, ...).
    var specialPermissions: [String: [XenStorePermission]] = [:]
    var connections: [UInt32: Connection] = [:]
    private var nextConnection: UInt32 = 1
    /// Paths whose global node changed since ``takeChanges()``.
    private var changed: Set<String> = []
    private var specialChanged = false
    /// Connections that received watch events since ``takeWoken()``.
    private var woken: Set<UInt32> = []

    public static let special = ["@releaseDomain", "@introduceDomain"]

    /// `setup_structure` and `dom0_init`: the root and dom0's own nodes,
    /// all owned by dom0 with no access for others.
    public init() {
        let none = [XenStorePermission(.controlDomain, [])]
        nodes["/"] = Node(value: [], permissions: none, children: [])
        for name in Self.special { specialPermissions[name] = none }
        for (path, value) in [("/local", ""), ("/local/domain", ""), ("/local/domain/0", ""),
                              ("/local/domain/0/domid", "0"), ("/local/domain/0/name", "Domain-0")] {
            try? writeGlobal(path, value: Array(value.utf8), permissions: none)
        }
        changed.removeAll()
    }

    // MARK: Connections

    /// A new connection from `domain` (`new_connection` / `introduce_domain`).
    public func connect(domain: DomainID) -> UInt32 {
        let id = nextConnection
        nextConnection += 1
        connections[id] = Connection(domain: domain)
        return id
    }

    /// `conn_delete_all_watches` and transaction teardown: the connection closed.
    public func disconnect(_ id: UInt32) {
        connections[id] = nil
        woken.remove(id)
    }

    /// The connections of a domain (closed when it is destroyed).
    public func connections(of domain: DomainID) -> [UInt32] {
        connections.filter { $0.value.domain == domain }.map(\.key)
    }

    func queueEvent(_ id: UInt32, path: String, token: String) {
        connections[id]?.events.append((path, token))
        woken.insert(id)
    }

    /// `xs_read_watch`: the next event of a connection, or nil.
    public func readWatch(_ id: UInt32) -> (path: String, token: String)? {
        guard let first = connections[id]?.events.first else { return nil }
        connections[id]!.events.removeFirst()
        return first
    }

    public func hasEvents(_ id: UInt32) -> Bool { !(connections[id]?.events.isEmpty ?? true) }

    /// Connections that got events since the last call.
    public func takeWoken() -> Set<UInt32> {
        defer { woken.removeAll() }
        return woken
    }

    // MARK: Node access (`read_node`, `write_node`, `access_node`)

    /// Reads a node, through a transaction's overlay if there is one; a
    /// transaction records the generation of each node it reads first.
    func read(_ path: String, _ connection: UInt32, _ transaction: UInt32?) -> Node? {
        guard let transaction else { return nodes[path] }
        if let local = connections[connection]?.transactions[transaction]?.overlay[path] { return local }
        let node = nodes[path]
        if connections[connection]?.transactions[transaction]?.seen[path] == nil {
            connections[connection]?.transactions[transaction]?.seen[path] = .some(node?.generation)
        }
        return node
    }

    func write(_ path: String, _ node: Node, _ connection: UInt32, _ transaction: UInt32?) {
        guard let transaction else {
            var stored = node
            generation += 1
            stored.generation = generation
            nodes[path] = stored
            changed.insert(path)
            return
        }
        connections[connection]?.transactions[transaction]?.overlay[path] = .some(node)
    }

    func delete(_ path: String, _ connection: UInt32, _ transaction: UInt32?) {
        guard let transaction else {
            nodes[path] = nil
            changed.insert(path)
            return
        }
        connections[connection]?.transactions[transaction]?.overlay[path] = .some(nil)
    }

    /// Writes a node as the toolstack or xenstored itself does (no checks),
    /// creating missing parents with the parent's permissions.
    func writeGlobal(_ path: String, value: [UInt8], permissions: [XenStorePermission]) throws(XenErrno) {
        guard XenStorePath.isValid(path) else { throw .invalid }
        if nodes[path] == nil, path != "/" {
            let parent = XenStorePath.parent(path)
            if nodes[parent] == nil { try writeGlobal(parent, value: [], permissions: permissions) }
            var parentNode = nodes[parent]!
            parentNode.children.append(XenStorePath.basename(path))
            write(parent, parentNode, 0, nil)
        }
        var node = nodes[path] ?? Node(value: [], permissions: permissions, children: [])
        node.value = value
        node.permissions = permissions
        write(path, node, 0, nil)
    }

    // MARK: Transactions (`xenstored_transaction.c`)

    /// `do_transaction_start`: `ENOSPC` beyond the quota for a guest.
    public func transactionStart(_ connection: UInt32) throws(XenErrno) -> UInt32 {
        guard var conn = connections[connection] else { throw .invalid }
        if !conn.privileged && conn.transactions.count >= Self.transactionQuota { throw .noSpace }
        let id = conn.nextTransaction
        conn.nextTransaction = id == UInt32.max ? 1 : id + 1
        conn.transactions[id] = Transaction()
        connections[connection] = conn
        return id
    }

    /// `do_transaction_end`: abort, or commit with `finalize_transaction`:
    /// `EAGAIN` if any node the transaction read changed since (or appeared,
    /// or went away); otherwise its writes land and its watches fire.
    public func transactionEnd(_ connection: UInt32, _ id: UInt32, commit: Bool) throws(XenErrno) {
        guard let transaction = connections[connection]?.transactions.removeValue(forKey: id) else { throw .noEntry }
        guard commit else { return }
        for (path, generation) in transaction.seen where nodes[path]?.generation != generation {
            throw .tryAgain
        }
        var oldPermissions: [String: [XenStorePermission]] = [:]
        for (path, node) in transaction.overlay.sorted(by: { $0.key < $1.key }) {
            oldPermissions[path] = nodes[path]?.permissions
            if let node { write(path, node, connection, nil) } else if nodes[path] != nil { delete(path, connection, nil) }
        }
        for (path, exact) in transaction.watches.sorted(by: { $0.key < $1.key }) {
            fireWatches(path, exact: exact, oldPermissions: oldPermissions[path])
        }
    }

    /// Checks that a request's transaction exists (`transaction_lookup`).
    func checkTransaction(_ connection: UInt32, _ transaction: UInt32?) throws(XenErrno) {
        guard let conn = connections[connection] else { throw .invalid }
        if let transaction, conn.transactions[transaction] == nil { throw .noEntry }
    }

    // MARK: Journal

    /// The nodes changed since the last call: each path with its node, or
    /// nil if it was removed; and the special permissions if they changed.
    public func takeChanges() -> (nodes: [(String, Node?)], special: [String: [XenStorePermission]]?) {
        defer {
            changed.removeAll()
            specialChanged = false
        }
        return (changed.sorted().map { ($0, nodes[$0]) }, specialChanged ? specialPermissions : nil)
    }

    /// Replays a journaled change.
    public func restore(_ path: String, _ node: Node?) {
        if let node { write(path, node, 0, nil) } else { nodes[path] = nil }
        changed.remove(path)
    }

    public func restoreSpecial(_ permissions: [String: [XenStorePermission]]) {
        for (name, list) in permissions where Self.special.contains(name) { specialPermissions[name] = list }
    }

    func setSpecial(_ name: String, _ permissions: [XenStorePermission]) {
        specialPermissions[name] = permissions
        specialChanged = true
    }
}
