import Altp2m
@testable import Altp2mSim
import Testing

/// Spec §10 B: view lifecycle.
@Suite("B. View lifecycle")
struct ScenariosViewLifecycleTests {
    @Test("S14 views take the lowest free slot; a re-created view has its new default", arguments: everyProfile)
    func s14(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        let created = try (0..<3).map { _ in try b.engine.createView(b.d, defaultAccess: .readWriteExecute) }
        #expect(created == [1, 2, 3])
        #expect(rc { try b.engine.destroyView(b.d, view: 2) } == OK)
        #expect(try b.engine.viewInfo(b.d, view: 2).isActive == false)
        let again = b.hypercall(.createP2M(b.d, defaultAccess: b.abi(.read)))
        #expect(again.rc == OK)
        #expect(again.op.viewOutput == 2)
        #expect(try b.engine.getMemAccess(b.d, view: 2, gfn: .invalid) == .read)
    }

    @Test("S15 ten views: nine creations succeed, the tenth gives EINVAL", arguments: everyProfile)
    func s15(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true, viewCount: xen.configurableViewCount ? 10 : nil)
        for expected in 1...9 {
            #expect(try b.engine.createView(b.d, defaultAccess: .readWriteExecute) == ViewID(UInt16(expected)))
        }
        #expect(rc { try b.engine.createView(b.d, defaultAccess: .readWriteExecute) } == EINVAL)
    }

    @Test("S16 default-access bounds of create_p2m", arguments: everyProfile)
    func s16(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        let defaultNumber = xen.accessDefaultABIValue
        #expect(b.hypercall(.createP2M(b.d, defaultAccess: defaultNumber + 1)).rc == EINVAL)
        let created = b.hypercall(.createP2M(b.d, defaultAccess: defaultNumber))
        #expect(created.rc == OK)
        let view = ViewID(created.op.viewOutput)
        #expect(try b.engine.getMemAccess(b.d, view: view, gfn: .invalid) == .readWriteExecute)

        let ten = b.hypercall(.createP2M(b.d, defaultAccess: 10))
        #expect(ten.rc == OK)
        let expectedTen: MemAccess = xen.hasReadPageWalkWrite ? .readPageWalkWrite : .readWriteExecute
        #expect(try b.engine.viewInfo(b.d, view: ViewID(ten.op.viewOutput)).defaultAccess == expectedTen)
    }

    @Test("S19 destroy_p2m refuses a view a vCPU is on (EBUSY) until it is left", arguments: everyProfile)
    func s19(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(try b.engine.createView(b.d, defaultAccess: .readWriteExecute) == 2)
        let request = try b.pauseOnSyncEvent(v1)
        try b.engine.respond(b.d, VMEventResponse(answering: request, flags: [.alternateP2M, .vcpuPaused],
                                                  altp2mIndex: 2))
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v1).view == 2)
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).view == 0)
        #expect(try b.engine.viewInfo(b.d, view: 2).activeVCPUs == 1)

        #expect(rc { try b.engine.destroyView(b.d, view: 2) } == EBUSY)
        #expect(try b.engine.viewInfo(b.d, view: 2).isActive)
        #expect(rc { try b.engine.switchToView(b.d, view: 0) } == OK)
        #expect(try b.engine.viewInfo(b.d, view: 0).activeVCPUs == 2)
        #expect(rc { try b.engine.destroyView(b.d, view: 2) } == OK)
        #expect(try b.engine.viewInfo(b.d, view: 2).isActive == false)
    }

    @Test("S20 switch_p2m to a missing or out-of-range view; to the current view is a no-op", arguments: everyProfile)
    func s20(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(rc { try b.engine.switchToView(b.d, view: 4) } == EINVAL)
        #expect(rc { try b.engine.switchToView(b.d, view: 10) } == EINVAL)
        let generation = try b.engine.generation(of: b.d)
        let view0 = try b.engine.viewInfo(b.d, view: 0)
        #expect(rc { try b.engine.switchToView(b.d, view: 0) } == OK)
        #expect(try b.engine.viewInfo(b.d, view: 0) == view0)
        #expect(view0.activeVCPUs == 2)
        #expect(try b.engine.generation(of: b.d) == generation)
    }

    @Test("S21 get_p2m_idx: vCPU bounds, and every vCPU follows switch_p2m", arguments: everyProfile)
    func s21(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(b.hypercall(.getP2MIndex(b.d, vcpu: 2)).rc == EINVAL)
        #expect(rc { try b.engine.switchToView(b.d, view: 1) } == OK)
        #expect(try b.engine.getVCPUView(b.d, vcpu: v0) == 1)
        #expect(try b.engine.getVCPUView(b.d, vcpu: v1) == 1)
        #expect(try b.engine.viewInfo(b.d, view: 1).activeVCPUs == 2)
        #expect(try b.engine.viewInfo(b.d, view: 0).activeVCPUs == 0)
    }
}
