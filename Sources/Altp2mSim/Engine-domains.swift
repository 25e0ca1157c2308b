import Altp2m

extension Altp2mEngine {
    /// `HVM_PARAM_ALTP2M`.
    public static let hvmParamAltp2m: UInt32 = 35

    // MARK: Creation and destruction

    /// Creates a domain, populating its memory with fresh zeroed frames.
    ///
    /// On Xen ≥4.19 the altp2m fields are checked as `xen_domctl_createdomain`
    /// does (spec §1.2): ``XenErrno/invalid`` for option bits outside the mode
    /// mask, a mode on a host without altp2m support, without HAP, with nested
    /// virtualization or on a PV domain, and (4.21) a view count of 0 with a
    /// mode, above 512, or non-zero without a mode. On 4.17 the domain is
    /// created with altp2m disabled and the mode is then set through
    /// `HVM_PARAM_ALTP2M` as dom0, like libxl; an error there undoes the creation.
    ///
    /// - Returns: the new domain's id (the lowest free one, counting on).
    /// - Throws: ``XenErrno/invalid`` for a bad configuration (no vCPU or more
    ///   than 128, overlapping memory ranges, a view count on a release without
    ///   one, the altp2m checks above); ``XenErrno/noMemory`` if there are not
    ///   enough free frames; ``XenErrno/noSpace`` if every domain id is taken.
    public func createDomain(_ config: DomainConfig) throws(XenErrno) -> DomainID {
        guard config.vcpuCount >= 1, config.vcpuCount <= Self.maxVCPUs else { throw .invalid }
        let mode: Altp2mMode
        let viewCount: Int
        if host.xen.modeFixedAtCreation {
            (mode, viewCount) = try checkCreationAltp2m(config)
        } else {
            // 4.17: the count is the constant MAX_ALTP2M and the mode comes later.
            guard config.altp2mViewCount == nil else { throw .invalid }
            (mode, viewCount) = (.disabled, Self.defaultViewCount)
        }
        // Count before enumerating, so that an absurd layout fails fast.
        var pageCount: UInt64 = 0
        for range in config.memory {
            let (sum, overflow) = pageCount.addingReportingOverflow(range.upperBound.rawValue - range.lowerBound.rawValue)
            guard !overflow else { throw .noMemory }
            pageCount = sum
        }
        guard pageCount <= UInt64(frames.freeCount) else { throw .noMemory }
        var gfns = Set<GFN>()
        for range in config.memory {
            for gfn in range where !gfns.insert(gfn).inserted { throw .invalid }
        }

        let id = try allocateDomainID()
        var domain = Domain(id: id, name: config.name, kind: config.kind, hap: config.hap,
                            nestedVirt: config.nestedVirt, mode: mode, viewCount: viewCount,
                            vcpuCount: Int(config.vcpuCount))
        // Frames are taken before anything is written so that a shortage
        // (already ruled out above) could not leave half a domain behind.
        // Free frames are zero: the engine scrubs them when they are freed.
        var fresh: [MFN] = []
        fresh.reserveCapacity(gfns.count)
        for _ in 0..<gfns.count {
            guard let mfn = frames.allocate() else {
                fresh.forEach(releaseFrame)
                throw .noMemory
            }
            fresh.append(mfn)
        }
        for (gfn, mfn) in zip(gfns.sorted(), fresh) {
            hostWrite(&domain, at: gfn, P2MEntry(mfn: mfn, type: .ramRW, access: domain.host.defaultAccess))
            releaseFrame(mfn)   // the host entry now holds the only reference
        }
        insertDomain(domain)

        if !host.xen.modeFixedAtCreation && config.altp2mOptions != 0 {
            do {
                try hvmSetParam(id, index: Self.hvmParamAltp2m, value: UInt64(config.altp2mOptions),
                                caller: .controlDomain)
            } catch {
                try? destroyDomain(id)
                throw error
            }
        }
        return id
    }

    /// The ≥4.19 `arch_sanitise_domain_config` checks of the altp2m fields
    /// (RELEASE-4.19.0 and RELEASE-4.21.0): option bits outside the mask;
    /// with a mode, altp2m support (4.21 only), HAP, no nested virt and
    /// (4.21) a count in 1...512; without one, a count of 0. A PV domain has
    /// no HAP, so it fails the HAP check.
    private func checkCreationAltp2m(_ config: DomainConfig) throws(XenErrno) -> (Altp2mMode, Int) {
        guard config.altp2mOptions & ~3 == 0 else { throw .invalid }
        let mode = config.altp2mMode
        let enabled = mode != .disabled
        let count: Int
        if host.xen.configurableViewCount {
            count = Int(config.altp2mViewCount ?? (enabled ? UInt16(Self.defaultViewCount) : 0))
        } else {
            guard config.altp2mViewCount == nil else { throw .invalid }
            count = Self.defaultViewCount
        }
        if enabled {
            if host.xen.creationChecksAltp2mSupport {
                guard host.altp2mSupported else { throw .invalid }
            }
            guard config.hap, !config.nestedVirt, config.kind == .hvm else { throw .invalid }
            guard count != 0 else { throw .invalid }
        }
        if host.xen.configurableViewCount {
            guard count <= Self.maxViewCount else { throw .invalid }
            guard enabled || count == 0 else { throw .invalid }
        }
        return (mode, count)
    }

    /// Destroys a domain: releases its frames and #VE page references (frames
    /// no longer referenced return to the free list, scrubbed) and drops its
    /// vm_event ring.
    /// - Throws: ``XenErrno/notFound`` if there is no such domain;
    ///   ``XenErrno/notPermitted`` for dom0.
    public func destroyDomain(_ id: DomainID) throws(XenErrno) {
        guard id != .controlDomain else { throw .notPermitted }
        guard let domain = removeDomain(id) else { throw .notFound }
        for vcpu in domain.vcpus {
            if let page = vcpu.notify { releaseFrame(page.mfn) }
        }
        for entry in domain.host.entries.values where entry.hasValidFrame && isRAMFrame(entry.mfn) {
            if !entry.type.isSpecial { m2p[entry.mfn] = nil }
            releaseFrame(entry.mfn)
        }
    }

