import Altp2m

/// Xen grant tables served to guest processes (`gntshr.*` through gntalloc,
/// `gnttab.*` through gntdev).
///
/// A connection's first `gntshr.*` request opens its gntalloc handle and its
/// first `gnttab.*` its gntdev handle (as `xengntshr_open` and
/// `xengnttab_open` open the devices); shares and mappings belong to that
/// handle. Changes are journaled with the handle's id (and, when they open
/// it, its key); a handle whose connection closes is released as the
/// drivers release a closed file, and a daemon restart leaves every handle
/// without a connection until its process resumes it with its key. Replies
/// that give memory attach the machine-memory file, so the process maps the
/// frames it was given (docs/SIMULATOR-DAEMON.md).
extension SimDaemon {
    func grantOperation(_ op: String, _ a: RequestArguments, caller: Caller, connection: Connection?,
                        record: inout [String: JSONValue], touched: inout [GFN]) throws(RequestError) -> Reply {
        if op == "gnttab.list" { return try grantList(a, caller: caller) }
        let driver: XenGrantTables.Driver = op.hasPrefix("gntshr.") ? .gntalloc : .gntdev
        if op == "gntshr.resume" || op == "gnttab.resume" {
            return try resumeGrantHandle(driver, a, caller: caller, connection: connection, record: &record)
        }
        let handle = try grantHandle(driver, op, a, caller: caller, connection: connection, record: &record)
        guard let domain = grantTables.domain(of: handle) else {
            throw .refused("\(op): the grant handle's domain is gone; open a new connection")
        }
        func xen<R>(_ body: () throws(XenErrno) -> R) throws(RequestError) -> R {
            do { return try body() } catch { throw .xen(error, "\(op) in \(domain): \(error.description)") }
        }
        var fields: [String: JSONValue] = ["handle": .int(Int64(handle)), "key": .string(grantTables.key(of: handle) ?? "")]
        switch op {
        case "gntshr.share":
            let peer = DomainID(rawValue: try a.bounded("peer", as: UInt16.self))
            let count = Int(try a.bounded("count", as: UInt32.self))
            guard count >= 1, count <= XenGrantTables.gntallocLimit else {
                throw .usage("count must be 1...\(XenGrantTables.gntallocLimit), not \(count)")
            }
            let writable = try a.bool("writable", default: true)
            let gfns = try replaying ? Self.gfnList(a, "gfns") : kernelPagesForShare(domain, count: count)
            record["gfns"] = .array(gfns.map(\.json))
            let refs = try xen { () throws(XenErrno) in
                try grantTables.share(handle: handle, peer: peer, gfns: gfns, readOnly: !writable)
            }
            // gntalloc allocates with __GFP_ZERO: the shared pages start zeroed.
            var mfns: [JSONValue] = []
            for gfn in gfns {
                let mfn = try xen { () throws(XenErrno) in try engine.translate(domain, view: nil, gfn: gfn)?.mfn ?? .invalid }
                if !mfn.isInvalid { memory.zero(mfn) }
                mfns.append(mfn.json)
            }
            fields["refs"] = .array(refs.map { .int(Int64($0)) })
            fields["gfns"] = .array(gfns.map(\.json))
            fields["mfns"] = .array(mfns)
            return memoryReply(fields)
        case "gntshr.unshare":
            let refs = try Self.uintList(a, "refs").map { UInt32(truncatingIfNeeded: $0) }
            let outcome = try xen { () throws(XenErrno) in try grantTables.unshare(handle: handle, refs: refs) }
            fields["ended"] = .array(outcome.ended.map { .int(Int64($0)) })
            fields["deferred"] = .array(outcome.deferred.map { .int(Int64($0)) })
            return Reply(fields: fields)
        case "gnttab.map":
            return try mapGrants(a, handle: handle, mapper: domain, fields: fields, touched: &touched)
        case "gnttab.unmap":
            let gfns = try Self.gfnList(a, "gfns")
            try xen { () throws(XenErrno) in try grantTables.unmap(handle: handle, gfns: gfns, engine: engine) }
            touched += gfns
            return Reply(fields: fields)
        default:
            throw .usage("unknown operation '\(op)'; see docs/SIMULATOR-DAEMON.md")
        }
    }

