import Altp2m

/// A domain's memory reservation: `max_pages`, `tot_pages`, and the
/// `XENMEM_populate_physmap` / `XENMEM_decrease_reservation` paths that
/// move pages in and out of it (Xen 4.17.0 `xen/common/memory.c`,
/// `xen/common/page_alloc.c`, `xen/common/domctl.c`).
extension Altp2mEngine {
    /// What one `populate_physmap` or `decrease_reservation` call did: the
    /// extents done (the hypercall's return value) and, when it stopped
    /// early, why (Xen only returns the count; the reason is for messages).
    public struct ReservationResult: Sendable, Equatable {
        /// The frames of the extents done, in order (decrease: the frames removed).
        public var frames: [MFN]
        /// Why the call stopped before the end, nil if it did every extent.
        public var stoppedBy: XenErrno?
        /// The number of extents done.
        public var done: Int { frames.count }
    }

    /// `XEN_DOMCTL_max_mem`: `max_pages = min(max_memkb >> 2, UINT32_MAX)`.
    /// No check against `tot_pages`: a domain above its new maximum keeps
    /// its pages, and every allocation fails until it is back below.
    public func setMaxMemory(_ id: DomainID, kib: UInt64) throws(XenErrno) {
        try withDomain(id) { domain throws(XenErrno) in
            domain.maxPages = min(kib >> 2, UInt64(UInt32.max))
        }
    }

    /// `max_pages`.
    public func maxPages(_ id: DomainID) throws(XenErrno) -> UInt64 { try domain(id).maxPages }

    /// `domain_tot_pages`: the RAM frames the domain owns in its host p2m.
    /// Grant and foreign mappings and direct MMIO are someone else's frames
    /// (`p2m_is_special`) and do not count.
    public func totPages(_ id: DomainID) throws(XenErrno) -> UInt64 {
        UInt64(try domain(id).host.mappedPageCount)
    }

    /// `populate_physmap` with `extent_order` 0 for an HVM domain: for each
    /// gfn in order, `alloc_domheap_pages` (through `assign_pages`, which
    /// refuses with `-E2BIG` once `tot_pages` would pass `max_pages`, or
    /// `-EPERM` if it already has) and `guest_physmap_add_page` as
    /// `p2m_ram_rw` with the host default access, a host write that
    /// propagates. The first failure ends the call (`goto out`): pages
    /// populated before it stay, and the caller learns only the count.
    ///
    /// A gfn that is not a hole stops the call with ``XenErrno/exists`` (a
    /// simulator-only refusal, as in ``populate(_:gfn:)``; Xen's
    /// `p2m_add_page` would orphan the old page).
    public func populatePhysmap(_ id: DomainID, gfns: [GFN]) throws(XenErrno) -> ReservationResult {
        _ = try domain(id)
        var result = ReservationResult(frames: [], stoppedBy: nil)
        for gfn in gfns {
            let tot = try totPages(id)
            let max = try domain(id).maxPages
            // assign_pages: "Inconsistent allocation" then "Over-allocation".
            if tot > max { result.stoppedBy = .notPermitted; break }
            if tot + 1 > max { result.stoppedBy = .tooBig; break }
            do { result.frames.append(try populate(id, gfn: gfn)) } catch {
                result.stoppedBy = error
                break
            }
        }
        return result
    }

    /// `decrease_reservation` with `extent_order` 0: `guest_remove_page` for
    /// each gfn in order, stopping at the first failure: a hole or emulated
    /// MMIO is `-ENOENT`, direct MMIO `-EPERM`, a frame the domain does not
    /// own (a grant or foreign mapping: `get_page(page, d)` fails) `-ENXIO`.
    /// Removal is `guest_physmap_remove_page` → `p2m_remove_page`, through
    /// ``dropPage(_:gfn:)``: the views see a dropped page (a view whose
    /// remapped range holds the gfn is reset), and the frame goes back to
    /// the free list once nothing references it.
    public func decreaseReservationExtents(_ id: DomainID, gfns: [GFN]) throws(XenErrno) -> ReservationResult {
        _ = try domain(id)
        var result = ReservationResult(frames: [], stoppedBy: nil)
        for gfn in gfns {
            guard let entry = try domain(id).host.entries[gfn], entry.type != .mmioDM, entry.hasValidFrame else {
                result.stoppedBy = .noEntry
                break
            }
            if entry.type == .mmioDirect { result.stoppedBy = .notPermitted; break }
            if entry.type.isSpecial || !isRAMFrame(entry.mfn) { result.stoppedBy = .noDeviceOrAddress; break }
            try dropPage(id, gfn: gfn)
            result.frames.append(entry.mfn)
        }
        return result
    }
}

extension Altp2mEngine {
    /// The frame a PV dom0 maps for one gfn of a foreign HVM domain
    /// (`xenforeignmemory_map` → privcmd `IOCTL_PRIVCMD_MMAPBATCH_V2` →
    /// `xen_remap_domain_gfn_array` → `HYPERVISOR_mmu_update` with the
    /// domain as `foreigndom`), Xen 4.17.0:
    /// - no such domain: `do_mmu_update`'s `get_pg_owner` fails, `-ESRCH`
    ///   (privcmd records it for the frame and goes on with the next);
    /// - `mod_l1_entry` takes the page with `get_page_from_gfn` →
    ///   `p2m_get_page_from_gfn`: RAM (`p2m_ram_rw`, `_logdirty`, `_ro`)
    ///   gives its page; a grant mapping fails `get_page(page, d)` (the page
    ///   is the granter's) and, not being `p2m_is_ram`, gives no page; a
    ///   hole and MMIO (emulated or direct) give no page: `-EINVAL`;
    /// - a `p2m_map_foreign` entry gives the foreign owner's page, which
    ///   `get_page_from_l1e` refuses (`xsm_priv_mapping` of a guest that is
    ///   not the control domain) at `could_not_pin`: `-EBUSY`.
    ///
    /// The p2m type only limits the guest's own accesses: dom0 may map a
    /// `p2m_ram_ro` page writable.
    public func foreignFrame(_ id: DomainID, gfn: GFN) throws(XenErrno) -> MFN {
        guard let entry = try domain(id).host.entries[gfn], entry.hasValidFrame, isRAMFrame(entry.mfn) else {
            throw .invalid
        }
        switch entry.type {
        case .ramRW, .ramLogDirty, .ramRO: return entry.mfn
        case .mapForeign: throw .busy
        case .grantMapRW, .grantMapRO, .mmioDM, .mmioDirect: throw .invalid
        }
    }
}
