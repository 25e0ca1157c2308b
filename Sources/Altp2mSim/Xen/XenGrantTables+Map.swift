import Altp2m

/// Mapping and unmapping grants (gntdev in an HVM guest), and a domain's
/// teardown.
extension XenGrantTables {
    /// What ``map(handle:granter:refs:readOnly:engine:placement:)`` did.
    public struct MapResult: Sendable, Equatable {
        /// Where each reference was mapped (empty if any failed).
        public var gfns: [GFN]
        /// The granter's frames (empty if any failed).
        public var mfns: [MFN]
        /// Each reference's `GNTTABOP_map_grant_ref` status.
        public var statuses: [GrantStatus]
        /// Whether every reference mapped.
        public var succeeded: Bool { statuses.allSatisfy { $0 == .okay } }
    }

    /// `xengnttab_map_grant_refs` on Linux: `IOCTL_GNTDEV_MAP_GRANT_REF`
    /// takes `refs.count` unpopulated gfns (`gnttab_alloc_pages` →
    /// `xen_alloc_unpopulated_pages`, see ``UnpopulatedPool``), then `mmap`
    /// issues one `GNTTABOP_map_grant_ref` per reference with
    /// `GNTMAP_host_map` (plus `GNTMAP_readonly`) and `host_addr` = the gfn.
    /// If any fails, gntdev answers `-EINVAL` and the mappings that worked
    /// are unmapped again (`gntdev_map_grant_pages`, then the failed
    /// `mmap`'s cleanup), so the call maps all or nothing; the statuses say
    /// which failed and why.
    ///
    /// - Parameters:
    ///   - granter: the granting domain's raw id (need not exist).
    ///   - placement: where the mapper's unpopulated pool may take a section.
    /// - Throws: ``XenErrno/invalid`` for a gntalloc handle or no references;
    ///   ``XenErrno/noMemory`` if no section of guest-physical space is free.
    public func map(handle: UInt32, granter: DomainID, refs: [UInt32], readOnly: Bool, engine: Altp2mEngine,
                    placement: UnpopulatedPool.Placement) throws(XenErrno) -> MapResult {
        guard let owner = handles[handle], owner.driver == .gntdev, !refs.isEmpty else { throw .invalid }
        let mapper = owner.domain
        var pool = pools[mapper] ?? UnpopulatedPool()
        let gfns = try pool.take(refs.count, engine: engine, domain: mapper, placement: placement)
        pools[mapper] = pool
        var statuses: [GrantStatus] = []
        var mfns: [MFN] = []
        for (ref, gfn) in zip(refs, gfns) {
            switch mapOne(mapper: mapper, granter: granter, ref: ref, readOnly: readOnly, at: gfn,
                          handle: handle, engine: engine) {
            case .success(let mfn):
                statuses.append(.okay)
                mfns.append(mfn)
            case .failure(let status):
                statuses.append(status)
            }
        }
        guard statuses.allSatisfy({ $0 == .okay }) else {
            for (gfn, status) in zip(gfns, statuses) where status == .okay { unmapOne(mapper, gfn, engine: engine) }
            pools[mapper]?.give(back: gfns)
            return MapResult(gfns: [], mfns: [], statuses: statuses)
        }
        return MapResult(gfns: gfns, mfns: mfns, statuses: statuses)
    }

