import Altp2m

/// xenstore served to dom0 and guest processes (`xs.*`).
///
/// A connection's first `xs.*` request opens its xenstored connection (as
/// `xs_open` does); watches, watch events and transactions belong to it and
/// end with it. `xs.open` also passes a pipe that is readable while watch
/// events wait (`xs_fileno`). Every change to the tree is journaled as the
/// nodes it left (`internal.xenstore`), so a restarted daemon rebuilds the
/// tree; connections, and so watches and open transactions, do not survive.
extension SimDaemon {
    func xenstoreOperation(_ op: String, _ a: RequestArguments, caller: Caller, connection: Connection?,
                           record: inout [String: JSONValue]) throws(RequestError) -> Reply {
        // The changes are journaled below, not the request.
        record["op"] = nil
        guard let connection else { throw .refused("\(op) needs a connection") }
        let id = xenstoreConnection(for: connection, caller: caller)
        defer {
            journalXenstoreChanges()
            wakeXenstoreWatchers()
            // Reading an event may have emptied this connection's queue.
            xenstorePipes[id]?.set(readable: xenstore.hasEvents(id))
        }
        func xen<R>(_ body: () throws(XenErrno) -> R) throws(RequestError) -> R {
            do { return try body() } catch { throw .xen(error, "\(op) \(a.optionalString("path") ?? ""): \(error.description)") }
        }
        let transaction = try a.optionalUInt("transaction").flatMap { $0 == 0 ? nil : UInt32(truncatingIfNeeded: $0) }
        switch op {
        case "xs.open":
            return try openXenstoreDescriptor(id, caller: caller)
        case "xs.read":
            let path = try a.string("path")
            let value = try xen { () throws(XenErrno) in try xenstore.read(id, transaction, path: path) }
            return Reply(fields: ["value": .string(String(decoding: value, as: UTF8.self)),
                                  "value_hex": .string(SimGuestPlatform.hex(value))])
        case "xs.write":
            let value: [UInt8]
            if let hex = a.optionalString("value_hex") {
                guard let bytes = SimGuestPlatform.bytes(hex: hex) else { throw .usage("value_hex must be hex bytes") }
                value = bytes
            } else {
                value = Array(try a.string("value").utf8)
            }
            let path = try a.string("path")
            try xen { () throws(XenErrno) in try xenstore.write(id, transaction, path: path, value: value) }
            return Reply(fields: [:])
        case "xs.mkdir":
            let path = try a.string("path")
            try xen { () throws(XenErrno) in try xenstore.mkdir(id, transaction, path: path) }
            return Reply(fields: [:])
        case "xs.rm":
            let path = try a.string("path")
            try xen { () throws(XenErrno) in try xenstore.remove(id, transaction, path: path) }
            return Reply(fields: [:])
        case "xs.directory":
            let path = try a.string("path")
            let names = try xen { () throws(XenErrno) in try xenstore.directory(id, transaction, path: path) }
            return Reply(fields: ["children": .array(names.map { .string($0) })])
        case "xs.get-perms":
            let path = try a.string("path")
            let list = try xen { () throws(XenErrno) in try xenstore.permissions(id, transaction, path: path) }
            return Reply(fields: ["perms": .array(list.map { .string($0.description) })])
        case "xs.set-perms":
            let path = try a.string("path")
            let list = try Self.permissionList(a.fields["perms"])
            try xen { () throws(XenErrno) in try xenstore.setPermissions(id, transaction, path: path, list) }
            return Reply(fields: [:])
        default:
            return try xenstoreSessionOperation(op, a, connection: id, transaction: transaction)
        }
    }

    /// `xs_fileno`: the connection's readiness pipe.
    private func openXenstoreDescriptor(_ id: UInt32, caller: Caller) throws(RequestError) -> Reply {
        guard xenstorePipes[id] == nil, let pipe = ReadinessPipe.make() else {
            throw .refused("this connection already has its xenstore descriptor (or a pipe could not be made)")
        }
        xenstorePipes[id] = pipe
        pipe.set(readable: xenstore.hasEvents(id))
        return Reply(fields: ["domid": .int(Int64(Self.callingDomain(caller).rawValue)), "descriptors": ["xenstore"]],
                     fds: [pipe.read])
    }

