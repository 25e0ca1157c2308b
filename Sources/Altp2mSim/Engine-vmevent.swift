import Altp2m

/// vm_event interplay (spec §7): the monitor ring, requests tagged with the
/// vCPU's view, responses (view switch, single-step toggle, fast single-step,
/// unpause), and the single-step trap that follows each retired instruction.
extension Altp2mEngine {
    // MARK: Ring

    /// Enables the domain's monitor ring (`xc_monitor_enable` plus the
    /// options' `xc_monitor_*` calls). From now on violations send events
    /// instead of relaxing entries.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/busy`` if a ring is already enabled.
    public func enableMonitor(_ domain: DomainID, options: MonitorOptions = MonitorOptions()) throws(XenErrno) {
        try withDomain(domain) { domain throws(XenErrno) in
            guard domain.monitor == nil else { throw .busy }
            domain.monitor = MonitorRing(options: options)
        }
    }

    /// Changes the options of an enabled ring.
    /// - Throws: ``XenErrno/noDevice`` if the domain has no ring.
    public func setMonitorOptions(_ domain: DomainID, _ options: MonitorOptions) throws(XenErrno) {
        try withDomain(domain) { domain throws(XenErrno) in
            guard domain.monitor != nil else { throw .noDevice }
            domain.monitor?.options = options
        }
    }

