import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim

/// `access_required` is a flag of each p2m on Xen, not of the domain: the
/// grant module must set it while altp2m is active and clear it before
/// deactivating (docs/GRANT.md, "Why access_required").
@Suite("access_required per p2m")
struct AccessRequiredTests {
    /// What happened to a domain before `channel create`.
    enum Before: String, CaseIterable, CustomStringConvertible {
        /// Nothing: the grant module activates altp2m.
        case untouched
        /// Someone set access_required while altp2m was inactive: the host
        /// p2m has it, and the views would never get it.
        case flagSetWhileInactive
        /// Someone activated altp2m and made a view of their own first.
        case activatedBySomeoneElse
        /// Both: the flag set while inactive, then altp2m activated.
        case flagThenActivation

        var description: String { rawValue }
    }

    /// Two domains with a channel; `stray` is an extra view in each when
    /// someone else activated altp2m, else nil.
    private func world(_ before: Before) throws -> (SimWorld, ChannelSummary, [DomainID: ViewID]) {
        let world = try SimWorld()
        var extra: [DomainID: ViewID] = [:]
        for name in ["alpha", "beta"] {
            let id = try world.addDomain(name).domain
            if before == .flagSetWhileInactive || before == .flagThenActivation {
                try world.engine.setAccessRequired(id, true)
            }
            if before == .activatedBySomeoneElse || before == .flagThenActivation {
                try world.engine.setDomainState(id, active: true)
                extra[id] = try world.engine.createView(id, defaultAccess: .default)
            }
        }
        try world.grants.allow("alpha", "beta")
        let channel = try world.grants.createChannel(ChannelRequest(name: "c", between: "alpha", and: "beta",
                                                                    pageCount: 3)).channel
        return (world, channel, extra)
    }

    @Test("a stray access from every view of both domains crashes the domain right after channel create",
          arguments: Before.allCases)
    func strayAccessCrashes(before: Before) throws {
        // One fresh world per access: the first crash ends the domain.
        let probe = try world(before)
        for end in [probe.1.initiator, probe.1.responder] {
            var views: [ViewID] = [.hostOrView0, end.view]
            if let extra = probe.2[end.domain] { views.append(extra) }
            for view in views {
                let (world, channel, _) = try world(before)
                let side = channel.initiator.domain == end.domain ? channel.initiator : channel.responder
                // In the channel view the window is the channel; its backing gfns are not.
                let gfn = view == side.view ? side.backingGFNs[1] : side.windowFirstGFN.advanced(by: 1)
                let vcpu = VCPUID(0)
                if view != .hostOrView0 {
                    #expect(try world.engine.vmfunc(side.domain, vcpu: vcpu, eax: 0, ecx: UInt32(view.rawValue))
                            == .switched(from: 0, to: view))
                }
                // A first access may be a #VE in the guest (sve 0, semaphore
                // clear); the guest not re-arming it, the next exits to Xen.
                var outcome = try world.engine.guestAccess(side.domain, vcpu: vcpu, gfn: gfn, kind: .read)
                if case .virtualizationException = outcome {
                    outcome = try world.engine.guestAccess(side.domain, vcpu: vcpu, gfn: gfn, kind: .read)
                }
                #expect(outcome == .domainCrashed, "\(before): \(side.domainName) \(view) \(gfn): \(outcome)")
            }
        }
    }

    @Test("after the last channel goes, no view keeps access_required")
    func teardownClearsBeforeDeactivating() throws {
        let (world, _, _) = try world(.untouched)
        let report = try world.grants.destroyChannel("c")
        #expect(report.problems.isEmpty, "\(report.problems)")
        for name in ["alpha", "beta"] {
            let id = try #require(world.engine.domainList().first { $0.name == name }).id
            #expect(try !world.engine.getDomainState(id), "the grant module deactivated what it activated")
            // Someone activates altp2m later, with no monitor ring: a
            // violation is relaxed, as on a domain that never had a channel.
            try world.engine.setDomainState(id, active: true)
            let view = try world.engine.createView(id, defaultAccess: .readWriteExecute)
            try world.engine.setMemAccess(id, view: view, gfn: GFN(0x10), access: .read)
            try world.engine.switchToView(id, view: view)
            let outcome = try world.engine.guestAccess(id, vcpu: 0, gfn: GFN(0x10), kind: .write)
            guard case .relaxed = outcome else {
                Issue.record("\(name): a view kept access_required after the teardown: \(outcome)")
                continue
            }
        }
    }
}
