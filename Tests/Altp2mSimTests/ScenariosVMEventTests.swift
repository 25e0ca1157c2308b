import Altp2m
@testable import Altp2mSim
import Testing

/// Spec §10 G: vm_event.
@Suite("G. vm_event")
struct ScenariosVMEventTests {
    @Test("S58 requests carry ALTERNATE_P2M and the view only while altp2m is active", arguments: everyProfile)
    func s58(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(try b.engine.createView(b.d, defaultAccess: .readWriteExecute) == 2)
        let first = try b.pauseOnSyncEvent(v0)
        try b.engine.respond(b.d, VMEventResponse(answering: first, flags: [.alternateP2M, .vcpuPaused],
                                                  altp2mIndex: 2))
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).view == 2)
        try b.engine.setMemAccess(b.d, view: 2, gfn: G1, access: .read)

        let active = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write)
        guard case .vmEvent(let request, nil) = active else {
            Issue.record("expected a synchronous event, got \(active)")
            return
        }
        #expect(request.flags == [.vcpuPaused, .alternateP2M])
        #expect(request.altp2mIndex == 2)
        #expect(request.memAccess?.flags == [.read, .write], "a write is reported as read and write")
        try b.engine.respond(b.d, VMEventResponse(answering: request, flags: [.vcpuPaused]))
        _ = try b.engine.takeMonitorRequests(b.d)

        try b.engine.setDomainState(b.d, active: false)
        try b.engine.setHostMemAccess(b.d, gfn: G1, access: .read)
        let inactive = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G1, kind: .write)
        guard case .vmEvent(let second, nil) = inactive else {
            Issue.record("expected a synchronous event, got \(inactive)")
            return
        }
        #expect(!second.flags.contains(.alternateP2M))
        #expect(second.flags.contains(.vcpuPaused))
        #expect(second.altp2mIndex == 0)
        #expect(try b.engine.takeMonitorRequests(b.d) == [second])
    }

    /// S59's setup: views 1 and 2, v0 paused by a sync event on view 1.
    static func pausedOnView1(_ xen: XenVersion) throws -> (Baseline, VMEventRequest) {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.switchToView(b.d, view: 1)
        let request = try b.pauseOnSyncEvent(v0)
        #expect(request.altp2mIndex == 1)
        return (b, request)
    }

    @Test("S59 a response switches the paused vCPU; bad indices and stale responses are ignored",
          arguments: everyProfile)
    func s59(xen: XenVersion) throws {
        do {
            let (b, request) = try Self.pausedOnView1(xen)
            try b.engine.respond(b.d, VMEventResponse(answering: request, flags: [.alternateP2M, .vcpuPaused],
                                                      altp2mIndex: 0))
            #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).view == 0)
            #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).pausedByVMEvent == false)
            #expect(try b.engine.vcpuInfo(b.d, vcpu: v1).view == 1)
        }
        for index: ViewID in [7, 0xFFFF] {
            let (b, request) = try Self.pausedOnView1(xen)
            #expect(rc { try b.engine.respond(b.d, VMEventResponse(answering: request,
                                                                   flags: [.alternateP2M, .vcpuPaused],
                                                                   altp2mIndex: index)) } == OK)
            let state = try b.engine.vcpuInfo(b.d, vcpu: v0)
            #expect(state.view == 1)
            #expect(state.pausedByVMEvent == false)   // the unpause still happens
        }
        do {
            let (b, request) = try Self.pausedOnView1(xen)
            try b.engine.respond(b.d, VMEventResponse(answering: request, flags: [.vcpuPaused]))
            // Stale: v0 runs again, so the switch is not acted on.
            try b.engine.respond(b.d, VMEventResponse(answering: request, flags: [.alternateP2M, .vcpuPaused],
                                                      altp2mIndex: 0))
            #expect(try b.engine.vcpuInfo(b.d, vcpu: v0).view == 1)
        }
    }

    @Test("S60 fast single-step: one instruction on the old view, then the new view, no SINGLESTEP event",
          arguments: everyProfile)
    func s60(xen: XenVersion) throws {
        let (b, request) = try ScenariosVMEventTests.pausedOnView1(xen)
        try b.engine.setMonitorOptions(b.d, MonitorOptions(singlestepEvents: true))
        try b.engine.respond(b.d, VMEventResponse(answering: request, flags: [.fastSinglestep, .vcpuPaused],
                                                  fastSinglestepView: 0))
        var state = try b.engine.vcpuInfo(b.d, vcpu: v0)
        #expect(state.singlestep && state.fastSinglestepView == 0 && state.view == 1)

        let step = try b.engine.guestAccess(b.d, vcpu: v0, gfn: G2, kind: .read)
        #expect(step == .lazyCopyThenOK(mfn: try b.hostMFN(G2), view: 1))
        state = try b.engine.vcpuInfo(b.d, vcpu: v0)
        #expect(state.view == 0)
        #expect(state.singlestep == false)
        #expect(state.fastSinglestepView == nil)
        #expect(try b.engine.pendingMonitorRequests(b.d).isEmpty)
        #expect(try b.engine.viewInfo(b.d, view: 1).activeVCPUs == 1)   // v1 only
        // The next instruction is an ordinary one.
        #expect(try b.engine.guestExecute(b.d, vcpu: v0))
        #expect(try b.engine.pendingMonitorRequests(b.d).isEmpty)
    }
}
