import Altp2m

/// mem_access operations: set_mem_access (§3.4.7), set_mem_access_multi
/// (§3.4.9), get_mem_access (§3.4.12), and the host-only XENMEM access op.
extension Altp2mEngine {
    /// set_mem_access (7).
    func subopSetMemAccess(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        guard op.field(UInt32.self, at: 4) == 0 else { throw .invalid }
        let view = ViewID(op.field(UInt16.self, at: 0))
        guard view == .hostOrView0 || domain.isValidView(view) else { throw .invalid }
        guard let access = MemAccess(abiValue: op.field(UInt16.self, at: 2), for: host.xen) else {
            throw .invalid
        }
        applyMemAccess(&domain, view: view, gfn: GFN(op.field(UInt64.self, at: 8)), access: access)
    }

    /// set_mem_access_multi (9): elements from `opaque` on, in order; the
    /// first copy fault (`EFAULT`) or invalid access (`EINVAL`) stops the
    /// operation with the earlier elements applied. The simulator never
    /// preempts, so the continuation (`opaque` written back) is not needed.
    func subopSetMemAccessMulti(_ domain: inout Domain, _ op: inout HVMAltp2mOp,
                                buffers: HypercallBuffers) throws(XenErrno) {
        let count = UInt64(op.field(UInt32.self, at: 4))
        let opaque = op.field(UInt64.self, at: 8)
        guard op.field(UInt16.self, at: 2) == 0, opaque <= count else { throw .invalid }
        let view = ViewID(op.field(UInt16.self, at: 0))
        guard view == .hostOrView0 || domain.isValidView(view) else { throw .invalid }
        let pfnList = op.field(UInt64.self, at: 16)
        let accessList = op.field(UInt64.self, at: 24)

        var index = opaque
        while index < count {
            guard let gfn = buffers.word(pfnList, index: Int(index)),
                  let raw = buffers.byte(accessList, index: Int(index)) else { throw .badAddress }
            guard let access = MemAccess(abiValue: UInt16(raw), for: host.xen) else { throw .invalid }
            // p2m_set_mem_access_multi (Xen 4.17.0) has no INVALID_GFN case:
            // an all-ones gfn is an ordinary element. On the host p2m,
            // ept_set_entry refuses a gfn beyond the EPT's reach (EINVAL,
            // which stops the list); on a view the lookup finds nothing and
            // the element is skipped like any unusable gfn.
            if GFN(gfn).isInvalid {
                if view == .hostOrView0 { throw .invalid }
                index += 1
                continue
            }
            applyMemAccess(&domain, view: view, gfn: GFN(gfn), access: access)
            index += 1
        }
    }

    /// The effect of one set_mem_access element, after the checks.
    ///
    /// - `INVALID_GFN`: the **host** default access, whatever the view.
    /// - view 0: the host entry is rewritten (sve kept) and the change
    ///   propagates. On a gfn with no frame the host write still happens, as a
    ///   write of an invalid mfn, so it propagates like a dropped page.
    /// - view k: the view's entry gets the access (sve kept); with no entry
    ///   whose mfn is valid (`altp2m_get_effective_entry` uses `mfn_valid`,
    ///   so a direct-MMIO device frame does not count), a valid `p2m_ram_rw`
    ///   host entry is copied first (sve 1), and anything else is silently
    ///   skipped (`p2m_set_altp2m_mem_access`, Xen 4.17.0).
    ///
    /// `default` always means the host's default access.
    func applyMemAccess(_ domain: inout Domain, view: ViewID, gfn: GFN, access requested: MemAccess) {
        let access = requested.isConcrete ? requested : domain.host.defaultAccess
        if gfn.isInvalid {
            domain.host.defaultAccess = access
            return
        }
        if view == .hostOrView0 {
            var entry = domain.host.entries[gfn]
            entry?.access = access
            hostWrite(&domain, at: gfn, entry)
            return
        }
        let index = Int(view.rawValue)
        if var entry = domain.views[index].entries[gfn], isRAMFrame(entry.mfn) {
            entry.access = access
            domain.views[index].entries[gfn] = entry
        } else if let hostEntry = domain.host.usableEntry(gfn) {
            // Prepopulate: the 4-KiB host page is copied in with sve 1, then
            // rewritten with the new access (only the access survives).
            domain.views[index].entries[gfn] = P2MEntry(mfn: hostEntry.mfn, type: hostEntry.type,
                                                        access: access, suppressVE: true)
        } else {
            return   // -ESRCH from the lookup is swallowed (spec §3.4.7)
        }
        domain.bumpGeneration()
    }

    /// get_mem_access (12): reads one p2m (view 0 → host) with no fallback.
    func subopGetMemAccess(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        guard op.field(UInt32.self, at: 4) == 0 else { throw .invalid }
        let view = ViewID(op.field(UInt16.self, at: 0))
        guard view == .hostOrView0 || domain.isValidView(view) else { throw .invalid }
        let gfn = GFN(op.field(UInt64.self, at: 8))
        let access: MemAccess
        if view == .hostOrView0 {
            if gfn.isInvalid {
                access = domain.host.defaultAccess
            } else {
                guard let entry = domain.host.validEntry(gfn) else { throw .notFound }
                access = entry.access
            }
        } else {
            let table = domain.views[Int(view.rawValue)]
            if gfn.isInvalid {
                access = table.defaultAccess
            } else {
                guard let entry = table.entries[gfn] else { throw .notFound }
                access = entry.access
            }
        }
        // Every stored access was accepted by this version's ABI, so it encodes.
        guard let value = access.abiValue(for: host.xen) else { throw .outOfRange }
        op.setField(value, at: 2)
    }

    /// Sets an access in the host p2m outside altp2m (`xc_set_mem_access`,
    /// the XENMEM access op on the host): works whether or not altp2m is
    /// active, and propagates to views like set_mem_access on view 0.
    /// `GFN.invalid` sets the host default access.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` for a PV domain or an access this Xen release lacks.
    public func setHostMemAccess(_ domain: DomainID, gfn: GFN, access: MemAccess) throws(XenErrno) {
        guard access.abiValue(for: host.xen) != nil else { throw .invalid }
        try withDomain(domain) { domain throws(XenErrno) in
            guard domain.kind == .hvm else { throw .invalid }
            applyMemAccess(&domain, view: .hostOrView0, gfn: gfn, access: access)
        }
    }
}
