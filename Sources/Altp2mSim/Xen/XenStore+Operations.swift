import Altp2m

/// The requests of `xs_wire.h` that read and change nodes, as xenstored
/// 4.17's `do_*` functions answer them. `connection` is the caller's
/// connection; `transaction` is nil for `XBT_NULL`.
extension XenStore {
    /// `get_node`: the canonical path and its node if the caller has
    /// `access` to it. `EINVAL` for a bad path; for a missing or forbidden
    /// node, `ENOENT` or `EACCES` as `errno_from_parents` chooses, so a
    /// caller learns nothing of nodes it may not see.
    func node(_ path: String, _ access: XenStorePermission.Access, _ connection: UInt32,
              _ transaction: UInt32?) throws(XenErrno) -> (path: String, node: Node?, missing: XenErrno) {
        try checkTransaction(connection, transaction)
        let conn = connections[connection]!
        let name = XenStorePath.canonicalize(path, domain: conn.domain)
        guard XenStorePath.isValid(name) else { throw .invalid }
        if let found = read(name, connection, transaction) {
            let granted = XenStorePermission.access(for: conn.domain, privileged: conn.privileged, in: found.permissions)
            guard granted.isSuperset(of: access) else { throw .accessDenied }
            return (name, found, .noEntry)
        }
        // errno_from_parents / ask_parents: the nearest existing ancestor decides.
        var parent = name
        var ancestor: Node?
        while parent != "/" && ancestor == nil {
            parent = XenStorePath.parent(parent)
            ancestor = read(parent, connection, transaction)
        }
        let granted = ancestor.map { XenStorePermission.access(for: conn.domain, privileged: conn.privileged, in: $0.permissions) } ?? []
        return (name, nil, granted.isDisjoint(with: access) ? .accessDenied : .noEntry)
    }

    /// `do_read` (`xs_read`).
    public func read(_ connection: UInt32, _ transaction: UInt32?, path: String) throws(XenErrno) -> [UInt8] {
        let found = try node(path, .read, connection, transaction)
        guard let node = found.node else { throw found.missing }
        return node.value
    }

    /// `do_directory` (`xs_directory`): the child names.
    public func directory(_ connection: UInt32, _ transaction: UInt32?, path: String) throws(XenErrno) -> [String] {
        let found = try node(path, .read, connection, transaction)
        guard let node = found.node else { throw found.missing }
        return node.children
    }

    /// `do_get_perms` (`xs_get_permissions`).
    public func permissions(_ connection: UInt32, _ transaction: UInt32?, path: String) throws(XenErrno) -> [XenStorePermission] {
        if path.hasPrefix("@"), let special = specialPermissions[path] { return special }
        let found = try node(path, .read, connection, transaction)
        guard let node = found.node else { throw found.missing }
        return node.permissions
    }

    /// `do_write` (`xs_write`): an existing node needs write access; a new
    /// one is made by `create_node`.
    public func write(_ connection: UInt32, _ transaction: UInt32?, path: String, value: [UInt8]) throws(XenErrno) {
        guard value.count <= XenStorePath.payloadMax else { throw .tooBig }
        let found = try node(path, .write, connection, transaction)
        if var node = found.node {
            node.value = value
            write(found.path, node, connection, transaction)
        } else {
            guard found.missing == .noEntry else { throw found.missing }
            try create(found.path, value: value, connection, transaction)
        }
        fire(found.path, exact: false, connection, transaction)
    }

    /// `do_mkdir` (`xs_mkdir`): an existing node is fine.
    public func mkdir(_ connection: UInt32, _ transaction: UInt32?, path: String) throws(XenErrno) {
        let found = try node(path, .write, connection, transaction)
        guard found.node == nil else { return }
        guard found.missing == .noEntry else { throw found.missing }
        try create(found.path, value: [], connection, transaction)
        fire(found.path, exact: false, connection, transaction)
    }

    /// `construct_node`: missing nodes down from the nearest existing
    /// ancestor, each inheriting its parent's permissions, except that a
    /// guest owns what it creates.
    private func create(_ path: String, value: [UInt8], _ connection: UInt32, _ transaction: UInt32?) throws(XenErrno) {
        let conn = connections[connection]!
        var missing = [path]
        var parentPath = XenStorePath.parent(path)
        var parent = read(parentPath, connection, transaction)
        while parent == nil {
            guard parentPath != "/" else { throw .noEntry }
            missing.append(parentPath)
            parentPath = XenStorePath.parent(parentPath)
            parent = read(parentPath, connection, transaction)
        }
        var above = parent!
        for name in missing.reversed() {
            above.children.append(XenStorePath.basename(name))
            write(parentPath, above, connection, transaction)
            var permissions = above.permissions
            if !conn.privileged { permissions[0].domain = conn.domain }
            above = Node(value: name == path ? value : [], permissions: permissions, children: [])
            write(name, above, connection, transaction)
            parentPath = name
        }
    }

    /// `do_rm` (`xs_rm`): a missing node is fine if its parent exists;
    /// the root cannot go. Watches fire for each removed node (`delnode_sub`).
    public func remove(_ connection: UInt32, _ transaction: UInt32?, path: String) throws(XenErrno) {
        let found = try node(path, .write, connection, transaction)
        guard found.node != nil else {
            guard found.missing == .noEntry else { throw found.missing }
            if read(XenStorePath.parent(found.path), connection, transaction) != nil { return }
            throw .noEntry
        }
        guard found.path != "/" else { throw .invalid }
        removeTree(found.path, root: found.path, connection, transaction)
        let parentPath = XenStorePath.parent(found.path)
        if var parent = read(parentPath, connection, transaction) {
            parent.children.removeAll { $0 == XenStorePath.basename(found.path) }
            write(parentPath, parent, connection, transaction)
        }
    }

    /// Children first, each firing its own watches while its permissions
    /// are still there (exact for all but the removed root).
    func removeTree(_ path: String, root: String, _ connection: UInt32, _ transaction: UInt32?) {
        guard let node = read(path, connection, transaction) else { return }
        for child in node.children { removeTree(path == "/" ? "/" + child : path + "/" + child, root: root, connection, transaction) }
        fire(path, exact: path != root, connection, transaction, oldPermissions: node.permissions)
        delete(path, connection, transaction)
    }

    /// `do_set_perms` (`xs_set_permissions`): the caller must own the node
    /// (dom0 always does); a guest may not give it away (`EPERM`) nor list
    /// more than the quota (`ENOSPC`). `@` nodes: `set_perms_special`.
    public func setPermissions(_ connection: UInt32, _ transaction: UInt32?, path: String,
                               _ permissions: [XenStorePermission]) throws(XenErrno) {
        try checkTransaction(connection, transaction)
        let conn = connections[connection]!
        guard !permissions.isEmpty else { throw .invalid }
        if !conn.privileged && permissions.count > Self.permissionQuota { throw .noSpace }
        if path.hasPrefix("@") {
            guard let current = specialPermissions[path] else { throw .invalid }
            let granted = XenStorePermission.access(for: conn.domain, privileged: conn.privileged, in: current)
            guard granted.isSuperset(of: [.write, .owner]) else { throw .accessDenied }
            setSpecial(path, permissions)
            return
        }
        let found = try node(path, [.write, .owner], connection, transaction)
        guard var node = found.node else { throw found.missing }
        if !conn.privileged && permissions[0].domain != node.permissions[0].domain { throw .notPermitted }
        let old = node.permissions
        node.permissions = permissions
        write(found.path, node, connection, transaction)
        fire(found.path, exact: false, connection, transaction, oldPermissions: old)
    }
}
