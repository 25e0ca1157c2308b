import Altp2m
@testable import Altp2mSim
import Testing

/// Spec §10 D: #VE and suppress_ve.
@Suite("D. #VE and suppress_ve")
struct ScenariosVETests {
    @Test("S29 vcpu_enable_notify and vcpu_disable_notify checks", arguments: everyProfile)
    func s29(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        #expect(b.hypercall(.vcpuEnableNotify(b.d, vcpu: 2, gfn: INFO.rawValue)).rc == EINVAL)
        #expect(b.hypercall(.vcpuEnableNotify(b.d, vcpu: 0, gfn: INFO.rawValue, pad: 1)).rc == EINVAL)
        #expect(b.hypercall(.vcpuEnableNotify(b.d, vcpu: 0, gfn: H.rawValue)).rc == EINVAL)
        let infoMFN = try b.hostMFN(INFO)
        #expect(b.engine.referenceCount(of: infoMFN) == 1)
        #expect(b.hypercall(.vcpuEnableNotify(b.d, vcpu: 0, gfn: INFO.rawValue)).rc == OK)
        #expect(b.engine.referenceCount(of: infoMFN) == 2)   // Xen holds a page reference
        let info = try b.engine.vcpuInfo(b.d, vcpu: v0)
        #expect(info.notifyGFN == INFO && info.notifyMFN == infoMFN && info.vmfuncEnabled)
        #expect(b.hypercall(.vcpuEnableNotify(b.d, vcpu: 0, gfn: INFO.rawValue)).rc == EEXIST)
        #expect(b.hypercall(.vcpuDisableNotify(b.d, vcpu: 1)).rc == OK)
        #expect(b.hypercall(.vcpuDisableNotify(b.d, vcpu: 2)).rc == EINVAL)

        for cpu in [CPUProfile.intelNoVE, .intelNoVMFUNC] {
            let noVE = try Baseline(xen: xen, cpu: cpu, active: true)
            #expect(noVE.hypercall(.vcpuEnableNotify(noVE.d, vcpu: 0, gfn: INFO.rawValue)).rc == EOPNOTSUPP)
            #expect(noVE.hypercall(.vcpuDisableNotify(noVE.d, vcpu: 0)).rc == EOPNOTSUPP)
        }
    }

    @Test("S30 a violation on an sve-0 entry delivers #VE with no vm_event", arguments: everyProfile)
    func s30(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G2, access: .read)
        try b.engine.setSuppressVE(b.d, view: 1, gfn: G2, suppress: false)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: INFO)
        try b.engine.switchToView(b.d, view: 1)
        let g2Before = b.engine.memory.read(try b.hostMFN(G2), offset: 0x10, count: 4)

        let outcome = try b.engine.guestWrite(b.d, vcpu: v0, gfn: G2, offset: 0x10, bytes: [1, 2, 3, 4])
        guard case .virtualizationException(let delivered) = outcome else {
            Issue.record("expected #VE, got \(outcome)")
            return
        }
        #expect(try b.engine.pendingMonitorRequests(b.d).isEmpty)
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).pausedByVMEvent == false)

        let page = VEInfo(reading: try b.hostMFN(INFO), of: b.engine.memory)
        #expect(page == delivered)
        #expect(page.exitReason == 48)
        #expect(page.semaphore == 0xFFFF_FFFF)
        #expect(page.guestPhysicalAddress == 0x101010)
        #expect(page.eptpIndex == 1)
        #expect(page.exitQualification.contains(.write))
        #expect(!page.exitQualification.contains(.read))
        // The entry is read-only: bit 3 (readable) set, bits 4-5 clear.
        #expect(page.exitQualification.contains(.readable))
        #expect(!page.exitQualification.contains(.writable))

        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G2) == .read)
        #expect(b.engine.memory.read(try b.hostMFN(G2), offset: 0x10, count: 4) == g2Before)
    }

    @Test("S33 set_suppress_ve checks", arguments: everyProfile)
    func s33(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(b.hypercall(.setSuppressVE(b.d, view: 1, gfn: G1.rawValue, suppress: 0, pad1: 1)).rc == EINVAL)
        #expect(b.hypercall(.setSuppressVE(b.d, view: 1, gfn: G1.rawValue, suppress: 0, pad2: 1)).rc == EINVAL)
        #expect(rc { try b.engine.setSuppressVE(b.d, view: 4, gfn: G1, suppress: false) } == EINVAL)
        #expect(rc { try b.engine.setSuppressVE(b.d, view: 1, gfn: H, suppress: false) } == ESRCH)
        #expect(try b.viewEntry(1, G1) == nil)
    }

    @Test("S36 set_suppress_ve_multi goes on past failures and reports the first", arguments: everyProfile)
    func s36(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        let result = b.hypercall(.setSuppressVEMulti(b.d, view: 1, suppress: 0, firstGFN: 0x1FE, lastGFN: 0x301))
        #expect(result.rc == OK)
        #expect(result.op.firstErrorOutput == ESRCH)
        #expect(result.op.firstErrorGFNOutput == 0x200)
        #expect(result.op.firstGFNOutput == 0x302)
        #expect(try b.engine.getSuppressVE(b.d, view: 1, gfn: 0x1FE) == false)
        #expect(try b.engine.getSuppressVE(b.d, view: 1, gfn: 0x1FF) == false)
        // Entries created this way take the host's access.
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: 0x1FE) == .readWriteExecute)
        #expect(try b.engine.viewInfo(b.d, view: 1).entryCount == 2)

        #expect(b.hypercall(.setSuppressVEMulti(b.d, view: 1, suppress: 0, firstGFN: 0x150, lastGFN: 0x140)).rc == EINVAL)
        #expect(b.hypercall(.setSuppressVEMulti(b.d, view: 1, suppress: 0, firstGFN: 0x150, lastGFN: 0x150,
                                                pad1: 1)).rc == EINVAL)

        // The typed wrapper reports the same.
        let typed = try b.engine.setSuppressVEMulti(b.d, view: 1, firstGFN: 0x1FE, lastGFN: 0x301, suppress: true)
        #expect(typed == SuppressVEMultiResult(firstError: .notFound, firstErrorGFN: 0x200))
        let clean = try b.engine.setSuppressVEMulti(b.d, view: 1, firstGFN: 0x100, lastGFN: 0x1FF, suppress: true)
        #expect(clean == SuppressVEMultiResult())
    }
}
