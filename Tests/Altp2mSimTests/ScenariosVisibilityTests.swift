import Altp2m
@testable import Altp2mSim
import Testing

/// Spec §10 C: visibility and VMFUNC.
@Suite("C. Visibility and VMFUNC")
struct ScenariosVisibilityTests {
    @Test("S22 an invisible view cannot be switched to; showing it again allows it", arguments: everyProfile)
    func s22(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(rc { try b.engine.setVisibility(b.d, view: 4, visible: true) } == EINVAL)
        #expect(b.hypercall(.setVisibility(b.d, view: 1, visible: 1, pad: 1)).rc == EINVAL)
        #expect(rc { try b.engine.setVisibility(b.d, view: 1, visible: false) } == OK)
        #expect(try b.engine.viewInfo(b.d, view: 1).isVisible == false)
        #expect(rc { try b.engine.switchToView(b.d, view: 1) } == EINVAL)
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).view == 0)
        #expect(rc { try b.engine.setVisibility(b.d, view: 1, visible: true) } == OK)
        #expect(rc { try b.engine.switchToView(b.d, view: 1) } == OK)
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).view == 1)
    }

    @Test("S25 a re-created view is visible by default", arguments: everyProfile)
    func s25(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setVisibility(b.d, view: 1, visible: false)
        #expect(rc { try b.engine.destroyView(b.d, view: 1) } == OK)
        #expect(try b.engine.createView(b.d, defaultAccess: .readWriteExecute) == 1)
        #expect(try b.engine.viewInfo(b.d, view: 1).isVisible)
        #expect(rc { try b.engine.switchToView(b.d, view: 1) } == OK)
    }

    @Test("S26 hardware VMFUNC switches the vCPU with no VM exit; counts follow", arguments: everyProfile)
    func s26(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: INFO)
        #expect(try b.engine.vmfunc(b.d, vcpu: v0, eax: 0, ecx: 1) == .switched(from: 0, to: 1))
        try b.engine.pauseDomain(b.d)
        #expect(try b.engine.getVCPUView(b.d, vcpu: v0) == 1)
        #expect(try b.engine.getVCPUView(b.d, vcpu: v1) == 0)
        #expect(try b.engine.viewInfo(b.d, view: 1).activeVCPUs == 1)
        #expect(try b.engine.viewInfo(b.d, view: 0).activeVCPUs == 1)
    }

    @Test("S27 VMFUNC with a bad leaf, index or view raises #UD and changes nothing", arguments: everyProfile)
    func s27(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.vcpuEnableNotify(b.d, vcpu: v0, gfn: INFO)
        let before = try b.engine.vcpuInfo(b.d, vcpu: v0)
        #expect(try b.engine.vmfunc(b.d, vcpu: v0, eax: 1, ecx: 1) == .invalidOpcode(.vmExit))
        #expect(try b.engine.vmfunc(b.d, vcpu: v0, eax: 0, ecx: 512) == .invalidOpcode(.vmExit))
        #expect(try b.engine.vmfunc(b.d, vcpu: v0, eax: 0, ecx: 3) == .invalidOpcode(.vmExit))
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0) == before)
        #expect(before.view == 0)
        // v1 never had enable_notify: its VM-functions control is off.
        #expect(try b.engine.vmfunc(b.d, vcpu: v1, eax: 0, ecx: 1) == .invalidOpcode(.vmfuncDisabled))
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v1).view == 0)
    }
}
