import Altp2m

/// Watches (`xenstored_watch.c`) and the domain lifecycle as xenstored and
/// the toolstack (libxl) see it (`xenstored_domain.c`, `libxl_create.c`).
extension XenStore {
    /// `do_watch` (`xs_watch`): `EINVAL` for a bad path, `EEXIST` for the
    /// same path and token again, `E2BIG` past a guest's quota; then the
    /// watch fires once at once ("simplifies clients and restart").
    public func watch(_ connection: UInt32, path: String, token: String) throws(XenErrno) {
        guard let conn = connections[connection] else { throw .invalid }
        // check_watch_path: special events by name, others canonicalized.
        let name: String
        let relative: Bool
        if path.hasPrefix("@") {
            guard path.utf8.count <= XenStorePath.relativeMax else { throw .invalid }
            (name, relative) = (path, false)
        } else {
            (name, relative) = (XenStorePath.canonicalize(path, domain: conn.domain), !path.hasPrefix("/"))
            guard XenStorePath.isValid(name) else { throw .invalid }
        }
        if conn.watches.contains(where: { $0.path == name && $0.token == token }) { throw .exists }
        if !conn.privileged && conn.watches.count >= Self.watchQuota { throw .tooBig }
        let watch = Watch(path: name, token: token, relative: relative)
        connections[connection]!.watches.append(watch)
        queueEvent(connection, path: reported(name, for: watch, domain: conn.domain), token: token)
    }

    /// `do_unwatch` (`xs_unwatch`): `ENOENT` if there is no such watch.
    public func unwatch(_ connection: UInt32, path: String, token: String) throws(XenErrno) {
        guard let conn = connections[connection] else { throw .invalid }
        let name = XenStorePath.canonicalize(path, domain: conn.domain)
        guard let index = conn.watches.firstIndex(where: { $0.path == name && $0.token == token }) else { throw .noEntry }
        connections[connection]!.watches.remove(at: index)
    }

    /// `get_watch_path`: a relative watch reports paths relative to the
    /// implicit path.
    private func reported(_ path: String, for watch: Watch, domain: DomainID) -> String {
        guard watch.relative else { return path }
        let prefix = XenStorePath.implicitPath(domain)
        guard path.hasPrefix(prefix) else { return path }
        var rest = path.dropFirst(prefix.count)
        if rest.first == "/" { rest = rest.dropFirst() }
        return String(rest)
    }

    /// A change to `path` by `connection`: inside a transaction it is
    /// queued for the commit (`queue_watches`; a non-exact event replaces
    /// an exact one), otherwise watches fire now.
    func fire(_ path: String, exact: Bool, _ connection: UInt32, _ transaction: UInt32?,
              oldPermissions: [XenStorePermission]? = nil) {
        guard let transaction else {
            fireWatches(path, exact: exact, oldPermissions: oldPermissions)
            return
        }
        let queued = connections[connection]?.transactions[transaction]?.watches[path]
        connections[connection]?.transactions[transaction]?.watches[path] = (queued ?? exact) && exact
    }

    /// `fire_watches`: every connection allowed to see the change
    /// (`watch_permitted`: the node or its parent readable, or the old
    /// permissions readable; `check_perms_special` for `@` events) gets an
    /// event for each watch on the path or (unless `exact`) above it.
    func fireWatches(_ path: String, exact: Bool, oldPermissions: [XenStorePermission]?) {
        for (id, conn) in connections.sorted(by: { $0.key < $1.key }) where !conn.watches.isEmpty {
            guard permitted(conn, path, oldPermissions) else { continue }
            for watch in conn.watches where exact ? watch.path == path : XenStorePath.isChild(path, of: watch.path) {
                queueEvent(id, path: reported(path, for: watch, domain: conn.domain), token: watch.token)
            }
        }
    }

    private func permitted(_ conn: Connection, _ path: String, _ old: [XenStorePermission]?) -> Bool {
        func readable(_ list: [XenStorePermission]?) -> Bool {
            guard let list else { return false }
            return XenStorePermission.access(for: conn.domain, privileged: conn.privileged, in: list).contains(.read)
        }
        if path.hasPrefix("@") { return readable(specialPermissions[path]) }
        if readable(old) { return true }
        guard let node = nodes[path] else { return false }
        return readable(node.permissions) || readable(nodes[XenStorePath.parent(path)]?.permissions)
    }

