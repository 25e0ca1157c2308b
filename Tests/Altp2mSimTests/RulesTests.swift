import Altp2m
@testable import Altp2mSim
import Testing

/// Rules of spec §1–9 that the §10 scenarios do not pin.
@Suite("Rules beyond the scenarios")
struct RulesTests {
    // MARK: §4.1 lazy copy and version differences

    @Test("S62 lazy copy takes the host access on 4.17 and the view default from 4.19",
          arguments: [XenVersion.v4_17, .v4_19, .v4_21])
    func lazyCopyAccess(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        // Restrict G1 in the host before the view-0 table holds it.
        try b.engine.setMemAccess(b.d, view: 0, gfn: G1, access: .read)
        #expect(try b.viewEntry(0, G1) == nil)
        let outcome = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write)
        if xen.lazyCopyUsesViewDefault {
            #expect(outcome == .lazyCopyThenOK(mfn: try b.hostMFN(G1), view: 0))
            #expect(try b.viewEntry(0, G1)?.access == .readWriteExecute)
        } else {
            guard case .vmEvent(let request, nil) = outcome else {
                Issue.record("expected a synchronous event, got \(outcome)")
                return
            }
            #expect(request.altp2mIndex == 0)
            #expect(try b.viewEntry(0, G1)?.access == .read)
        }
        // A view with default rx: the first read copies with rx (≥4.19) or rwx (4.17).
        _ = try b.engine.createView(b.d, defaultAccess: .readExecute)
        try b.engine.switchToView(b.d, view: 1)
        _ = try b.engine.guestAccess(b.d, vcpu: v1, gfn: G2, kind: .read)
        let copied = try b.engine.getMemAccess(b.d, view: 1, gfn: G2)
        #expect(copied == (xen.lazyCopyUsesViewDefault ? .readExecute : .readWriteExecute))
        #expect(try b.viewEntry(1, G2)?.suppressVE == true)
        #expect(try b.engine.translate(b.d, view: 1, gfn: G3)?.access == copied)
    }

    @Test("A hole is never copied into a view; emulated MMIO neither")
    func holesAreNotCopied() throws {
        let b = try Baseline(active: true)
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: H, kind: .read) == .noMapping)
        try b.engine.mapEmulatedMMIO(b.d, at: 0x250)
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: 0x250, kind: .read) == .noMapping)
        #expect(try b.engine.entries(b.d, .view(0)).isEmpty)
    }

    // MARK: §5.3 propagation

    @Test("A drop hitting two remapped ranges resets every active view, view 0 included")
    func dropHittingTwoViewsResetsAll() throws {
        let b = try Baseline(active: true)
        for _ in 1...3 { _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute) }
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: 0x140)
        try b.engine.changeGFN(b.d, view: 2, oldGFN: G1, newGFN: 0x140)
        try b.engine.setMemAccess(b.d, view: 3, gfn: G2, access: .read)   // view 3: no remaps
        _ = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G3, kind: .read)   // view 0 holds G3
        try b.engine.setVisibility(b.d, view: 3, visible: false)
        try b.engine.dropPage(b.d, gfn: 0x140)
        for view: ViewID in [0, 1, 2, 3] {
            let info = try b.engine.viewInfo(b.d, view: view)
            #expect(info.entryCount == 0, "view \(view) should be reset")
            #expect(info.remappedRange == nil)
            #expect(info.isActive)
        }
        // Reset keeps activity, visibility, defaults and vCPU counts.
        #expect(try b.engine.viewInfo(b.d, view: 3).isVisible == false)
        #expect(try b.engine.viewInfo(b.d, view: 0).activeVCPUs == 2)
    }

    @Test("A drop hitting one remapped range resets that view only")
    func dropHittingOneViewResetsIt() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: 0x140)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G2, access: .read)
        try b.engine.setMemAccess(b.d, view: 2, gfn: G2, access: .read)
        try b.engine.dropPage(b.d, gfn: 0x140)
        #expect(try b.engine.viewInfo(b.d, view: 1).entryCount == 0)
        #expect(try b.engine.viewInfo(b.d, view: 2).entryCount == 1)
        #expect(try b.engine.getMemAccess(b.d, view: 2, gfn: G2) == .read)
    }

    @Test("A host write overwrites view entries present at the gfn and leaves the others")
    func hostWritesReachPresentEntriesOnly() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: MemAccess.none)
        try b.engine.setMemAccess(b.d, view: 0, gfn: G1, access: .readExecute)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G1) == .readExecute)
        #expect(try b.viewEntry(2, G1) == nil)
        // A dropped gfn outside any remapped range removes present entries.
        try b.engine.dropPage(b.d, gfn: G1)
        #expect(try b.viewEntry(1, G1) == nil)
        #expect(try b.engine.viewInfo(b.d, view: 1).isActive)
    }

    @Test("set_suppress_ve on view 0 changes the host only; the view-0 table keeps sve 1, so no #VE there")
    func hostSuppressVENeverReachesViewZero() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .read)
        try b.engine.setSuppressVE(b.d, view: 0, gfn: G1, suppress: false)
        try b.engine.setMemAccess(b.d, view: 0, gfn: G1, access: .read)
        #expect(try b.engine.getSuppressVE(b.d, view: 0, gfn: G1) == false)
        #expect(try b.viewEntry(0, G1)?.suppressVE == true)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: INFO)
        let outcome = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write)
        guard case .vmEvent = outcome else {
            Issue.record("expected a vm_event, not #VE: \(outcome)")
            return
        }
    }

    @Test("set_mem_access with INVALID_GFN sets the host default even for a view")
    func invalidGFNSetsHostDefault() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: .invalid, access: .read)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: .invalid) == .readExecute)
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: .invalid) == .read)
        // New views asking for "default" get the host's current default.
        let view = try b.engine.createView(b.d, defaultAccess: .default)
        #expect(try b.engine.viewInfo(b.d, view: view).defaultAccess == .read)
        // And populate gives new host pages the host default.
        try b.engine.populate(b.d, gfn: 0x280)
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: 0x280) == .read)
    }

    @Test("set_mem_access on view 0 at a hole is a host write of an invalid mfn: a remapped range there resets")
    func hostAccessAtHolePropagatesAsDrop() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: 0x1F0)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G2, newGFN: 0x110)   // range [0x110, 0x1F0]
        try b.engine.dropPage(b.d, gfn: 0x1E0)   // inside the range: reset
        #expect(try b.engine.viewInfo(b.d, view: 1).entryCount == 0)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: 0x1F0)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G2, newGFN: 0x110)
        #expect(rc { try b.engine.setMemAccess(b.d, view: 0, gfn: 0x1E0, access: .read) } == OK)
        #expect(try b.engine.viewInfo(b.d, view: 1).entryCount == 0)
        #expect(try b.engine.entry(b.d, .host, gfn: 0x1E0) == nil)
    }

    // MARK: Frames

    @Test("Dropping a page returns its frame to the allocator; destroying a domain returns all")
    func framesComeBack() throws {
        let engine = try Altp2mEngine(frameCount: 1024)
        #expect(engine.frameCounts == FrameCounts(total: 1024, free: 1024, allocated: 0))
        let d = try engine.createDomain(Baseline.config())
        #expect(engine.frameCounts.allocated == 256)
        let mfn = try #require(try engine.entry(d, .host, gfn: G1)).mfn
        engine.memory.write(mfn, offset: 0, bytes: [0xEE])
        try engine.dropPage(d, gfn: G1)
        #expect(engine.frameCounts.allocated == 255)
        #expect(engine.referenceCount(of: mfn) == 0)
        #expect(engine.memory.read(mfn, offset: 0, count: 1) == [0])   // scrubbed
        #expect(rc { try engine.dropPage(d, gfn: G1) } == EINVAL)
        let fresh = try engine.populate(d, gfn: G1)
        #expect(engine.frameCounts.allocated == 256)
        #expect(rc { try engine.populate(d, gfn: G1) } == EEXIST)
        #expect(try engine.entry(d, .host, gfn: G1)?.mfn == fresh)
        try engine.destroyDomain(d)
        #expect(engine.frameCounts == FrameCounts(total: 1024, free: 1024, allocated: 0))
        #expect(rc { try engine.createDomain(DomainConfig(name: "big", pages: 2048)) } == -12)
        #expect(engine.frameCounts.allocated == 0)
    }

    @Test("A frame mapped into two domains lives until both drop it; #VE pages hold a reference")
    func sharedFramesAreReferenceCounted() throws {
        let engine = try Altp2mEngine(frameCount: 1024)
        let a = try engine.createDomain(Baseline.config(name: "A", mode: .external))
        let c = try engine.createDomain(Baseline.config(name: "C", mode: .external))
        let shared = try #require(try engine.entry(a, .host, gfn: 0x1F0)).mfn
        let replaced = try #require(try engine.entry(c, .host, gfn: 0x1F0)).mfn
        try engine.mapFrame(shared, into: c, at: 0x1F0)
        #expect(engine.referenceCount(of: shared) == 2)
        #expect(engine.referenceCount(of: replaced) == 0)   // the mapping it replaced was released
        #expect(engine.frameCounts.allocated == 511)

        try engine.setDomainState(c, active: true)
        try engine.vcpuEnableNotify(c, vcpu: 0, gfn: 0x1F0)
        #expect(engine.referenceCount(of: shared) == 3)
        try engine.destroyDomain(a)
        #expect(engine.referenceCount(of: shared) == 2)
        try engine.dropPage(c, gfn: 0x1F0)
        #expect(engine.referenceCount(of: shared) == 1)   // the #VE registration
        try engine.vcpuDisableNotify(c, vcpu: 0)
        #expect(engine.referenceCount(of: shared) == 0)
        try engine.destroyDomain(c)
        #expect(engine.frameCounts.allocated == 0)
        #expect(rc { try engine.mapFrame(shared, into: .controlDomain, at: 1) } == EINVAL)
    }

    // MARK: §3.4.5 destroy

    @Test("destroy_p2m gives EBUSY for view 0, out-of-range and inactive views, and views in use")
    func destroyIsBusy() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(rc { try b.engine.destroyView(b.d, view: 0) } == EBUSY)
        #expect(rc { try b.engine.destroyView(b.d, view: 10) } == EBUSY)
        #expect(rc { try b.engine.destroyView(b.d, view: 5) } == EBUSY)
        try b.engine.switchToView(b.d, view: 1)
        #expect(rc { try b.engine.destroyView(b.d, view: 1) } == EBUSY)
        try b.engine.switchToView(b.d, view: 0)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .read)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G2, newGFN: G3)
        #expect(rc { try b.engine.destroyView(b.d, view: 1) } == OK)
        let info = try b.engine.viewInfo(b.d, view: 1)
        #expect(!info.isActive && !info.isVisible && info.entryCount == 0 && info.remappedRange == nil)
    }

    // MARK: §5.1 sve written by change_gfn

    @Test("In mixed mode the guest's own change_gfn writes sve 0, so violations become #VE")
    func guestChangeGFNClearsSuppressVE() throws {
        let b = try Baseline(mode: .mixed, active: true)
        let create = b.hypercall(.createP2M(.selfDomain, defaultAccess: b.abi(.readWriteExecute)),
                                 as: .guestKernel(b.d))
        #expect(create.rc == OK)
        let change = HVMAltp2mOp.changeGFN(.selfDomain, view: 1, oldGFN: G1.rawValue, newGFN: G2.rawValue)
        #expect(b.hypercall(change, as: .guestKernel(b.d)).rc == OK)
        #expect(try b.engine.getSuppressVE(b.d, view: 1, gfn: G1) == false)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G3, newGFN: G2)
        #expect(try b.engine.getSuppressVE(b.d, view: 1, gfn: G3) == true)

        // The remap took G2's access: restrict G2 in the view first, then remap.
        try b.engine.setMemAccess(b.d, view: 1, gfn: G2, access: .read)
        #expect(b.hypercall(change, as: .guestKernel(b.d)).rc == OK)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G1) == .read)
        #expect(b.hypercall(.vcpuEnableNotify(.selfDomain, vcpu: 0, gfn: INFO.rawValue),
                            as: .guestKernel(b.d)).rc == OK)
        #expect(b.hypercall(.switchP2M(.selfDomain, view: 1), as: .guestKernel(b.d)).rc == OK)
        let outcome = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write, offset: 4, gla: 0x7000_1004)
        guard case .virtualizationException(let info) = outcome else {
            Issue.record("expected #VE, got \(outcome)")
            return
        }
        #expect(info.guestPhysicalAddress == G1.address(offset: 4))
        #expect(info.guestLinearAddress == 0x7000_1004)
        #expect(info.exitQualification.isSuperset(of: [.write, .readable, .glaValid, .translatedAccess]))
    }

    // MARK: §4.4 semaphore, §11.1 no-#VE CPUs

    @Test("#VE is delivered only while the semaphore is 0; the guest re-arms it")
    func semaphoreGatesVE() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .read)
        try b.engine.setSuppressVE(b.d, view: 1, gfn: G1, suppress: false)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: INFO)
        try b.engine.switchToView(b.d, view: 1)
        guard case .virtualizationException = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write) else {
            Issue.record("expected #VE")
            return
        }
        // Semaphore still set: a VM exit and a mem_access event instead.
        guard case .vmEvent(let request, nil) = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write) else {
            Issue.record("expected a synchronous event")
            return
        }
        try b.engine.respond(b.d, VMEventResponse(answering: request, flags: .vcpuPaused))
        // The guest clears the semaphore through its view (INFO is rwx in view 1).
        #expect(try b.engine.guestWrite(b.d, vcpu: v0, gfn: INFO, offset: VEInfo.Offset.semaphore,
                                        bytes: [0, 0, 0, 0]).completedMFN != nil)
        guard case .virtualizationException(let again) = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1,
                                                                                  kind: .execute) else {
            Issue.record("expected #VE after re-arming")
            return
        }
        #expect(again.exitQualification.contains(.fetch))
    }

    @Test("On a CPU without #VE an sve-0 violation is swallowed: no event, no change (spec §11.1)")
    func noVEHardwareSwallowsFault() throws {
        let b = try Baseline(cpu: .intelNoVE, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .read)
        #expect(rc { try b.engine.setSuppressVE(b.d, view: 1, gfn: G1, suppress: false) } == OK)
        try b.engine.switchToView(b.d, view: 1)
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write) == .faultSwallowed(view: 1))
        #expect(try b.engine.pendingMonitorRequests(b.d).isEmpty)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G1) == .read)
    }

    // MARK: §3.4.2 deactivation

    @Test("Deactivation destroys every view and #VE registration; reactivation starts clean")
    func deactivationStartsClean() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readExecute)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: G2)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: INFO)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v1, gfn: INFO)
        try b.engine.vcpuDisableNotify(b.d, vcpu: v1)
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v1).vmfuncEnabled)   // disable keeps VMFUNC
        try b.engine.switchToView(b.d, view: 1)
        let infoMFN = try b.hostMFN(INFO)
        #expect(b.engine.referenceCount(of: infoMFN) == 2)

        try b.engine.setDomainState(b.d, active: false)
        #expect(b.engine.referenceCount(of: infoMFN) == 1)
        let state0 = try b.engine.vcpuInfo(b.d, vcpu: v0)
        #expect(state0.view == .invalid && state0.notifyGFN == nil && !state0.vmfuncEnabled)
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v1).vmfuncEnabled)   // spec §11.4
        for view: ViewID in [0, 1] {
            let info = try b.engine.viewInfo(b.d, view: view)
            #expect(!info.isActive && info.entryCount == 0 && info.activeVCPUs == 0)
        }
        #expect(try b.engine.vmfunc(b.d, vcpu: v1, eax: 0, ecx: 0) == .invalidOpcode(.vmExit))

        try b.engine.setDomainState(b.d, active: true)
        #expect(try b.engine.viewInfo(b.d, view: 0).activeVCPUs == 2)
        #expect(try b.engine.viewInfo(b.d, view: 1).isActive == false)
        #expect(try b.engine.entries(b.d, .view(0)).isEmpty)
        #expect(try b.engine.createView(b.d, defaultAccess: .readWriteExecute) == 1)
    }

    // MARK: §1.4 callers

    @Test("Limited mode: the guest may only enable #VE on itself")
    func limitedMode() throws {
        let b = try Baseline(mode: .limited, active: true)
        let guest = Caller.guestKernel(b.d)
        #expect(b.hypercall(.vcpuEnableNotify(.selfDomain, vcpu: 0, gfn: INFO.rawValue), as: guest).rc == OK)
        #expect(b.hypercall(.vcpuDisableNotify(.selfDomain, vcpu: 0), as: guest).rc == EPERM)
        #expect(b.hypercall(.getDomainState(.selfDomain), as: guest).rc == EPERM)
        #expect(b.hypercall(.vcpuEnableNotify(.selfDomain, vcpu: 1, gfn: INFO.rawValue),
                            as: .guestUser(b.d)).rc == EPERM)
        // The guest can then VMFUNC between visible views.
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(try b.engine.vmfunc(b.d, vcpu: v0, eax: 0, ecx: 1) == .switched(from: 0, to: 1))
    }

    @Test("A device model may act on its own domain only")
    func deviceModel() throws {
        let b = try Baseline(active: true)
        let other = try b.engine.createDomain(Baseline.config(name: "E"))
        try b.engine.setDomainState(other, active: true)
        #expect(b.hypercall(.createP2M(b.d, defaultAccess: 7), as: .deviceModel(of: b.d)).rc == OK)
        #expect(b.hypercall(.createP2M(other, defaultAccess: 7), as: .deviceModel(of: b.d)).rc == EPERM)
        #expect(b.hypercall(.getDomainState(.selfDomain), as: .deviceModel(of: b.d)).rc == EOPNOTSUPP)
    }

    @Test("CPL > 0 is refused before anything else, even on an unsupported host")
    func userModeFirst() throws {
        let b = try Baseline(cpu: .amd, mode: .disabled)
        #expect(b.hypercall(.getDomainState(.selfDomain), as: .guestUser(b.d)).rc == EPERM)
        #expect(b.hypercall(.getDomainState(.selfDomain), as: .guestKernel(b.d)).rc == EOPNOTSUPP)
        var short = [UInt8](repeating: 0, count: 40)
        #expect(rc { try b.engine.hvmAltp2mOp(rawArgument: &short, caller: .controlDomain) } == EOPNOTSUPP)
    }

    // MARK: §6 VMFUNC

    @Test("VMFUNC: hardware needs visibility; emulation needs a CPU without VMFUNC and ignores visibility")
    func vmfuncVisibility() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: INFO)
        try b.engine.setVisibility(b.d, view: 1, visible: false)
        #expect(try b.engine.vmfunc(b.d, vcpu: v0, eax: 0, ecx: 1) == .invalidOpcode(.vmExit))
        #expect(try b.engine.emulateVMFUNC(b.d, vcpu: v0, eax: 0, ecx: 1) == .invalidOpcode(.emulationRefused))
        try b.engine.setVisibility(b.d, view: 0, visible: false)
        #expect(try b.engine.vmfunc(b.d, vcpu: v0, eax: 0, ecx: 0) == .invalidOpcode(.vmExit))

        let old = try Baseline(cpu: .intelNoVMFUNC, active: true)
        _ = try old.engine.createView(old.d, defaultAccess: .readWriteExecute)
        try old.engine.setVisibility(old.d, view: 1, visible: false)
        #expect(try old.engine.vmfunc(old.d, vcpu: v0, eax: 0, ecx: 1) == .invalidOpcode(.vmfuncDisabled))
        #expect(try old.engine.emulateVMFUNC(old.d, vcpu: v0, eax: 1, ecx: 1) == .invalidOpcode(.emulationRefused))
        #expect(try old.engine.emulateVMFUNC(old.d, vcpu: v0, eax: 0, ecx: 2) == .invalidOpcode(.emulationRefused))
        #expect(try old.engine.emulateVMFUNC(old.d, vcpu: v0, eax: 0, ecx: 1) == .switched(from: 0, to: 1))
        #expect(try old.engine.viewInfo(old.d, view: 1).activeVCPUs == 1)
    }

    @Test("A paused vCPU runs nothing")
    func pausedVCPU() throws {
        let b = try Baseline(active: true)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: INFO)
        try b.engine.pauseDomain(b.d)
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .read) == .vcpuPaused)
        #expect(try b.engine.vmfunc(b.d, vcpu: v0, eax: 0, ecx: 0) == .vcpuNotRunning)
        #expect(try b.engine.guestExecute(b.d, vcpu: v0) == false)
        try b.engine.unpauseDomain(b.d)
        #expect(rc { try b.engine.unpauseDomain(b.d) } == EINVAL)
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .read)
                == .lazyCopyThenOK(mfn: try b.hostMFN(G1), view: 0))
        #expect(rc { try b.engine.guestAccess(b.d, vcpu: 2, gfn: G1, kind: .read) } == EINVAL)
    }

    // MARK: §7 responses

    @Test("Response switches ignore visibility; toggle wins over fast single-step; bad responses are dropped")
    func responseDetails() throws {
        let (b, request) = try ScenariosVMEventTests.pausedOnView1(.v4_17)
        try b.engine.setVisibility(b.d, view: 2, visible: false)
        try b.engine.setMonitorOptions(b.d, MonitorOptions(singlestepEvents: true))
        var wrongVersion = VMEventResponse(answering: request, flags: [.alternateP2M, .vcpuPaused], altp2mIndex: 2)
        wrongVersion.version = 6
        try b.engine.respond(b.d, wrongVersion)
        try b.engine.respond(b.d, VMEventResponse(flags: [.alternateP2M, .vcpuPaused], vcpu: 9, altp2mIndex: 2))
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).pausedByVMEvent)

        try b.engine.respond(b.d, VMEventResponse(answering: request,
                                                  flags: [.alternateP2M, .toggleSinglestep, .fastSinglestep,
                                                          .vcpuPaused],
                                                  altp2mIndex: 2, fastSinglestepView: 0))
        var state = try b.engine.vcpuInfo(b.d, vcpu: v0)
        #expect(state.view == 2 && state.singlestep && state.fastSinglestepView == nil)

        // With single-stepping on, the next instruction traps with a SINGLESTEP event.
        #expect(try b.engine.guestExecute(b.d, vcpu: v0))
        let requests = try b.engine.takeMonitorRequests(b.d)
        #expect(requests.count == 1)
        #expect(requests.first?.reason == .singlestep)
        #expect(requests.first?.flags == [.vcpuPaused, .alternateP2M])
        #expect(requests.first?.altp2mIndex == 2)
        state = try b.engine.vcpuInfo(b.d, vcpu: v0)
        #expect(state.pausedByVMEvent)
        try b.engine.respond(b.d, VMEventResponse(flags: [.toggleSinglestep, .vcpuPaused], reason: .singlestep,
                                                  vcpu: v0))
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).singlestep == false)
    }

    @Test("In-guest pagefault suppression emulates page-walk violations with no event")
    func pageWalkSuppression() throws {
        let b = try Baseline(active: true, monitor: false)
        try b.engine.enableMonitor(b.d, options: MonitorOptions(inguestPagefaultSuppressed: true))
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .read)
        try b.engine.switchToView(b.d, view: 1)
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write, gla: 0x1000, duringPageWalk: true)
                == .emulated(mfn: try b.hostMFN(G1), view: 1))
        #expect(try b.engine.pendingMonitorRequests(b.d).isEmpty)
        let outcome = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write, gla: 0x2000)
        guard case .vmEvent(let request, nil) = outcome else {
            Issue.record("expected an event for an ordinary access, got \(outcome)")
            return
        }
        #expect(request.memAccess?.flags == [.read, .write, .glaValid, .faultWithGLA])
        #expect(request.memAccess?.gla == 0x2000)
    }

    // MARK: Types

    @Test("Log-dirty: set_mem_access skips unpopulated log-dirty gfns; a write fixes the type everywhere")
    func logDirty() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setHostType(b.d, gfn: G1, type: .ramLogDirty)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .read)
        #expect(try b.viewEntry(1, G1) == nil)   // not p2m_ram_rw: silently skipped
        try b.engine.switchToView(b.d, view: 1)
        let outcome = try b.engine.guestWrite(b.d, vcpu: v0, gfn: G1, bytes: [7])
        #expect(outcome == .lazyCopyThenOK(mfn: try b.hostMFN(G1), view: 1))
        #expect(try b.engine.entry(b.d, .host, gfn: G1)?.type == .ramRW)
        #expect(try b.viewEntry(1, G1)?.type == .ramRW)
        #expect(b.engine.memory.read(try b.hostMFN(G1), offset: 0, count: 1) == [7])

        try b.engine.setHostType(b.d, gfn: G2, type: .ramRO)
        #expect(try b.engine.guestWrite(b.d, vcpu: v0, gfn: G2, bytes: [9])
                == .writeDiscarded(mfn: try b.hostMFN(G2), view: 1))
        #expect(b.engine.memory.read(try b.hostMFN(G2), offset: 0, count: 1) == [0])
        #expect(rc { try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: G2) } == EINVAL)
    }

    @Test("r_pw exists from 4.20: refused on 4.17, allows page-walk writes on 4.21")
    func readPageWalkWrite() throws {
        let old = try Baseline(xen: .v4_17, active: true)
        _ = try old.engine.createView(old.d, defaultAccess: .readWriteExecute)
        #expect(rc { try old.engine.setMemAccess(old.d, view: 1, gfn: G1, access: .readPageWalkWrite) } == EINVAL)

        let new = try Baseline(xen: .v4_21, active: true)
        _ = try new.engine.createView(new.d, defaultAccess: .readWriteExecute)
        try new.engine.setMemAccess(new.d, view: 1, gfn: G1, access: .readPageWalkWrite)
        #expect(try new.engine.getMemAccess(new.d, view: 1, gfn: G1) == .readPageWalkWrite)
        try new.engine.switchToView(new.d, view: 1)
        #expect(try new.engine.guestAccess(new.d, vcpu: v0, gfn: G1, kind: .write, duringPageWalk: true)
                == .ok(mfn: try new.hostMFN(G1), view: 1))
        guard case .vmEvent = try new.engine.guestAccess(new.d, vcpu: v0, gfn: G1, kind: .write) else {
            Issue.record("an ordinary write to r_pw must violate")
            return
        }
    }

    @Test("4.21 view count: nr views, and nr = 512 is allowed")
    func configurableViewCount() throws {
        let b = try Baseline(xen: .v4_21, active: true, viewCount: 3)
        #expect(try b.engine.createView(b.d, defaultAccess: .readWriteExecute) == 1)
        #expect(try b.engine.createView(b.d, defaultAccess: .readWriteExecute) == 2)
        #expect(rc { try b.engine.createView(b.d, defaultAccess: .readWriteExecute) } == EINVAL)
        #expect(rc { try b.engine.switchToView(b.d, view: 3) } == EINVAL)
        let big = try b.engine.createDomain(Baseline.config(name: "big", viewCount: 512))
        #expect(try b.engine.domainStatus(big).viewCount == 512)
        // Before 4.21 the count does not exist.
        let old = try Altp2mEngine(host: HostProfile(xen: .v4_19), frameCount: 512)
        #expect(rc { try old.createDomain(Baseline.config(viewCount: 4)) } == EINVAL)
    }

    // MARK: Snapshots and generation

    @Test("The generation moves on dom0 changes, not on lazy copies or the guest's own VMFUNC")
    func generationCounter() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: INFO)
        var generation = try b.engine.generation(of: b.d)
        _ = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .read)
        _ = try b.engine.vmfunc(b.d, vcpu: v0, eax: 0, ecx: 1)
        #expect(try b.engine.generation(of: b.d) == generation)
        try b.engine.setVisibility(b.d, view: 1, visible: false)
        #expect(try b.engine.generation(of: b.d) > generation)
        generation = try b.engine.generation(of: b.d)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G2, access: .read)
        #expect(try b.engine.generation(of: b.d) > generation)

        let snapshot = try b.engine.guestControlSnapshot(b.d)
        #expect(snapshot.generation == (try b.engine.generation(of: b.d)))
        #expect(snapshot.activeViews == ViewSet([0, 1]))
        #expect(snapshot.visibleViews == ViewSet([0]))
        #expect(snapshot.vcpus[0].view == 1)
        #expect(snapshot.vcpus[0].reachableViews == ViewSet([0]))
        #expect(snapshot.vcpus[1].reachableViews.isEmpty)   // never had enable_notify
        #expect(snapshot.vcpus[0].notifyGFN == INFO)
    }

    @Test("HypervisorControl works through an existential, as the grant module will use it")
    func hypervisorControlExistential() throws {
        let b = try Baseline(active: true)
        let hypervisor: any HypervisorControl = b.engine
        let view = try hypervisor.createView(b.d, defaultAccess: .readWriteExecute)
        try hypervisor.setMemAccessMulti(b.d, view: view, entries: [(G1, .read), (G2, .none), (H, .read)])
        #expect(try hypervisor.getMemAccess(b.d, view: view, gfn: G1) == .read)
        #expect(try hypervisor.getMemAccess(b.d, view: view, gfn: G2) == MemAccess.none)
        do {
            try hypervisor.destroyView(b.d, view: 0)
            Issue.record("destroying view 0 must fail")
        } catch XenErrno.busy {
            // expected
        } catch {
            Issue.record("unexpected \(error)")
        }
        let domains = try hypervisor.listDomains()
        #expect(domains.map(\.id) == [.controlDomain, b.d])
        #expect(domains.last?.pageCount == 256 && domains.last?.vcpuCount == 2)
    }
}