    /// `map_grant_ref` for one reference, in Xen's order of checks.
    private func mapOne(mapper: DomainID, granter: DomainID, ref: UInt32, readOnly: Bool, at gfn: GFN,
                        handle: UInt32, engine: Altp2mEngine) -> Result<MFN, GrantStatus> {
        // rcu_lock_domain_by_id: GNTST_bad_domain.
        guard let size = tableSize(granter) else { return .failure(.badDomain) }
        // "Bad ref": beyond nr_grant_entries.
        guard ref < size else { return .failure(.badGrantRef) }
        // _set_status_v1: the entry must be GTF_permit_access for this
        // domain ("Bad flags or dom"), and not read-only for a writable pin
        // ("Attempt to write-pin a r/o grant entry"); both GNTST_general_error.
        guard var entry = entry(granter, ref), entry.peer == mapper else { return .failure(.generalError) }
        if !readOnly && entry.readOnly { return .failure(.generalError) }
        // get_paged_frame (first pin): the granter's gfn must hold a RAM page,
        // else GNTST_bad_page; a pinned entry reuses the active entry's frame.
        let mfn: MFN
        if let active = activeFrame(granter, ref) {
            mfn = active
        } else {
            guard let host = try? engine.entry(granter, .host, gfn: entry.gfn), host.entry.hasValidFrame,
                  !host.type.isSpecial, host.type != .mmioDM,
                  host.type == .ramRW || host.type == .ramLogDirty || (readOnly && host.type == .ramRO)
            else { return .failure(.badPage) }
            mfn = host.mfn
        }
        // create_grant_p2m_mapping: a p2m_add_page failure is GNTST_general_error.
        do { try engine.addGrantMapping(mapper, at: gfn, mfn: mfn, readOnly: readOnly) } catch {
            return .failure(.generalError)
        }
        if readOnly { entry.readPins += 1 } else { entry.writePins += 1 }
        setEntry(granter, ref, entry)
        setMapping(mapper, gfn, Mapping(granter: granter, ref: ref, mfn: mfn, readOnly: readOnly, handle: handle))
        return .success(mfn)
    }

    /// `act->mfn` of a pinned entry: the frame its current mappings map.
    private func activeFrame(_ granter: DomainID, _ ref: UInt32) -> MFN? {
        for table in mappings.values {
            for mapping in table.values where mapping.granter == granter && mapping.ref == ref { return mapping.mfn }
        }
        return nil
    }

    /// `xengnttab_unmap` on Linux: `munmap` and `IOCTL_GNTDEV_UNMAP_GRANT_REF`
    /// issue `GNTTABOP_unmap_grant_ref` with `host_addr` = each gfn:
    /// `unmap_common` → `replace_grant_p2m_mapping` → `p2m_remove_page`
    /// (with the altp2m propagation: a view whose remapped range holds the
    /// gfn is reset), the pin is dropped (`unmap_common_complete`), and the
    /// gfn returns to the unpopulated pool (`gnttab_free_pages`). A grant
    /// whose end was deferred ends with its last mapping.
    ///
    /// - Throws: ``XenErrno/noEntry`` if a gfn is not a mapping of this
    ///   handle (gntdev finds no such map: `-ENOENT`), before unmapping any;
    ///   ``XenErrno/invalid`` for a gntalloc handle.
    public func unmap(handle: UInt32, gfns: [GFN], engine: Altp2mEngine) throws(XenErrno) {
        guard let owner = handles[handle], owner.driver == .gntdev else { throw .invalid }
        for gfn in gfns where mappings[owner.domain]?[gfn]?.handle != handle { throw .noEntry }
        for gfn in gfns { unmapOne(owner.domain, gfn, engine: engine) }
        pools[owner.domain]?.give(back: gfns)
    }

    private func unmapOne(_ mapper: DomainID, _ gfn: GFN, engine: Altp2mEngine) {
        guard let mapping = mappings[mapper]?[gfn] else { return }
        try? engine.removeGrantMapping(mapper, at: gfn, mfn: mapping.mfn)
        setMapping(mapper, gfn, nil)
        unpin(mapping)
    }

    /// Drops one pin of the mapping's entry (`reduce_status_for_pin` clears
    /// `GTF_writing`/`GTF_reading` with the last one) and ends a deferred
    /// grant once nothing maps it.
    private func unpin(_ mapping: Mapping) {
        guard var entry = entry(mapping.granter, mapping.ref) else { return }
        if mapping.readOnly { entry.readPins -= 1 } else { entry.writePins -= 1 }
        setEntry(mapping.granter, mapping.ref, entry)
        if entry.endDeferred && !entry.inUse { endAccess(mapping.granter, mapping.ref) }
    }