    // MARK: Domains

    /// A domain was created: the nodes libxl writes (`libxl__domain_make`,
    /// `libxl__build_post`) that this project reads, then xenstored's
    /// `introduce_domain` fires `@introduceDomain`.
    ///
    /// `/local/domain/N` and its `cpu`, `memory`, `device`, `control` are
    /// dom0's, readable by N (libxl's `roperm`); `control/shutdown`, `data`,
    /// `drivers`, `feature`, `attr`, `error` are N's own (`rwperm`); `name`,
    /// `domid`, `vm`, `memory/static-max` and `memory/target` inherit `roperm`.
    public func introduceDomain(_ id: DomainID, name: String, memoryKiB: UInt64) {
        let base = XenStorePath.implicitPath(id)
        let readOnly = [XenStorePermission(.controlDomain, []), XenStorePermission(id, .read)]
        let own = [XenStorePermission(id, [])]
        removeGlobal(base)
        try? writeGlobal(base, value: [], permissions: readOnly)
        let entries: [(String, String, [XenStorePermission])] = [
            ("vm", "/vm/\(id.rawValue)", readOnly), ("name", name, readOnly), ("domid", "\(id.rawValue)", readOnly),
            ("cpu", "", readOnly), ("memory", "", readOnly), ("memory/static-max", "\(memoryKiB)", readOnly),
            ("memory/target", "\(memoryKiB)", readOnly), ("device", "", readOnly), ("control", "", readOnly),
            ("control/shutdown", "", own), ("data", "", own), ("drivers", "", own), ("feature", "", own),
            ("attr", "", own), ("error", "", own),
        ]
        for (path, value, permissions) in entries {
            try? writeGlobal(base + "/" + path, value: Array(value.utf8), permissions: permissions)
        }
        fireWatches("@introduceDomain", exact: true, oldPermissions: nil)
    }

    /// The domain crashed or shut down: `check_domains` fires `@releaseDomain`.
    public func domainShutDown(_ id: DomainID) {
        fireWatches("@releaseDomain", exact: true, oldPermissions: nil)
    }

    /// The domain is gone: libxl removes `/local/domain/N`
    /// (`libxl__destroy_domid`), xenstored's `destroy_domain` removes the
    /// nodes it still owns (`domain_tree_remove`, without `--keep-orphans`),
    /// drops it from the special permissions (`remove_domid_from_perm`) and
    /// fires `@releaseDomain`; its connections close. Entries granting the
    /// dead domain access elsewhere are dropped, where xenstored marks them
    /// ignored (`domain_adjust_node_perms`): the same access either way.
    public func releaseDomain(_ id: DomainID) {
        for connection in connections(of: id) { disconnect(connection) }
        removeGlobal(XenStorePath.implicitPath(id))
        for path in nodes.keys.sorted() where nodes[path]?.permissions.first?.domain == id && path != "/" {
            removeGlobal(path)
        }
        for path in nodes.keys.sorted() {
            guard let node = nodes[path], node.permissions.dropFirst().contains(where: { $0.domain == id }) else { continue }
            var updated = node
            updated.permissions = [node.permissions[0]] + node.permissions.dropFirst().filter { $0.domain != id }
            write(path, updated, 0, nil)
        }
        for name in Self.special {
            var list = specialPermissions[name]!
            if list[0].domain == id { list[0].domain = .controlDomain }
            specialPermissions[name] = [list[0]] + list.dropFirst().filter { $0.domain != id }
        }
        fireWatches("@releaseDomain", exact: true, oldPermissions: nil)
    }

    /// `rm_node` as xenstored itself runs it (no permission checks).
    func removeGlobal(_ path: String) {
        guard nodes[path] != nil, path != "/" else { return }
        removeTree(path, root: path, 0, nil)
        let parentPath = XenStorePath.parent(path)
        if var parent = nodes[parentPath] {
            parent.children.removeAll { $0 == XenStorePath.basename(path) }
            write(parentPath, parent, 0, nil)
        }
    }
}