    // MARK: Toolstack controls

    /// Pauses every vCPU of the domain (`xc_domain_pause`); pauses nest.
    public func pauseDomain(_ id: DomainID) throws(XenErrno) {
        try withDomain(id) { domain throws(XenErrno) in domain.pauseCount += 1 }
    }

    /// Undoes one ``pauseDomain(_:)``.
    /// - Throws: ``XenErrno/invalid`` if the domain is not paused.
    public func unpauseDomain(_ id: DomainID) throws(XenErrno) {
        try withDomain(id) { domain throws(XenErrno) in
            guard domain.pauseCount > 0 else { throw .invalid }
            domain.pauseCount -= 1
        }
    }

    /// Sets `access_required` (`xc_domain_set_access_required`): with it, a
    /// violation with no monitor ring crashes the domain instead of relaxing
    /// the entry (spec §4.3).
    ///
    /// Follows `arch_p2m_set_access_required` (Xen 4.17.0, unchanged to
    /// 4.21): the flag belongs to each p2m. The host p2m's is always written;
    /// every view's (active or not) only while altp2m is active. A flag set
    /// while altp2m is inactive therefore never reaches the views, and one
    /// cleared while inactive stays set in them; the fault path reads the
    /// flag of the p2m the vCPU runs on.
    public func setAccessRequired(_ id: DomainID, _ required: Bool) throws(XenErrno) {
        try withDomain(id) { domain throws(XenErrno) in
            domain.host.accessRequired = required
            guard domain.isActive else { return }
            for index in domain.views.indices { domain.views[index].accessRequired = required }
        }
    }

    /// Crashes a domain (`domain_crash`): its vCPUs stop; its state stays
    /// until it is destroyed.
    public func crashDomain(_ id: DomainID) throws(XenErrno) {
        try withDomain(id) { domain throws(XenErrno) in domain.isCrashed = true }
    }

    /// Every domain, dom0 first, by id.
    public func domainList() -> [DomainInfo] {
        allDomains.map { domain in
            DomainInfo(id: domain.id, name: domain.name, kind: domain.kind,
                       vcpuCount: UInt32(domain.vcpus.count),
                       pageCount: UInt64(domain.host.mappedPageCount),
                       isPaused: domain.pauseCount > 0, isCrashed: domain.isCrashed)
        }
    }

    // MARK: HVM_PARAM_ALTP2M

    /// `HVMOP_set_param`, as `caller` makes it. Only `HVM_PARAM_ALTP2M` (35)
    /// is modelled; other indices fail with ``XenErrno/invalid``.
    ///
    /// Xen 4.17 (spec §1.2): the guest setting its own param gets `EPERM`; a
    /// different non-zero value once one is set gets `EEXIST`; a caller other
    /// than dom0 gets `EPERM`; a value above 3, or a mode on a nested-virt
    /// domain, gets `EINVAL`. Altp2m support is not checked. As the spec asks,
    /// the simulator also refuses a mode on a domain without HAP (`EINVAL`).
    /// Xen ≥4.19: the mode was fixed at creation; every set gets `EEXIST`.
    public func hvmSetParam(_ target: DomainID, index: UInt32, value: UInt64, caller: Caller) throws(XenErrno) {
        try admitHypercall(caller)
        let id = try resolveParamTarget(target, caller: caller)
        try withDomain(id) { domain throws(XenErrno) in
            guard domain.kind == .hvm else { throw .invalid }
            try checkParamTargetPermission(caller, target: id)
            guard index == Self.hvmParamAltp2m else { throw .invalid }
            if host.xen.modeFixedAtCreation { throw .exists }
            if caller.isGuest(of: id) { throw .notPermitted }
            let current = UInt64(domain.mode.rawValue)
            if current != 0 && value != current { throw .exists }
            guard caller == .controlDomain else { throw .notPermitted }
            guard value <= 3, let mode = Altp2mMode(rawValue: UInt32(value)) else { throw .invalid }
            if mode != .disabled {
                guard !domain.nestedVirt, domain.hap else { throw .invalid }
            }
            domain.mode = mode
        }
    }

    /// `HVMOP_get_param`, as `caller` makes it; the guest may read its own.
    /// Only `HVM_PARAM_ALTP2M` (35) is modelled.
    public func hvmGetParam(_ target: DomainID, index: UInt32, caller: Caller) throws(XenErrno) -> UInt64 {
        try admitHypercall(caller)
        let id = try resolveParamTarget(target, caller: caller)
        let domain = try domain(id)
        guard domain.kind == .hvm else { throw .invalid }
        try checkParamTargetPermission(caller, target: id)
        guard index == Self.hvmParamAltp2m else { throw .invalid }
        return UInt64(domain.mode.rawValue)
    }

    private func resolveParamTarget(_ target: DomainID, caller: Caller) throws(XenErrno) -> DomainID {
        guard let id = resolve(target, for: caller) else { throw .invalid }
        return id
    }

    /// `xsm_hvm_param` (XSM_TARGET): dom0, the target's device model, or the
    /// target itself.
    private func checkParamTargetPermission(_ caller: Caller, target: DomainID) throws(XenErrno) {
        switch caller {
        case .controlDomain: return
        case .deviceModel(let of): guard of == target else { throw .notPermitted }
        case .guest(let own, _): guard own == target else { throw .notPermitted }
        }
    }
}