    /// `gnttab.map`: all references or none; a failure answers `EINVAL` (as
    /// gntdev does) with each reference's `GNTST_*` status in `statuses`.
    private func mapGrants(_ a: RequestArguments, handle: UInt32, mapper: DomainID, fields: [String: JSONValue],
                           touched: inout [GFN]) throws(RequestError) -> Reply {
        let remote = DomainID(rawValue: try a.bounded("remote", as: UInt16.self))
        let refs = try Self.uintList(a, "refs").map { UInt32(truncatingIfNeeded: $0) }
        guard !refs.isEmpty, refs.count <= 4096 else { throw .usage("refs must list 1...4096 grant references") }
        let writable = try a.bool("writable", default: true)
        guard let layout = guestMemory[mapper] else {
            throw .refused("gnttab.map: domain \(mapper) has no memory map (dom0 maps guest memory with foreign.map)")
        }
        let result: XenGrantTables.MapResult
        do {
            result = try grantTables.map(handle: handle, granter: remote, refs: refs, readOnly: !writable,
                                         engine: engine, placement: layout.placement)
        } catch {
            throw .xen(error, "gnttab.map in \(mapper): \(error.description): no free section of guest-physical space")
        }
        var fields = fields
        fields["statuses"] = .array(result.statuses.map { .string($0.name) })
        guard result.succeeded else {
            let failed = zip(refs, result.statuses).filter { $0.1 != .okay }
                .map { "ref \($0.0): \($0.1)" }.joined(separator: ", ")
            var reply = Reply(error: .xen(.invalid, "gnttab.map of \(remote)'s grants into \(mapper): \(failed); nothing was mapped. Check that the grant exists, names this domain, and is writable if mapped writable"))
            if case .object(var body) = reply.body {
                body["statuses"] = fields["statuses"]
                reply.body = .object(body)
            }
            return reply
        }
        touched += result.gfns
        fields["gfns"] = .array(result.gfns.map(\.json))
        fields["mfns"] = .array(result.mfns.map(\.json))
        return memoryReply(fields)
    }

    /// A reply that attaches the machine-memory file (not owned: the daemon keeps it).
    func memoryReply(_ fields: [String: JSONValue]) -> Reply {
        var fields = fields
        fields["descriptors"] = ["memory"]
        return Reply(fields: fields, fds: [memory.fileDescriptor])
    }

    /// The pages the guest kernel allocates for gntalloc (see `GuestMemory`).
    private func kernelPagesForShare(_ domain: DomainID, count: Int) throws(RequestError) -> [GFN] {
        guard let layout = guestMemory[domain] else { throw .refused("domain \(domain) has no memory map") }
        do {
            return try layout.allocateKernelPages(count, engine: engine, domain: domain,
                                                  excluded: kernelReservedGFNs(domain))
        } catch {
            throw .xen(error, "gntshr.share: the guest kernel of \(domain) has fewer than \(count) free RAM pages (\(error.name)); give it memory with chanctl domain mem-set")
        }
    }

    /// Pages the guest kernel never hands to gntalloc or the balloon: those
    /// granted now and the vCPUs' #VE pages.
    func kernelReservedGFNs(_ domain: DomainID) -> Set<GFN> {
        var reserved = grantTables.grantedGFNs(of: domain)
        for vcpu in 0..<(domains[domain]?.vcpuCount ?? 0) {
            if let gfn = try? engine.vcpuInfo(domain, vcpu: VCPUID(UInt32(vcpu))).notifyGFN { reserved.insert(gfn) }
        }
        return reserved
    }

    /// The connection's handle for `driver`, opened on first use.
    private func grantHandle(_ driver: XenGrantTables.Driver, _ op: String, _ a: RequestArguments, caller: Caller,
                             connection: Connection?, record: inout [String: JSONValue]) throws(RequestError) -> UInt32 {
        guard case .guest(let own, _) = caller else {
            throw .refused("\(op) is made by a guest process with its domain's token (gntalloc and gntdev are devices of the guest kernel); dom0 reads guest memory with foreign.map")
        }
        if replaying {
            let id = try a.bounded("handle", as: UInt32.self)
            if grantTables.domain(of: id) == nil, let key = a.optionalString("key") {
                _ = try? grantTables.openHandle(domain: own, driver: driver, id: id, key: key)
            }
            return id
        }
        guard let connection else { throw .refused("\(op) needs a connection") }
        let existing = driver == .gntalloc ? connection.gntallocHandle : connection.gntdevHandle
        if let existing, grantTables.domain(of: existing) != nil {
            record["handle"] = .int(Int64(existing))
            return existing
        }
        let key = Self.randomToken().map { String($0.prefix(32)) } ?? ""
        let id: UInt32
        do { id = try grantTables.openHandle(domain: own, driver: driver, key: key) } catch {
            throw .xen(error, "\(op): domain \(own) has no grant table (\(error.name))")
        }
        if driver == .gntalloc { connection.gntallocHandle = id } else { connection.gntdevHandle = id }
        record["handle"] = .int(Int64(id))
        record["key"] = .string(key)
        return id
    }

