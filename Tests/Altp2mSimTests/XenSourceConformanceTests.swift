import Altp2m
@testable import Altp2mSim
import Testing

/// Rules read off Xen's source, one test per Xen function, on every profile
/// the function applies to. Each names the function and the release its
/// behaviour is taken from (RELEASE-4.17.0 for the 4.17 profile, the release
/// tags for 4.19 and 4.21).
@Suite("Xen source conformance")
struct XenSourceConformanceTests {
    // MARK: access_required is a flag of each p2m

    @Test("arch_p2m_set_access_required: the views get the flag only while altp2m is active",
          arguments: XenVersion.allCases)
    func archP2MSetAccessRequired(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, monitor: false)
        // Set while inactive: the host p2m has it, the views never will.
        try b.engine.setAccessRequired(b.d, true)
        try b.engine.setDomainState(b.d, active: true)
        #expect(try b.engine.domainStatus(b.d).accessRequired)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .read)
        try b.engine.switchToView(b.d, view: 1)
        #expect(try b.engine.guestWrite(b.d, vcpu: v0, gfn: G1, bytes: [1])
                == .relaxed(mfn: try b.hostMFN(G1), view: 1, from: .read, to: .readWriteExecute))

        // Set while active: every view, active or not, gets it.
        try b.engine.setAccessRequired(b.d, true)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G2, access: .read)
        #expect(try b.engine.guestWrite(b.d, vcpu: v0, gfn: G2, bytes: [1]) == .domainCrashed)
    }

    @Test("p2m_mem_access_check reads the flag of the p2m in use; deactivation leaves the views' flags",
          arguments: XenVersion.allCases)
    func p2mMemAccessCheckReadsCurrentView(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true, monitor: false)
        try b.engine.setAccessRequired(b.d, true)
        try b.engine.setDomainState(b.d, active: false)
        // Cleared while inactive: only the host p2m.
        try b.engine.setAccessRequired(b.d, false)
        try b.engine.setHostMemAccess(b.d, gfn: G3, access: .read)
        #expect(try b.engine.guestWrite(b.d, vcpu: v1, gfn: G3, bytes: [1])
                == .relaxed(mfn: try b.hostMFN(G3), view: nil, from: .read, to: .readWriteExecute))
        // Activation and create_p2m do not reset a view's flag.
        try b.engine.setDomainState(b.d, active: true)
        #expect(try b.engine.createView(b.d, defaultAccess: .readWriteExecute) == 1)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .read)
        try b.engine.switchToView(b.d, view: 1)
        #expect(try b.engine.guestWrite(b.d, vcpu: v0, gfn: G1, bytes: [1]) == .domainCrashed)
    }

    // MARK: What a mem_access event reports

    @Test("ept_handle_violation: a write violation is reported as MEM_ACCESS_R | MEM_ACCESS_W",
          arguments: XenVersion.allCases)
    func eptHandleViolationWriteIsReadAndWrite(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .none)
        try b.engine.switchToView(b.d, view: 1)
        var reported: [AccessKind: MemAccessEventFlags] = [:]
        for (vcpu, kind) in [(v0, AccessKind.write), (v1, .read)] {
            guard case .vmEvent(let request, nil) = try b.engine.guestAccess(b.d, vcpu: vcpu, gfn: G1, kind: kind) else {
                Issue.record("\(kind): expected a synchronous event")
                continue
            }
            reported[kind] = request.memAccess?.flags
        }
        #expect(reported[.write] == [.read, .write])
        #expect(reported[.read] == [.read])
    }

    // MARK: Log-dirty

    @Test("p2m_change_type_one: a log-dirty write fault gives the gfn the host's default access, host and views",
          arguments: XenVersion.allCases)
    func p2mChangeTypeOneResetsAccess(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.switchToView(b.d, view: 1)
        try b.engine.setHostType(b.d, gfn: G1, type: .ramLogDirty)
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .read).completedMFN != nil)
        // The host entry, and by propagation view 1's copy: rw, log-dirty.
        try b.engine.setMemAccess(b.d, view: 0, gfn: G1, access: .readWrite)
        #expect(try b.viewEntry(1, G1)?.access == .readWrite)
        #expect(try b.engine.guestWrite(b.d, vcpu: v0, gfn: G1, bytes: [5]).completedMFN == (try b.hostMFN(G1)))
        for table in [P2MTable.host, .view(1)] {
            let entry = try #require(try b.engine.entry(b.d, table, gfn: G1))
            #expect(entry.type == .ramRW, "\(table)")
            #expect(entry.access == .readWriteExecute, "\(table): the host default, not rw")
        }
    }

    @Test("Log-dirty mode: global type change in host and views, EBUSY, a remap replaced, PML writes do not fault")
    func logDirtyMode() throws {
        let noPML = CPUProfile(name: "intel-no-pml", hasEPT: true, hasVMFUNC: true, hasVE: true, hasMTF: true,
                               hasPML: false)
        for cpu in [noPML, .intel] {
            let b = try Baseline(cpu: cpu, active: true)
            _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
            _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
            try b.engine.setMemAccess(b.d, view: 0, gfn: G1, access: .readWrite)
            try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: G2)
            try b.engine.setMemAccess(b.d, view: 2, gfn: G1, access: .none)
            try b.engine.enableLogDirty(b.d)
            #expect(rc { try b.engine.enableLogDirty(b.d) } == EINVAL)
            for table in [P2MTable.host, .view(1), .view(2)] {
                #expect(try b.engine.entry(b.d, table, gfn: G1)?.type == .ramLogDirty, "\(table)")
            }
            try b.engine.switchToView(b.d, view: 1)
            let wrote = try b.engine.guestWrite(b.d, vcpu: v0, gfn: G1, bytes: [9])
            if cpu.hasPML {
                // The write is logged by the CPU; nothing changes.
                #expect(wrote == .ok(mfn: try b.hostMFN(G2), view: 1))
                #expect(try b.viewEntry(2, G1)?.access == MemAccess.none)
            } else {
                // The fault resets G1 everywhere: view 1 loses its remap,
                // view 2 its n, the host its rw.
                #expect(wrote.completedMFN == (try b.hostMFN(G1)))
                #expect(try b.viewEntry(1, G1)?.mfn == (try b.hostMFN(G1)))
                #expect(try b.viewEntry(2, G1)?.access == .readWriteExecute)
                #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: G1) == .readWriteExecute)
                #expect(rc { try b.engine.changeHostType(b.d, gfn: G1, from: .ramLogDirty, to: .ramRW) } == EBUSY)
            }
            #expect(rc { try b.engine.changeHostType(b.d, gfn: H, from: .ramRW, to: .ramLogDirty) } == EBUSY)
            try b.engine.disableLogDirty(b.d)
            #expect(try b.engine.entry(b.d, .host, gfn: G3)?.type == .ramRW)
        }
    }

    // MARK: The monitor ring

    @Test("vm_event_disable: the ring goes, a vCPU waiting for a response stays paused, EINVAL without a ring",
          arguments: XenVersion.allCases)
    func vmEventDisable(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        try b.engine.setAccessRequired(b.d, true)
        let request = try b.pauseOnSyncEvent(v0)
        try b.engine.disableMonitor(b.d)
        #expect(rc { try b.engine.disableMonitor(b.d) } == EINVAL)
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).pausedByVMEvent, "only a response unpauses it")
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .read) == .vcpuPaused)
        // A ring enabled anew can still answer the paused vCPU.
        try b.engine.enableMonitor(b.d)
        try b.engine.respond(b.d, VMEventResponse(answering: request, flags: [.vcpuPaused]))
        #expect(try !b.engine.vcpuInfo(b.d, vcpu: v0).pausedByVMEvent)
        // No listener and access_required: the next violation crashes the domain.
        // (G3 is r in view 0's table since the event above.)
        try b.engine.disableMonitor(b.d)
        #expect(try b.engine.guestAccess(b.d, vcpu: v1, gfn: G3, kind: .write) == .domainCrashed)
    }

    // MARK: Version differences

    @Test("hvm_monitor_debug: on 4.17 a fast single-step needs single-step events; from 4.19 it does not",
          arguments: XenVersion.allCases)
    func hvmMonitorDebugFastSinglestep(xen: XenVersion) throws {
        let (b, request) = try ScenariosVMEventTests.pausedOnView1(xen)
        try b.engine.respond(b.d, VMEventResponse(answering: request, flags: [.fastSinglestep, .vcpuPaused],
                                                  fastSinglestepView: 0))
        #expect(try b.engine.guestExecute(b.d, vcpu: v0))
        let state = try b.engine.vcpuInfo(b.d, vcpu: v0)
        #expect(try b.engine.pendingMonitorRequests(b.d).isEmpty)
        if xen >= .v4_19 {
            #expect(state.view == 0 && !state.singlestep && state.fastSinglestepView == nil)
        } else {
            // The MTF trap returns early: still stepping, the switch pending.
            #expect(state.view == 1 && state.singlestep && state.fastSinglestepView == 0)
        }
    }

    @Test("arch_sanitise_domain_config: 4.19 creates an altp2m domain on a host without altp2m; 4.21 refuses it",
          arguments: XenVersion.allCases)
    func archSanitiseDomainConfigSupport(xen: XenVersion) throws {
        let engine = try Altp2mEngine(host: HostProfile(altp2mBootOption: false, xen: xen), frameCount: 1024)
        let result = rc { try engine.createDomain(Baseline.config(mode: .external)) }
        #expect(result == (xen >= .v4_21 ? EINVAL : OK))
        // Still refused on every release: no HAP, nested virtualization.
        if xen.modeFixedAtCreation {
            let plain = try Altp2mEngine(host: HostProfile(xen: xen), frameCount: 1024)
            #expect(rc { try plain.createDomain(Baseline.config(name: "a", mode: .external, hap: false)) } == EINVAL)
            #expect(rc { try plain.createDomain(Baseline.config(name: "b", mode: .external, nestedVirt: true)) } == EINVAL)
        }
    }

    // MARK: change_gfn's revert and mfn_valid

    @Test("p2m_remove_entry: a revert refuses a direct-MMIO RAM entry with EILSEQ", arguments: XenVersion.allCases)
    func p2mRemoveEntryRefusesDirectMMIO(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.mapFrame(try b.hostMFN(G2), into: b.d, at: H, type: .mmioDirect)
        try b.engine.switchToView(b.d, view: 1)
        _ = try b.engine.guestAccess(b.d, vcpu: v0, gfn: H, kind: .read)
        #expect(try b.viewEntry(1, H)?.type == .mmioDirect)
        #expect(rc { try b.engine.changeGFN(b.d, view: 1, oldGFN: H, newGFN: .invalid) } == -84)
        #expect(try b.viewEntry(1, H) != nil)
    }

    @Test("p2m_remove_entry: reverting an entry clears its frame's M2P entry while the host still maps it",
          arguments: XenVersion.allCases)
    func p2mRemoveEntryClearsM2P(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        let frame = try b.hostMFN(G1)
        #expect(b.engine.m2pEntry(of: frame) == G1)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .read)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: .invalid)
        #expect(try b.viewEntry(1, G1) == nil)
        #expect(try b.hostMFN(G1) == frame)
        #expect(b.engine.m2pEntry(of: frame) == nil, "the side effect of the revert")
        // Nothing to remove: no change, 0.
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G2, newGFN: .invalid)
        #expect(b.engine.m2pEntry(of: try b.hostMFN(G2)) == G2)
        // Mapping the frame again restores it.
        try b.engine.setMemAccess(b.d, view: 0, gfn: G1, access: .readWriteExecute)
        #expect(b.engine.m2pEntry(of: frame) == G1)
    }

    @Test("altp2m_get_effective_entry, p2m_get_suppress_ve: a direct-MMIO device frame is not mfn_valid",
          arguments: XenVersion.allCases)
    func mfnValidExcludesDeviceFrames(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        let device = MFN(UInt64(b.engine.frameCounts.total) + 0x10)
        try b.engine.mapDirectMMIO(b.d, at: H, mfn: device)
        #expect(rc { try b.engine.getSuppressVE(b.d, view: 0, gfn: H) } == ESRCH)
        // Lazy copy only asks for an mfn: the view gets the device frame.
        try b.engine.switchToView(b.d, view: 1)
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: H, kind: .read) == .lazyCopyThenOK(mfn: device, view: 1))
        let copied = try #require(try b.viewEntry(1, H))
        #expect(rc { try b.engine.getSuppressVE(b.d, view: 1, gfn: H) } == ESRCH)
        // set_mem_access falls back to the host, which is not ram_rw: skipped.
        try b.engine.setMemAccess(b.d, view: 1, gfn: H, access: .none)
        #expect(try b.viewEntry(1, H) == copied)
        #expect(rc { try b.engine.setSuppressVE(b.d, view: 1, gfn: H, suppress: false) } == ESRCH)
        #expect(rc { try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: H) } == ESRCH)
        // The revert removes only entries with a valid mfn: 0, and it stays.
        try b.engine.changeGFN(b.d, view: 1, oldGFN: H, newGFN: .invalid)
        #expect(try b.viewEntry(1, H) == copied)
    }

    // MARK: Points the model left open

    @Test("p2m_set_mem_access_multi: an all-ones gfn is no default-access request; EINVAL on the host, skipped on a view",
          arguments: XenVersion.allCases)
    func p2mSetMemAccessMultiAllOnes(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        var buffers = HypercallBuffers()
        let pfns = buffers.add(words: [G1.rawValue, ~0, G2.rawValue])
        let accesses = buffers.add([1, 1, 1])
        let host = HVMAltp2mOp.setMemAccessMulti(b.d, view: 0, count: 3, pfnList: pfns, accessList: accesses)
        #expect(b.hypercall(host, buffers: buffers).rc == EINVAL)
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: G1) == .read)
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: .invalid) == .readWriteExecute, "default unchanged")
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: G2) == .readWriteExecute, "the list stopped")
        let view = HVMAltp2mOp.setMemAccessMulti(b.d, view: 1, count: 3, pfnList: pfns, accessList: accesses)
        #expect(b.hypercall(view, buffers: buffers).rc == OK)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G2) == .read)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: .invalid) == .readWriteExecute)
    }

    @Test("p2m_change_altp2m_gfn: a failed lookup of the new gfn leaves nothing behind", arguments: XenVersion.allCases)
    func p2mChangeAltp2mGFNLeavesNothing(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        let generation = try b.engine.generation(of: b.d)
        #expect(rc { try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: H) } == ESRCH)
        #expect(try b.viewEntry(1, G1) == nil)
        #expect(try b.engine.viewInfo(b.d, view: 1).entryCount == 0)
        #expect(try b.engine.generation(of: b.d) == generation)
    }
}