    /// Disables the ring (`xc_monitor_disable`), as `vm_event_domctl`
    /// (`XEN_VM_EVENT_DISABLE` of the monitor) and `vm_event_disable` do in
    /// Xen 4.17.0 (unchanged to 4.21): the ring and its pending requests are
    /// gone and `arch_monitor_cleanup_domain` clears the monitor options.
    /// vCPUs waiting for a response stay paused: Xen unblocks only vCPUs
    /// waiting for room on the ring (which the simulator's unbounded ring
    /// never has), so a vCPU paused by a synchronous event runs again only
    /// after a response on a ring enabled anew. From now on a violation
    /// finds no listener: `access_required` decides between a crash and a
    /// relaxation (spec §4.3).
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` if the domain has no ring (the domctl's result
    ///   when there is nothing to disable).
    public func disableMonitor(_ domain: DomainID) throws(XenErrno) {
        try withDomain(domain) { domain throws(XenErrno) in
            guard domain.monitor != nil else { throw .invalid }
            domain.monitor = nil
        }
    }

    /// Removes and returns the requests on the ring, oldest first.
    /// - Throws: ``XenErrno/noDevice`` if the domain has no ring.
    public func takeMonitorRequests(_ domain: DomainID) throws(XenErrno) -> [VMEventRequest] {
        try withDomain(domain) { domain throws(XenErrno) in
            guard let pending = domain.monitor?.pending else { throw .noDevice }
            domain.monitor?.pending = []
            return pending
        }
    }

    /// The requests on the ring, oldest first, without removing them.
    public func pendingMonitorRequests(_ domain: DomainID) throws(XenErrno) -> [VMEventRequest] {
        let domain = try self.domain(domain)
        guard let ring = domain.monitor else { throw .noDevice }
        return ring.pending
    }

    // MARK: Responses

    /// Delivers a response (`vm_event_resume`, spec §7).
    ///
    /// A response with another interface version or for a vCPU the domain
    /// lacks is dropped. Its flags act only if the vCPU is paused by
    /// vm_event (a stale response for a running vCPU does nothing), in Xen's
    /// order: single-step toggle, else fast single-step (ignored without MTF
    /// or for an index ≥ nr); then `alternateP2M` switches this vCPU to
    /// `altp2mIndex` if altp2m is active and the view is active, **ignoring
    /// visibility**, and silently does nothing otherwise; then `vcpuPaused`
    /// unpauses it. Emulation flags are accepted and ignored (no emulator).
    ///
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/noDevice`` if the domain has no ring. Never for a bad
    ///   response: Xen reports nothing for those either.
    public func respond(_ domain: DomainID, _ response: VMEventResponse) throws(XenErrno) {
        try withDomain(domain) { domain throws(XenErrno) in
            guard domain.monitor != nil else { throw .noDevice }
            guard response.version == VMEventRequest.interfaceVersion,
                  response.vcpu.rawValue < UInt32(domain.vcpus.count) else { return }
            let vcpu = Int(response.vcpu.rawValue)
            guard domain.vcpus[vcpu].pausedByVMEvent else { return }

            if response.flags.contains(.toggleSinglestep) {
                if host.cpu.hasMTF { domain.vcpus[vcpu].singlestep.toggle() }
            } else if response.flags.contains(.fastSinglestep) {
                if host.cpu.hasMTF && Int(response.fastSinglestepView.rawValue) < domain.viewCount {
                    domain.vcpus[vcpu].singlestep = true
                    domain.vcpus[vcpu].fastSinglestepView = response.fastSinglestepView
                }
            }
            if response.flags.contains(.alternateP2M) {
                let target = response.altp2mIndex
                if domain.isActive && domain.isValidView(target) && domain.vcpus[vcpu].view != target {
                    domain.moveVCPU(vcpu, to: target)
                    domain.bumpGeneration()
                }
            }
            if response.flags.contains(.vcpuPaused) {
                domain.vcpus[vcpu].pausedByVMEvent = false
            }
        }
    }

    // MARK: Instructions and single-stepping

    /// Executes one guest instruction that touches no memory, retiring it.
    /// - Returns: `false` if the vCPU could not run (paused or crashed).
    /// - Throws: ``XenErrno/notFound`` / ``XenErrno/invalid`` for an unknown domain or vCPU.
    @discardableResult
    public func guestExecute(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) -> Bool {
        try withDomain(domain) { domain throws(XenErrno) in
            guard vcpu.rawValue < UInt32(domain.vcpus.count) else { throw .invalid }
            let index = Int(vcpu.rawValue)
            guard domain.isRunnable(index) else { return false }
            retireInstruction(&domain, vcpu: index)
            return true
        }
    }

    /// What happens after a guest instruction completes: with single-stepping
    /// on, the MTF trap. A pending fast single-step switches the vCPU to its
    /// view (skipped if altp2m or the view is inactive), turns single-stepping
    /// off, and sends **no** event; otherwise a synchronous `SINGLESTEP`
    /// event is sent if the monitor asked for them.
    ///
    /// On 4.17, `hvm_monitor_debug` returns before the fast single-step when
    /// the monitor did not ask for single-step events: the vCPU keeps
    /// single-stepping with the switch pending and nothing happens (the
    /// reorder came in 4.19, ``XenVersion/fastSinglestepWithoutSinglestepEvents``).
    func retireInstruction(_ domain: inout Domain, vcpu: Int) {
        guard domain.vcpus[vcpu].singlestep else { return }
        let eventsWanted = domain.monitor?.options.singlestepEvents == true
        if !eventsWanted && !host.xen.fastSinglestepWithoutSinglestepEvents { return }
        if let target = domain.vcpus[vcpu].fastSinglestepView {
            domain.vcpus[vcpu].fastSinglestepView = nil
            domain.vcpus[vcpu].singlestep = false
            if domain.isActive && domain.isValidView(target) && domain.vcpus[vcpu].view != target {
                domain.moveVCPU(vcpu, to: target)
                domain.bumpGeneration()
            }
            return
        }
        guard eventsWanted else { return }
        let request = monitorRequest(domain, vcpu: vcpu, reason: .singlestep, synchronous: true, memAccess: nil)
        domain.monitor?.pending.append(request)
        domain.vcpus[vcpu].pausedByVMEvent = true
    }

    /// `monitor_traps`: a request tagged with the vCPU's view if altp2m is
    /// active at this moment (flag and index, including 0), else index 0 and
    /// no flag.
    func monitorRequest(_ domain: Domain, vcpu: Int, reason: VMEventReason, synchronous: Bool,
                        memAccess: MemAccessEventData?) -> VMEventRequest {
        var flags: VMEventFlags = synchronous ? [.vcpuPaused] : []
        var index = ViewID.hostOrView0
        if domain.isActive {
            flags.insert(.alternateP2M)
            index = domain.vcpus[vcpu].view
        }
        return VMEventRequest(flags: flags, reason: reason, vcpu: VCPUID(UInt32(vcpu)),
                              altp2mIndex: index, memAccess: memAccess)
    }
}