    /// `gntshr.resume` / `gnttab.resume`: takes back a handle after a restart.
    private func resumeGrantHandle(_ driver: XenGrantTables.Driver, _ a: RequestArguments, caller: Caller,
                                   connection: Connection?, record: inout [String: JSONValue]) throws(RequestError) -> Reply {
        record["op"] = nil
        guard case .guest(let own, _) = caller, let connection else {
            throw .refused("a grant handle is resumed by a guest process of its domain (with the token)")
        }
        let id = try a.bounded("handle", as: UInt32.self)
        let key = try a.string("key")
        do { try grantTables.resumeHandle(id, domain: own, driver: driver, key: key) } catch {
            throw .xen(error, "grant handle \(id) cannot be resumed (\(error.name)): it is not this domain's \(driver.rawValue) handle, the key differs, or a connection holds it")
        }
        if driver == .gntalloc { connection.gntallocHandle = id } else { connection.gntdevHandle = id }
        return memoryReply(["handle": .int(Int64(id)), "key": .string(grantTables.key(of: id) ?? "")])
    }

    /// `gnttab.list`: a domain's grant entries and mappings.
    private func grantList(_ a: RequestArguments, caller: Caller) throws(RequestError) -> Reply {
        let id = try resolveDomain(a, caller: caller)
        try Self.requireSelfOrControl(caller, target: id)
        let entries: [(ref: UInt32, entry: XenGrantTables.Entry)]
        let mapped: [(gfn: GFN, mapping: XenGrantTables.Mapping)]
        do {
            entries = try grantTables.entries(of: id)
            mapped = try grantTables.mappings(of: id)
        } catch {
            throw .xen(error, "gnttab.list: domain \(id) has no grant table")
        }
        let grants: [JSONValue] = entries.map { item in
            ["ref": .int(Int64(item.ref)), "peer": .int(Int64(item.entry.peer.rawValue)), "gfn": item.entry.gfn.json,
             "readonly": .bool(item.entry.readOnly), "reading": .bool(item.entry.inUse),
             "writing": .bool(item.entry.writePins > 0), "end_deferred": .bool(item.entry.endDeferred),
             "handle": item.entry.handle.map { .int(Int64($0)) } ?? .null]
        }
        let mappings: [JSONValue] = mapped.map { item in
            ["gfn": item.gfn.json, "granter": .int(Int64(item.mapping.granter.rawValue)),
             "ref": .int(Int64(item.mapping.ref)), "mfn": item.mapping.mfn.json,
             "readonly": .bool(item.mapping.readOnly), "handle": item.mapping.handle.map { .int(Int64($0)) } ?? .null]
        }
        return Reply(fields: ["domid": .int(Int64(id.rawValue)), "grants": .array(grants), "mappings": .array(mappings)])
    }

    /// A connection closed: `gntalloc_release` and `gntdev_release` for its handles.
    func grantConnectionClosed(_ connection: Connection) {
        let handles = [connection.gntallocHandle, connection.gntdevHandle].compactMap { $0 }
        connection.gntallocHandle = nil
        connection.gntdevHandle = nil
        guard !handles.isEmpty else { return }
        syncGuestViews()
        for handle in handles where grantTables.domain(of: handle) != nil {
            grantTables.closeHandle(handle, engine: engine)
            appendJournal(["op": "internal.grant-close", "handle": .int(Int64(handle))])
        }
        publishAll()
    }

    /// A new guest domain: its grant table, `max_pages` as libxl's
    /// `libxl__build_pre` sets it (`target_memkb` + `LIBXL_MAXMEM_CONSTANT`,
    /// 1024 KiB), and its memory map.
    func grantAndMemoryDomainCreated(_ id: DomainID, pages: UInt64) {
        grantTables.addDomain(id)
        try? engine.setMaxMemory(id, kib: pages * 4 + Self.maxMemConstantKiB)
        guestMemory[id] = GuestMemory(ram: GFN(0)..<GFN(pages),
                                      reserved: [EngineChannelHost.veInfoRegion.lowerBound..<EngineChannelHost.backingRegion.upperBound],
                                      staticMaxKiB: pages * 4)
    }

    /// A destroyed domain: Xen's grant teardown, and its handles and memory map go.
    func grantAndMemoryDomainDestroyed(_ id: DomainID) {
        grantTables.destroyDomain(id)
        guestMemory[id] = nil
        for connection in connections {
            if let h = connection.gntallocHandle, grantTables.domain(of: h) == nil { connection.gntallocHandle = nil }
            if let h = connection.gntdevHandle, grantTables.domain(of: h) == nil { connection.gntdevHandle = nil }
        }
    }

    /// `LIBXL_MAXMEM_CONSTANT`: the slack libxl adds to `max_pages` (KiB).
    static let maxMemConstantKiB: UInt64 = 1024

    // MARK: Arguments

    static func uintList(_ a: RequestArguments, _ key: String) throws(RequestError) -> [UInt64] {
        guard let items = a.fields[key]?.array else { throw .usage("argument '\(key)' must be a list of numbers") }
        var values: [UInt64] = []
        for (index, item) in items.enumerated() {
            values.append(try RequestArguments(fields: ["\(key)[\(index)]": item]).uint("\(key)[\(index)]"))
        }
        return values
    }

    static func gfnList(_ a: RequestArguments, _ key: String) throws(RequestError) -> [GFN] {
        try uintList(a, key).map { GFN($0) }
    }
}
