import Altp2m

/// Domain memory: `max_pages` (`domain.set-max-mem`), the reservation
/// hypercalls (`memory.populate`, `memory.decrease`), ballooning
/// (`domain.mem-set`), the memory map (`domain.memory-map`), and dom0's
/// foreign mappings of guest memory (`foreign.map`).
extension SimDaemon {
    func memoryOperation(_ op: String, _ a: RequestArguments, caller: Caller,
                         touched: inout [GFN]) throws(RequestError) -> Reply {
        let id = try resolveDomain(a, caller: caller)
        func xen<R>(_ body: () throws(XenErrno) -> R) throws(RequestError) -> R {
            do { return try body() } catch { throw .xen(error, "\(op) on \(id): \(error.description)") }
        }
        switch op {
        case "domain.set-max-mem":
            // XEN_DOMCTL_max_mem, as xc_domain_setmaxmem sends it.
            try Self.requireControlDomain(caller, "domain set-max-mem")
            let kib = try a.uint("max_kb")
            try xen { () throws(XenErrno) in try engine.setMaxMemory(id, kib: kib) }
            return Reply(fields: ["domid": .int(Int64(id.rawValue)), "max_pages": .uint(try xen { () throws(XenErrno) in try engine.maxPages(id) })])
        case "memory.populate", "memory.decrease":
            // XENMEM_* on behalf of the guest (dom0) or by the guest itself (DOMID_SELF).
            try Self.requireSelfOrControl(caller, target: id)
            let gfns = try Self.gfnList(a, "gfns")
            guard !gfns.isEmpty, gfns.count <= 65536 else { throw .usage("gfns must list 1...65536 gfns") }
            let populate = op == "memory.populate"
            let result = try xen { () throws(XenErrno) in
                populate ? try engine.populatePhysmap(id, gfns: gfns) : try engine.decreaseReservationExtents(id, gfns: gfns)
            }
            touched += gfns
            guard let stopped = result.stoppedBy else {
                return Reply(fields: ["done": .int(Int64(result.done)), "mfns": .array(result.frames.map(\.json))])
            }
            // The hypercall returns the count done; libxenctrl's _exact
            // variants turn a short count into EBUSY (populate) or EINVAL
            // (decrease). What was done stays done.
            let gfn = gfns[result.done]
            let why = populate && (stopped == .tooBig || stopped == .notPermitted)
                ? "assign_pages refused (\(stopped.name)): tot_pages would pass max_pages; raise it with domain.set-max-mem"
                : "\(stopped.name) at gfn \(gfn.json.string ?? "")"
            throw .xen(populate ? .busy : .invalid,
                       "\(op) on \(id): \(result.done) of \(gfns.count) done (they stay); stopped by \(why)")
        case "domain.mem-set":
            try Self.requireControlDomain(caller, "domain mem-set")
            return try memSet(id, a)
        case "domain.memory-map":
            try Self.requireSelfOrControl(caller, target: id)
            return try memoryMap(id)
        case "foreign.map":
            try Self.requireControlDomain(caller, "foreign.map")
            return try foreignMap(id, a)
        default:
            throw .usage("unknown operation '\(op)'; see docs/SIMULATOR-DAEMON.md")
        }
    }

    /// `xl mem-set`: `libxl_set_memory_target` with `enforce` (refuses a
    /// target above `memory/static-max`, sets `max_pages` to target + 1 MiB,
    /// writes `memory/target`), then the guest's balloon driver follows.
    private func memSet(_ id: DomainID, _ a: RequestArguments) throws(RequestError) -> Reply {
        guard var layout = guestMemory[id] else { throw .refused("domain \(id) has no memory map (dom0's is not simulated)") }
        let mib = try a.uint("mib")
        let targetKiB = mib * 1024
        guard targetKiB <= layout.staticMaxKiB else {
            throw .refused("mem-set \(mib) MiB: memory_dynamic_max must be less than or equal to memory_static_max (\(layout.staticMaxKiB / 1024) MiB, the domain's creation size)")
        }
        try? engine.setMaxMemory(id, kib: targetKiB + Self.maxMemConstantKiB)
        layout.targetKiB = targetKiB
        let path = XenStorePath.implicitPath(id) + "/memory/target"
        try? xenstore.writeGlobal(path, value: Array("\(targetKiB)".utf8),
                                  permissions: [XenStorePermission(.controlDomain, []), XenStorePermission(id, .read)])
        xenstore.fireWatches(path, exact: false, oldPermissions: nil)
        // Replaying this request writes the node again: not a journaled xenstore change.
        _ = xenstore.takeChanges()
        wakeXenstoreWatchers()
        let outcome = runBalloonDriver(id, &layout)
        guestMemory[id] = layout
        var fields: [String: JSONValue] = [
            "domid": .int(Int64(id.rawValue)), "target_kib": .uint(targetKiB),
            "ballooned_out": .array(outcome.out.map(\.json)), "ballooned_in": .array(outcome.in.map(\.json)),
            "max_pages": .uint((try? engine.maxPages(id)) ?? 0), "tot_pages": .uint((try? engine.totPages(id)) ?? 0),
        ]
        if let stopped = outcome.stopped { fields["balloon_stopped"] = .string(stopped.name) }
        return Reply(fields: fields)
    }

