import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim

/// Log-dirty mode (live migration, VRAM tracking) undoes a lock-out on Xen:
/// a write fault there runs `p2m_change_type_one`, which gives the gfn the
/// host default access in every view. The grant module refuses such a
/// domain, and reports a channel whose domain entered it.
@Suite("Log-dirty mode")
struct LogDirtyTests {
    private let noPML = HostProfile(cpu: CPUProfile(name: "intel-no-pml", hasEPT: true, hasVMFUNC: true, hasVE: true,
                                                    hasMTF: true, hasPML: false))

    private func world(_ profile: HostProfile = .default) throws -> SimWorld {
        let world = try SimWorld(hostProfile: profile)
        try world.addDomain("alpha")
        try world.addDomain("beta")
        try world.grants.allow("alpha", "beta")
        return world
    }

    @Test("channel create refuses a domain in log-dirty mode and changes nothing")
    func refused() throws {
        let world = try world()
        let beta = try #require(world.agents["beta"]).domain
        try world.engine.enableLogDirty(beta)
        let before = try SimSnapshot(world)
        do {
            try world.grants.createChannel(ChannelRequest(name: "c", between: "alpha", and: "beta", pageCount: 2))
            Issue.record("a domain in log-dirty mode was accepted")
        } catch {
            #expect(error.failedStep == .policy)
            #expect(error.cause == .invalidRequest)
            #expect(error.detail.contains("log-dirty"), "\(error.detail)")
        }
        let after = try SimSnapshot(world)
        #expect(after == before, "\(after.difference(from: before))")
        try world.engine.disableLogDirty(beta)
        try world.grants.createChannel(ChannelRequest(name: "c", between: "alpha", and: "beta", pageCount: 2))
    }

    @Test("channel show reports a channel whose domain entered log-dirty mode as degraded, and why it matters")
    func degraded() throws {
        let world = try world(noPML)
        let channel = try world.grants.createChannel(ChannelRequest(name: "c", between: "alpha", and: "beta",
                                                                    pageCount: 2)).channel
        #expect(try world.grants.showChannel("c").state == .active)
        let end = channel.initiator
        try world.engine.enableLogDirty(end.domain)
        guard case .degraded(let problems) = try world.grants.showChannel("c").state else {
            Issue.record("log-dirty mode is not reported")
            return
        }
        #expect(problems.contains { $0.contains("log-dirty") })
        // What it warns of, without PML: the agent's own write in its channel
        // view faults on the log-dirty type, and Xen resets the window gfn
        // to the default access in every view, the channel view's remap too.
        let v0 = VCPUID(0)
        _ = try world.engine.vmfunc(end.domain, vcpu: v0, eax: 0, ecx: UInt32(end.view.rawValue))
        _ = try world.engine.guestWrite(end.domain, vcpu: v0, gfn: end.windowFirstGFN, offset: 64, bytes: [1])
        #expect(try world.engine.getMemAccess(end.domain, view: .hostOrView0, gfn: end.windowFirstGFN)
                == .readWriteExecute)
        let shared = try world.engine.entry(end.domain, .host, gfn: end.backingGFNs[0])?.mfn
        #expect(try world.engine.entry(end.domain, .view(end.view), gfn: end.windowFirstGFN)?.mfn != shared)
    }
}
