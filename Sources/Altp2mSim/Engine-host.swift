import Altp2m

/// Changes to a domain's host p2m made by the rest of the hypervisor
/// (ballooning, populate, physmap and grant mappings, type changes), spec
/// §5.2. Each is a host write, so each applies the propagation rule of §5.3.
extension Altp2mEngine {
    /// Populates a hole with a fresh zeroed frame (`XENMEM_populate_physmap`),
    /// as `p2m_ram_rw` with the host default access and sve 1.
    /// - Returns: the new frame.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` for `INVALID_GFN`; ``XenErrno/exists`` if the gfn
    ///   is not a hole (use ``mapFrame(_:into:at:type:)`` to replace a
    ///   mapping); ``XenErrno/noMemory`` if no frame is free.
    @discardableResult
    public func populate(_ domain: DomainID, gfn: GFN) throws(XenErrno) -> MFN {
        guard !gfn.isInvalid else { throw .invalid }
        return try withDomain(domain) { domain throws(XenErrno) in
            guard domain.host.entries[gfn] == nil else { throw .exists }
            guard let mfn = frames.allocate() else { throw .noMemory }
            hostWrite(&domain, at: gfn, P2MEntry(mfn: mfn, type: .ramRW, access: domain.host.defaultAccess))
            releaseFrame(mfn)   // the host entry now holds the only reference
            return mfn
        }
    }

    /// Removes a gfn from the host p2m and drops its frame reference
    /// (`XENMEM_decrease_reservation` of one page). Views see a dropped page:
    /// one whose remapped range holds the gfn is reset, and if two are hit
    /// every view is (spec §5.3). The frame returns to the free list once
    /// nothing else references it.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` if the gfn maps no frame (libxenctrl's `_exact`
    ///   variant reports a short count as `EINVAL`).
    public func dropPage(_ domain: DomainID, gfn: GFN) throws(XenErrno) {
        try withDomain(domain) { domain throws(XenErrno) in
            guard domain.host.validEntry(gfn) != nil else { throw .invalid }
            hostWrite(&domain, at: gfn, nil)
        }
    }

    /// Maps an allocated frame at a gfn of a domain's host p2m, the way
    /// `XENMEM_add_to_physmap` or a grant mapping does: a mapping already at
    /// the gfn is removed first (a drop, with its propagation), then the frame
    /// is mapped with the host default access and sve 1. The frame gains a
    /// reference, so it can be shared by several domains and outlives any one
    /// of them.
    ///
    /// - Parameter type: `.ramRW` (the default) makes the page ordinary RAM,
    ///   which change_gfn and set_mem_access accept for unpopulated view gfns;
    ///   `.grantMapRW` or `.mapForeign` model a real grant or foreign mapping,
    ///   which they do not.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` for a free frame, `INVALID_GFN` or a type without frames.
    public func mapFrame(_ mfn: MFN, into domain: DomainID, at gfn: GFN, type: P2MType = .ramRW) throws(XenErrno) {
        guard frames.isAllocated(mfn), !gfn.isInvalid, type.hasFrame else { throw .invalid }
        try withDomain(domain) { domain throws(XenErrno) in
            if domain.host.entries[gfn] != nil { hostWrite(&domain, at: gfn, nil) }
            hostWrite(&domain, at: gfn, P2MEntry(mfn: mfn, type: type, access: domain.host.defaultAccess))
        }
    }

    /// Maps a device frame outside machine memory at a gfn as direct MMIO
    /// (`p2m_mmio_direct`, as `XEN_DOMCTL_memory_mapping` does for a
    /// passed-through device's BAR), removing what was mapped there. The
    /// frame has an mfn, so lazy copy and propagation treat it as present,
    /// but it is not RAM (`mfn_valid` is false): set_mem_access and
    /// change_gfn on a view, set/get_suppress_ve and the revert of
    /// change_gfn treat such an entry as absent.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` for `INVALID_GFN` or a frame of machine memory
    ///   (map those with ``mapFrame(_:into:at:type:)``).
    public func mapDirectMMIO(_ domain: DomainID, at gfn: GFN, mfn: MFN) throws(XenErrno) {
        guard !gfn.isInvalid, !mfn.isInvalid, !isRAMFrame(mfn) else { throw .invalid }
        try withDomain(domain) { domain throws(XenErrno) in
            if domain.host.entries[gfn] != nil { hostWrite(&domain, at: gfn, nil) }
            hostWrite(&domain, at: gfn, P2MEntry(mfn: mfn, type: .mmioDirect, access: domain.host.defaultAccess))
        }
    }

    /// Makes a gfn emulated MMIO (`p2m_mmio_dm`, no frame), removing what
    /// was mapped there. Guest accesses find no mapping and views never copy it.
    public func mapEmulatedMMIO(_ domain: DomainID, at gfn: GFN) throws(XenErrno) {
        guard !gfn.isInvalid else { throw .invalid }
        try withDomain(domain) { domain throws(XenErrno) in
            if domain.host.entries[gfn] != nil { hostWrite(&domain, at: gfn, nil) }
            hostWrite(&domain, at: gfn, P2MEntry(mfn: .invalid, type: .mmioDM, access: domain.host.defaultAccess))
        }
    }

    /// Changes the type of a mapped host gfn, whatever it is now: a
    /// ``changeHostType(_:gfn:from:to:)`` from its current type. As
    /// `p2m_change_type_one` does, the entry gets the host p2m's default
    /// access (mfn and sve are kept), and the write propagates to the views.
    /// - Throws: ``XenErrno/invalid`` if the gfn maps no frame or either
    ///   type is not RAM.
    public func setHostType(_ domain: DomainID, gfn: GFN, type: P2MType) throws(XenErrno) {
        guard let current = try entry(domain, .host, gfn: gfn), current.entry.hasValidFrame else { throw .invalid }
        try changeHostType(domain, gfn: gfn, from: current.type, to: type)
    }
}
