import Altp2m

/// Read-only views of internal state for tests, tools and the guest-process
/// piece: things no hypercall shows, such as the view-0 table (spec §11.9),
/// `active_vcpus`, remapped ranges and the generation counter.
extension Altp2mEngine {
    /// The entry at `gfn` in a table (host p2m or any view's own table), or
    /// `nil` if it has none.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` for a view index ≥ nr.
    public func entry(_ domain: DomainID, _ table: P2MTable, gfn: GFN) throws(XenErrno) -> ViewTableEntry? {
        let domain = try self.domain(domain)
        let found: P2MEntry?
        switch table {
        case .host:
            found = domain.host.entries[gfn]
        case .view(let view):
            guard Int(view.rawValue) < domain.viewCount else { throw .invalid }
            found = domain.views[Int(view.rawValue)].entries[gfn]
        }
        return found.map { ViewTableEntry(gfn: gfn, entry: $0) }
    }

    /// Every entry of a table, by gfn.
    /// - Throws: as ``entry(_:_:gfn:)``.
    public func entries(_ domain: DomainID, _ table: P2MTable) throws(XenErrno) -> [ViewTableEntry] {
        let domain = try self.domain(domain)
        let map: [GFN: P2MEntry]
        switch table {
        case .host:
            map = domain.host.entries
        case .view(let view):
            guard Int(view.rawValue) < domain.viewCount else { throw .invalid }
            map = domain.views[Int(view.rawValue)].entries
        }
        return map.sorted { $0.key < $1.key }.map { ViewTableEntry(gfn: $0.key, entry: $0.value) }
    }

    /// What an access through `view` would use for `gfn` right now, without
    /// changing anything: the view's entry, or the entry lazy copy would
    /// create; `nil` if neither exists. While altp2m is inactive, pass `nil`
    /// for the host p2m.
    /// - Throws: as ``entry(_:_:gfn:)``.
    public func translate(_ domain: DomainID, view: ViewID?, gfn: GFN) throws(XenErrno) -> P2MEntry? {
        let domain = try self.domain(domain)
        guard let view else { return domain.host.validEntry(gfn) }
        guard Int(view.rawValue) < domain.viewCount else { throw .invalid }
        let table = domain.views[Int(view.rawValue)]
        if let present = table.entries[gfn] { return present }
        guard let hostEntry = domain.host.validEntry(gfn) else { return nil }
        let access = host.xen.lazyCopyUsesViewDefault ? table.defaultAccess : hostEntry.access
        return P2MEntry(mfn: hostEntry.mfn, type: hostEntry.type, access: access, suppressVE: true)
    }

    /// The M2P entry of a machine frame (`get_gpfn_from_mfn`): the gfn a
    /// host p2m maps it at as RAM, or `nil` (`INVALID_M2P_ENTRY`) for a free
    /// frame, a frame mapped only as a grant or foreign mapping, or one whose
    /// entry a change_gfn revert cleared (``revertEntry(_:view:gfn:)``).
    public func m2pEntry(of mfn: MFN) -> GFN? { m2p[mfn] }

    /// A view's state.
    /// - Throws: as ``entry(_:_:gfn:)``.
    public func viewInfo(_ domain: DomainID, view: ViewID) throws(XenErrno) -> ViewInfo {
        let domain = try self.domain(domain)
        guard Int(view.rawValue) < domain.viewCount else { throw .invalid }
        let table = domain.views[Int(view.rawValue)]
        return ViewInfo(index: view, isActive: table.isActive, isVisible: table.isVisible,
                        defaultAccess: table.defaultAccess, minRemappedGFN: table.minRemappedGFN,
                        maxRemappedGFN: table.maxRemappedGFN, activeVCPUs: table.activeVCPUs,
                        entryCount: table.entries.count, accessRequired: table.accessRequired)
    }

    /// A vCPU's state.
    /// - Throws: ``XenErrno/notFound`` / ``XenErrno/invalid`` for an unknown domain or vCPU.
    public func vcpuInfo(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) -> VCPUInfo {
        let domain = try self.domain(domain)
        guard vcpu.rawValue < UInt32(domain.vcpus.count) else { throw .invalid }
        let state = domain.vcpus[Int(vcpu.rawValue)]
        return VCPUInfo(id: vcpu, view: state.view, notifyGFN: state.notify?.gfn, notifyMFN: state.notify?.mfn,
                        vmfuncEnabled: state.vmfuncEnabled, pausedByVMEvent: state.pausedByVMEvent,
                        singlestep: state.singlestep, fastSinglestepView: state.fastSinglestepView)
    }

    /// A domain's state.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain.
    public func domainStatus(_ domain: DomainID) throws(XenErrno) -> DomainStatus {
        let domain = try self.domain(domain)
        return DomainStatus(id: domain.id, name: domain.name, kind: domain.kind,
                            vcpuCount: domain.vcpus.count, mode: domain.mode,
                            viewCount: domain.viewCount, isActive: domain.isActive,
                            hostDefaultAccess: domain.host.defaultAccess, isCrashed: domain.isCrashed,
                            pauseCount: domain.pauseCount, accessRequired: domain.host.accessRequired,
                            hasMonitorRing: domain.monitor != nil, logDirty: domain.logDirty,
                            mappedPageCount: domain.host.mappedPageCount, generation: domain.generation)
    }

    /// The domain's generation counter.
    ///
    /// It increases whenever something a guest could observe about its views
    /// changes: altp2m activation, a view created, destroyed, shown or
    /// hidden, any entry of any view or of the host p2m rewritten (hypercalls,
    /// propagation, resets, relaxations by the fault handler), #VE enabled or
    /// disabled, or a vCPU moved by dom0 or a vm_event response. It does not
    /// change for a lazy copy (which reproduces what the guest would have
    /// derived) nor for the guest's own VMFUNC (which the guest knows about).
    /// A guest process caches permissions and re-reads them when this moves.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain.
    public func generation(of domain: DomainID) throws(XenErrno) -> UInt64 {
        try self.domain(domain).generation
    }

    /// What a guest process needs to switch views locally: per vCPU, its view
    /// and the views its VMFUNC can reach, with the generation they belong to.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain.
    public func guestControlSnapshot(_ domain: DomainID) throws(XenErrno) -> GuestControlSnapshot {
        let domain = try self.domain(domain)
        var active = ViewSet()
        var visible = ViewSet()
        for index in 0..<domain.viewCount {
            if domain.views[index].isActive { active.insert(ViewID(UInt16(index))) }
            if domain.views[index].isVisible { visible.insert(ViewID(UInt16(index))) }
        }
        let vmfuncWorks = host.cpu.hasVMFUNC && domain.isActive
        let vcpus = domain.vcpus.map { state in
            VCPUSnapshot(view: state.view, vmfuncEnabled: state.vmfuncEnabled, notifyGFN: state.notify?.gfn,
                         reachableViews: vmfuncWorks && state.vmfuncEnabled ? visible : ViewSet())
        }
        return GuestControlSnapshot(generation: domain.generation, altp2mActive: domain.isActive,
                                    activeViews: active, visibleViews: visible, vcpus: vcpus)
    }
}
