import Altp2m
@testable import Altp2mSim
import Testing

/// Spec §10 E: mem_access and lazy population.
@Suite("E. mem_access and lazy population")
struct ScenariosMemAccessTests {
    @Test("S37 get_mem_access reads one p2m with no fallback; index 0 is the host", arguments: everyProfile)
    func s37(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        #expect(try b.engine.createView(b.d, defaultAccess: .readExecute) == 1)
        #expect(rc { try b.engine.getMemAccess(b.d, view: 1, gfn: G1) } == ESRCH)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: .invalid) == .readExecute)
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: G1) == .readWriteExecute)
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: .invalid) == .readWriteExecute)
        let raw = b.hypercall(.getMemAccess(b.d, view: 1, gfn: GFN.invalid.rawValue))
        #expect(raw.rc == OK && raw.op.accessOutput == 5)
    }

    @Test("S39 set_mem_access on a view copies the host page in with sve 1; the host is unchanged",
          arguments: everyProfile)
    func s39(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(rc { try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .none) } == OK)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G1) == MemAccess.none)
        #expect(try b.engine.getSuppressVE(b.d, view: 1, gfn: G1) == true)
        #expect(rc { try b.engine.getMemAccess(b.d, view: 1, gfn: G2) } == ESRCH)
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: G1) == .readWriteExecute)
        #expect(try b.viewEntry(1, G1)?.mfn == b.hostMFN(G1))
    }

    @Test("S40 set_mem_access checks; an unusable gfn is silently skipped", arguments: everyProfile)
    func s40(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(rc { try b.engine.setMemAccess(b.d, view: 4, gfn: G1, access: .read) } == EINVAL)
        #expect(b.hypercall(.setMemAccess(b.d, view: 1, gfn: G1.rawValue, access: 99)).rc == EINVAL)
        #expect(b.hypercall(.setMemAccess(b.d, view: 1, gfn: G1.rawValue, access: 1, pad: 1)).rc == EINVAL)
        #expect(rc { try b.engine.setMemAccess(b.d, view: 1, gfn: H, access: .read) } == OK)
        #expect(rc { try b.engine.getMemAccess(b.d, view: 1, gfn: H) } == ESRCH)
        #expect(try b.engine.viewInfo(b.d, view: 1).entryCount == 0)
    }

    @Test("S43 set_mem_access_multi stops at an invalid access with earlier elements applied",
          arguments: everyProfile)
    func s43(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        var buffers = HypercallBuffers()
        let pfns = buffers.add(words: [G1.rawValue, G2.rawValue, G3.rawValue])
        let accesses = buffers.add([1, 99, 0])
        let multi = HVMAltp2mOp.setMemAccessMulti(b.d, view: 1, count: 3, pfnList: pfns, accessList: accesses)
        #expect(b.hypercall(multi, buffers: buffers).rc == EINVAL)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G1) == .read)
        #expect(rc { try b.engine.getMemAccess(b.d, view: 1, gfn: G3) } == ESRCH)
        let badOpaque = HVMAltp2mOp.setMemAccessMulti(b.d, view: 1, count: 2, pfnList: pfns,
                                                      accessList: accesses, opaque: 5)
        #expect(b.hypercall(badOpaque, buffers: buffers).rc == EINVAL)
        // A list the hypervisor cannot read is a copy fault.
        let unmapped = HVMAltp2mOp.setMemAccessMulti(b.d, view: 1, count: 1, pfnList: 0xDEAD_0000,
                                                     accessList: accesses)
        #expect(b.hypercall(unmapped, buffers: buffers).rc == EFAULT)
    }

    @Test("S44 rx2rw becomes rw on the first write, with no event", arguments: everyProfile)
    func s44(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .readExecuteToReadWrite)
        try b.engine.switchToView(b.d, view: 1)
        let outcome = try b.engine.guestWrite(b.d, vcpu: v0, gfn: G1, offset: 8, bytes: [0xAB, 0xCD])
        #expect(outcome == .relaxed(mfn: try b.hostMFN(G1), view: 1, from: .readExecuteToReadWrite, to: .readWrite))
        #expect(b.engine.memory.read(try b.hostMFN(G1), offset: 8, count: 2) == [0xAB, 0xCD])
        #expect(try b.engine.pendingMonitorRequests(b.d).isEmpty)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G1) == .readWrite)
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: G1) == .readWriteExecute)
    }

    @Test("S45 n2rwx becomes rwx on the first access and sends one asynchronous event", arguments: everyProfile)
    func s45(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .noneToReadWriteExecute)
        try b.engine.switchToView(b.d, view: 1)
        let result = try b.engine.guestRead(b.d, vcpu: v0, gfn: G1, count: 4)
        #expect(result.bytes == [0, 0, 0, 0])
        let requests = try b.engine.takeMonitorRequests(b.d)
        #expect(requests.count == 1)
        let request = try #require(requests.first)
        #expect(result.outcome == .vmEvent(request, completedAt: try b.hostMFN(G1)))
        #expect(request.reason == .memAccess)
        #expect(request.flags.contains(.alternateP2M))
        #expect(!request.flags.contains(.vcpuPaused))
        #expect(request.altp2mIndex == 1)
        #expect(request.vcpu == v0)
        #expect(request.memAccess?.gfn == G1)
        #expect(request.memAccess?.flags.contains(.read) == true)
        #expect(request.memAccess?.flags.contains(.write) == false)
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).pausedByVMEvent == false)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G1) == .readWriteExecute)
        // The conversion is one-shot: the next access sends nothing.
        #expect(try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write) == .ok(mfn: try b.hostMFN(G1), view: 1))
        #expect(try b.engine.pendingMonitorRequests(b.d).isEmpty)
    }

    @Test("S46 with no monitor ring a violation relaxes the entry, or crashes the domain if access is required",
          arguments: everyProfile)
    func s46(xen: XenVersion) throws {
        for required in [false, true] {
            let b = try Baseline(xen: xen, active: true, monitor: false)
            try b.engine.setAccessRequired(b.d, required)
            _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
            try b.engine.setMemAccess(b.d, view: 1, gfn: G1, access: .read)
            try b.engine.switchToView(b.d, view: 1)
            let outcome = try b.engine.guestWrite(b.d, vcpu: v0, gfn: G1, bytes: [0x5A])
            if required {
                #expect(outcome == .domainCrashed)
                #expect(try b.engine.domainStatus(b.d).isCrashed)
                #expect(b.engine.memory.read(try b.hostMFN(G1), offset: 0, count: 1) == [0])
                #expect(try b.engine.guestAccess(b.d, vcpu: v1, gfn: G2, kind: .read) == .domainCrashed)
            } else {
                #expect(outcome == .relaxed(mfn: try b.hostMFN(G1), view: 1, from: .read, to: .readWriteExecute))
                #expect(b.engine.memory.read(try b.hostMFN(G1), offset: 0, count: 1) == [0x5A])
                #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G1) == .readWriteExecute)
                #expect(try b.engine.domainStatus(b.d).isCrashed == false)
            }
        }
    }
}