    /// The guest's balloon driver after a new `memory/target`
    /// (`balloon_process`): below target it asks for its ballooned pages
    /// back (`increase_reservation` → `XENMEM_populate_physmap`), above it
    /// gives pages back (`decrease_reservation` → `XENMEM_decrease_reservation`),
    /// choosing them as `GuestMemory` documents, never a granted page.
    private func runBalloonDriver(_ id: DomainID, _ layout: inout GuestMemory) -> (out: [GFN], in: [GFN], stopped: XenErrno?) {
        let target = layout.targetKiB / 4
        let current = layout.currentPages
        if target < current {
            var count = Int(current - target)
            var picked: [GFN] = []
            // Fewer free pages than asked: give back what there is
            // (the driver retries later, BP_EAGAIN).
            while count > 0 {
                if let pages = try? layout.allocateKernelPages(count, engine: engine, domain: id,
                                                               excluded: kernelReservedGFNs(id)) {
                    picked = pages
                    break
                }
                count -= 1
            }
            let result = (try? engine.decreaseReservationExtents(id, gfns: picked))
            let removed = Array(picked.prefix(result?.done ?? 0))
            layout.noteBallooned(removed)
            return (removed, [], result?.stoppedBy ?? (count < Int(current - target) ? .noMemory : nil))
        }
        guard target > current else { return ([], [], nil) }
        let wanted = layout.retrievalOrder(Int(min(target - current, UInt64(layout.ballooned.count))))
        let result = try? engine.populatePhysmap(id, gfns: wanted)
        let got = Array(wanted.prefix(result?.done ?? 0))
        layout.noteRetrieved(got)
        return ([], got, result?.stoppedBy)
    }

    /// `domain.memory-map`: the E820-like map, with each RAM range's
    /// populated pages, and the reservation.
    private func memoryMap(_ id: DomainID) throws(RequestError) -> Reply {
        guard let layout = guestMemory[id] else { throw .refused("domain \(id) has no memory map (dom0's is not simulated)") }
        var ranges: [JSONValue] = []
        for (range, kind) in layout.memoryMap() {
            var fields: [String: JSONValue] = [
                "type": .string(kind.rawValue), "first_gfn": range.lowerBound.json,
                "last_gfn": range.upperBound.advanced(by: -1).json, "pages": .uint(UInt64(range.count)),
            ]
            if kind == .ram {
                let populated = range.filter { ((try? engine.entry(id, .host, gfn: $0)) ?? nil)?.entry.isUsableRAM == true }
                fields["populated"] = .int(Int64(populated.count))
            }
            ranges.append(.object(fields))
        }
        let sections = grantTables.pools[id]?.sections ?? []
        return Reply(fields: [
            "domid": .int(Int64(id.rawValue)), "map": .array(ranges),
            "tot_pages": .uint((try? engine.totPages(id)) ?? 0), "max_pages": .uint((try? engine.maxPages(id)) ?? 0),
            "target_kib": .uint(layout.targetKiB), "static_max_kib": .uint(layout.staticMaxKiB),
            "ballooned": .array(layout.ballooned.map(\.json)),
            "grant_sections": .array(sections.map(\.json)),
        ])
    }

    /// `foreign.map` (`xenforeignmemory_map` from dom0, a PV domain, as on
    /// Debian bookworm: `IOCTL_PRIVCMD_MMAPBATCH_V2` →
    /// `xen_remap_domain_gfn_array` → `HYPERVISOR_mmu_update`): each frame
    /// is `Altp2mEngine.foreignFrame`'s answer, 0 or `-errno`; as in
    /// Linux's `xen_remap_pfn`, a failed frame is recorded and the next one
    /// tried, so the call itself succeeds (even for a domain that does not
    /// exist: every frame is then `-ESRCH`). `mfns` are numbers (null where
    /// the frame failed); the reply attaches the machine-memory file, frame
    /// m at offset m × 4096.
    private func foreignMap(_ id: DomainID, _ a: RequestArguments) throws(RequestError) -> Reply {
        let gfns = try Self.gfnList(a, "gfns")
        guard !gfns.isEmpty, gfns.count <= 65536 else { throw .usage("gfns must list 1...65536 gfns") }
        _ = try a.bool("writable", default: true)
        var mfns: [JSONValue] = []
        var errors: [JSONValue] = []
        for gfn in gfns {
            do {
                let mfn = try engine.foreignFrame(id, gfn: gfn)
                mfns.append(.uint(mfn.rawValue))
                errors.append(0)
            } catch {
                mfns.append(.null)
                errors.append(.int(Int64(error.code)))
            }
        }
        return memoryReply(["domid": .int(Int64(id.rawValue)), "mfns": .array(mfns), "errors": .array(errors)])
    }
}