    /// Domain teardown (`domain_kill`): `gnttab_release_mappings` drops the
    /// pins the dying domain's mappings held on other domains' entries (its
    /// own p2m goes with it), and `grant_table_destroy` drops its table.
    /// Other domains' mappings of its grants stay until they unmap: they
    /// hold references to its frames, so the frames outlive it (Xen keeps
    /// the dying domain as a zombie for as long; the simulator keeps only
    /// the frames).
    public func destroyDomain(_ id: DomainID) {
        for mapping in mappings[id]?.values.map({ $0 }) ?? [] where mapping.granter != id { unpin(mapping) }
        forgetDomain(id)
    }
}

/// The guest kernel's pool of unpopulated guest-physical pages, where
/// gntdev maps grants (Linux `drivers/xen/unpopulated-alloc.c`, 6.x).
///
/// `fill_list` claims a free range of physical address space from
/// `iomem_resource` (`allocate_resource`, aligned to and a multiple of
/// `PAGES_PER_SECTION`, 32768 pages on x86-64) and adds it to a gen_pool;
/// pages are then taken first-fit (the lowest free gfn first) and given
/// back on unmap. The simulator's `iomem_resource` is the domain's
/// guest-physical space outside its RAM and the simulator's reserved
/// regions, so the first section is the lowest 32768-aligned range at or
/// above the end of RAM that holds no host p2m entry and meets no reserved
/// region.
public struct UnpopulatedPool: Sendable, Equatable {
    /// `PAGES_PER_SECTION` on x86-64 (128 MiB of 4-KiB pages).
    public static let sectionPages: UInt64 = 32768

    /// What the pool must keep clear of when it claims a section.
    public struct Placement: Sendable {
        /// The end of the domain's RAM (its memory map's last RAM gfn + 1).
        public var ramEnd: GFN
        /// Ranges claimed by others (the memory map's reserved regions).
        public var reserved: [Range<GFN>]

        public init(ramEnd: GFN, reserved: [Range<GFN>]) {
            self.ramEnd = ramEnd
            self.reserved = reserved
        }
    }

    /// The sections claimed so far (their first gfns).
    public private(set) var sections: [GFN] = []
    /// Free gfns, highest first, so `popLast` yields the lowest.
    private var free: [GFN] = []

    public init() {}

    /// Takes `count` gfns, lowest first, claiming sections as needed.
    mutating func take(_ count: Int, engine: Altp2mEngine, domain: DomainID,
                       placement: Placement) throws(XenErrno) -> [GFN] {
        while free.count < count { try claimSection(engine: engine, domain: domain, placement: placement) }
        return (0..<count).map { _ in free.removeLast() }
    }

    /// `gen_pool_free`: the gfns are free again.
    mutating func give(back gfns: [GFN]) {
        free.append(contentsOf: gfns)
        free.sort(by: >)
    }

    private mutating func claimSection(engine: Altp2mEngine, domain: DomainID,
                                       placement: Placement) throws(XenErrno) {
        let size = Self.sectionPages
        let used = Set(try engine.domain(domain).host.entries.keys.map { $0.rawValue / size })
        var start = (placement.ramEnd.rawValue + size - 1) / size * size
        // The EPT reaches 2^36 gfns (48-bit guest-physical addresses).
        while start + size <= 1 << 36 {
            let range = GFN(start)..<GFN(start + size)
            let taken = sections.contains(GFN(start)) || used.contains(start / size)
                || placement.reserved.contains { $0.overlaps(range) }
            if !taken {
                sections.append(GFN(start))
                free.append(contentsOf: range)
                free.sort(by: >)
                return
            }
            start += size
        }
        throw .noMemory
    }
}