    /// Transactions and watches: what belongs to the connection.
    private func xenstoreSessionOperation(_ op: String, _ a: RequestArguments, connection id: UInt32,
                                          transaction: UInt32?) throws(RequestError) -> Reply {
        func xen<R>(_ body: () throws(XenErrno) -> R) throws(RequestError) -> R {
            do { return try body() } catch { throw .xen(error, "\(op): \(error.description)") }
        }
        switch op {
        case "xs.transaction-start":
            let started = try xen { () throws(XenErrno) in try xenstore.transactionStart(id) }
            return Reply(fields: ["transaction": .int(Int64(started))])
        case "xs.transaction-end":
            guard let transaction else { throw .usage("missing argument 'transaction' (the id transaction-start gave)") }
            let commit = try a.bool("commit", default: true)
            try xen { () throws(XenErrno) in try xenstore.transactionEnd(id, transaction, commit: commit) }
            return Reply(fields: [:])
        case "xs.watch", "xs.unwatch":
            // "token" on the wire is the domain's token: the watch's is "watch_token".
            let path = try a.string("path"), token = try a.string("watch_token")
            try xen { () throws(XenErrno) in
                if op == "xs.watch" { try xenstore.watch(id, path: path, token: token) } else { try xenstore.unwatch(id, path: path, token: token) }
            }
            return Reply(fields: [:])
        case "xs.read-watch":
            guard let event = xenstore.readWatch(id) else { return Reply(fields: ["event": .null]) }
            return Reply(fields: ["event": ["path": .string(event.path), "watch_token": .string(event.token)]])
        default:
            throw .usage("unknown operation '\(op)'; see docs/SIMULATOR-DAEMON.md")
        }
    }

    static func permissionList(_ value: JSONValue?) throws(RequestError) -> [XenStorePermission] {
        guard let items = value?.array, !items.isEmpty else {
            throw .usage("perms is a list like [\"n0\", \"r5\"]: the owner and everyone else's access first, then one entry per domain")
        }
        var list: [XenStorePermission] = []
        for item in items {
            guard let text = item.string, let permission = XenStorePermission(text) else {
                throw .usage("bad permission \(item.serialized): a letter n, r, w or b, then a domain id (\"r5\")")
            }
            list.append(permission)
        }
        return list
    }

    private func xenstoreConnection(for connection: Connection, caller: Caller) -> UInt32 {
        if let id = connection.xenstoreConnection { return id }
        let id = xenstore.connect(domain: Self.callingDomain(caller))
        connection.xenstoreConnection = id
        return id
    }

    /// One `internal.xenstore` record with the nodes the last change left.
    func journalXenstoreChanges() {
        let changes = xenstore.takeChanges()
        guard !changes.nodes.isEmpty || changes.special != nil else { return }
        var record: [String: JSONValue] = ["op": "internal.xenstore"]
        record["nodes"] = .array(changes.nodes.map { path, node in
            guard let node else { return ["path": .string(path), "removed": true] }
            return ["path": .string(path), "value_hex": .string(SimGuestPlatform.hex(node.value)),
                    "perms": .array(node.permissions.map { .string($0.description) }),
                    "children": .array(node.children.map { .string($0) })]
        })
        if let special = changes.special {
            record["special"] = .object(special.mapValues { .array($0.map { .string($0.description) }) })
        }
        appendJournal(.object(record))
    }

    /// Replays an `internal.xenstore` record.
    func replayXenstore(_ fields: [String: JSONValue]) {
        for item in fields["nodes"]?.array ?? [] {
            guard let path = item["path"]?.string else { continue }
            if item["removed"]?.bool == true {
                xenstore.restore(path, nil)
                continue
            }
            let permissions = (item["perms"]?.array ?? []).compactMap { $0.string.flatMap(XenStorePermission.init) }
            let node = XenStore.Node(value: SimGuestPlatform.bytes(hex: item["value_hex"]?.string ?? "") ?? [],
                                     permissions: permissions,
                                     children: (item["children"]?.array ?? []).compactMap(\.string))
            xenstore.restore(path, node)
        }
        if case .object(let special)? = fields["special"] {
            xenstore.restoreSpecial(special.mapValues { ($0.array ?? []).compactMap { $0.string.flatMap(XenStorePermission.init) } })
        }
    }

    /// Makes the descriptor of each connection with new watch events readable.
    func wakeXenstoreWatchers() {
        for id in xenstore.takeWoken() { xenstorePipes[id]?.set(readable: xenstore.hasEvents(id)) }
        for (id, pipe) in xenstorePipes where xenstore.connections[id] == nil {
            // The domain went away with its connections: show the end.
            pipe.set(readable: true)
        }
    }

    /// The connection closed: its watches and transactions go.
    func xenstoreConnectionClosed(_ connection: Connection) {
        guard let id = connection.xenstoreConnection else { return }
        xenstore.disconnect(id)
        xenstorePipes.removeValue(forKey: id)?.close()
        connection.xenstoreConnection = nil
    }
}
