import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto

/// Each step of the lock-out (docs/GRANT.md, "What a creation does", 4.1-4.5)
/// checked on its own, where the simulator would otherwise hide its absence:
/// on Xen 4.17 a view without an entry copies the host's `n` on first use,
/// and clearing suppress-#VE on such a view copies the host entry in, so the
/// final state alone cannot tell whether a view got its own `n` entries.
@Suite("Lock-out steps, each on its own")
struct LockoutStepTests {
    /// Every view table of a domain (index → entries by gfn) at one moment.
    typealias Tables = [Int: [GFN: ViewTableEntry]]

    /// alpha and beta, allowed, each with a view someone else made before
    /// the channel; the grant module runs over a recording host.
    private func world(_ profile: HostProfile) throws -> (SimWorld, FaultInjectingHost, GrantModule, [DomainID: ViewID]) {
        let world = try SimWorld(hostProfile: profile)
        try world.addDomain("alpha")
        try world.addDomain("beta")
        try world.grants.allow("alpha", "beta")
        var before: [DomainID: ViewID] = [:]
        for agent in world.agents.values {
            try world.engine.setDomainState(agent.domain, active: true)
            before[agent.domain] = try world.engine.createView(agent.domain, defaultAccess: .default)
        }
        world.grants = nil
        let recorder = FaultInjectingHost(world.host)
        return (world, recorder, try world.makeGrants(host: recorder), before)
    }

    private func tables(_ engine: Altp2mEngine, _ domain: DomainID) throws -> Tables {
        var result: Tables = [:]
        for index in 0..<(try engine.domainStatus(domain).viewCount) {
            let entries = try engine.entries(domain, .view(ViewID(UInt16(index))))
            result[index] = Dictionary(uniqueKeysWithValues: entries.map { ($0.gfn, $0) })
        }
        return result
    }

    private func gfns(_ end: ChannelEndInfo, _ pageCount: Int) -> (window: [GFN], backing: [GFN]) {
        ((0..<pageCount).map { end.windowFirstGFN.advanced(by: $0) }, end.backingGFNs)
    }

    @Test("before any suppress-#VE change, the host p2m, every other view and the channel view's backing gfns deny the window",
          arguments: [XenVersion.v4_17, .v4_19])
    func ownEntriesBeforeSuppressVE(xen: XenVersion) throws {
        let (world, recorder, grants, before) = try world(HostProfile(xen: xen))
        let engine = world.engine
        // A domain's first suppress-#VE call is the moment its step 5
        // starts: everything before it must already stand without the
        // entries that clearing suppress-#VE copies in.
        var atFirstSuppressVE: [DomainID: (host: [ViewTableEntry], views: Tables)] = [:]
        recorder.beforeSuppressVEMulti = { id, _ in
            guard atFirstSuppressVE[id] == nil else { return }
            atFirstSuppressVE[id] = ((try? engine.entries(id, .host)) ?? [], (try? tables(engine, id)) ?? [:])
        }
        let channel = try grants.createChannel(ChannelRequest(name: "c", between: "alpha", and: "beta", pageCount: 4)).channel

        for end in [channel.initiator, channel.responder] {
            let id = end.domain
            let (window, backing) = gfns(end, channel.pageCount)
            let (host, views) = try #require(atFirstSuppressVE[id], "\(id): suppress-#VE was never cleared (calls: \(recorder.calls))")
            let hostEntries = Dictionary(uniqueKeysWithValues: host.map { ($0.gfn, $0) })
            let extra = Int(before[id]!.rawValue), channelView = Int(end.view.rawValue)
            for gfn in window + backing {
                #expect(hostEntries[gfn]?.access == MemAccess.none, "step 1: host p2m of \(id) at \(gfn): \(String(describing: hostEntries[gfn]))")
                #expect(views[extra]?[gfn]?.access == MemAccess.none,
                        "step 2: the view made before (\(before[id]!)) of \(id) has its own n at \(gfn): \(String(describing: views[extra]?[gfn]))")
                if xen.lazyCopyUsesViewDefault {
                    #expect(views[0]?[gfn]?.access == MemAccess.none,
                            "step 3: view 0's table of \(id) is pinned at \(gfn): \(String(describing: views[0]?[gfn]))")
                }
            }
            for gfn in backing {
                #expect(views[channelView]?[gfn]?.access == MemAccess.none,
                        "step 4: the channel \(end.view) of \(id) has its own n at backing \(gfn): \(String(describing: views[channelView]?[gfn]))")
            }
            for (gfn, target) in zip(window, backing) {
                let mapped = views[channelView]?[gfn]
                #expect(mapped?.access == .readWrite && mapped?.mfn == hostEntries[target]?.mfn,
                        "step 4: window \(gfn) of \(id) is remapped rw: \(String(describing: mapped))")
            }

            // Step 5: a stray access from the other view, or to a backing gfn
            // in the channel view, is a #VE in the guest.
            for gfn in window + backing {
                #expect(try engine.entry(id, .view(before[id]!), gfn: gfn)?.suppressVE == false,
                        "step 5: suppress-#VE cleared in \(before[id]!) of \(id) at \(gfn)")
            }
            for gfn in backing {
                #expect(try engine.entry(id, .view(end.view), gfn: gfn)?.suppressVE == false,
                        "step 5: suppress-#VE cleared in the channel \(end.view) of \(id) at backing \(gfn)")
            }
        }
    }

    @Test("where set_suppress_ve_multi creates no entries (ESRCH for each gfn), creation succeeds and every view's own entries deny",
          arguments: [XenVersion.v4_17, .v4_19])
    func suppressVECreatesNothing(xen: XenVersion) throws {
        let (world, recorder, grants, before) = try world(HostProfile(xen: xen))
        let engine = world.engine
        recorder.suppressVEMultiChangesNothing = .notFound
        let made = try grants.createChannel(ChannelRequest(name: "c", between: "alpha", and: "beta", pageCount: 4))
        #expect(recorder.calls.contains("setSuppressVEMulti"))
        let channel = made.channel
        for end in [channel.initiator, channel.responder] {
            let id = end.domain
            let (window, backing) = gfns(end, channel.pageCount)
            for gfn in window + backing {
                #expect(try engine.entry(id, .host, gfn: gfn)?.access == MemAccess.none, "host p2m of \(id) at \(gfn)")
                let own = try engine.entry(id, .view(before[id]!), gfn: gfn)
                #expect(own?.access == MemAccess.none, "\(before[id]!) of \(id) holds its own n at \(gfn): \(String(describing: own))")
                #expect(try engine.translate(id, view: before[id]!, gfn: gfn)?.access == MemAccess.none)
                #expect(try engine.translate(id, view: .hostOrView0, gfn: gfn)?.access == MemAccess.none, "view 0 at \(gfn)")
            }
            for gfn in backing {
                let own = try engine.entry(id, .view(end.view), gfn: gfn)
                #expect(own?.access == MemAccess.none, "the channel \(end.view) of \(id) holds its own n at backing \(gfn): \(String(describing: own))")
            }
            for gfn in window {
                #expect(try engine.entry(id, .view(end.view), gfn: gfn)?.access == .readWrite, "window \(gfn) of \(id)")
            }
        }
        #expect(try grants.showChannel("c").state == .active)
    }

    @Test("a lock-out the hypervisor reported done but did not apply fails the read-back")
    func lostChangeFailsReadBack() throws {
        let (world, recorder, grants, _) = try world(.default)
        // The first access change of a creation is the host p2m's n (step 1).
        recorder.ignoring = ["setMemAccessMulti"]
        do {
            try grants.createChannel(ChannelRequest(name: "c", between: "alpha", and: "beta", pageCount: 4))
            Issue.record("a creation whose host p2m kept the window's access succeeded")
        } catch {
            #expect(error.failedStep == .lockOut && error.cause == .verification, "\(error)")
            #expect(error.detail.contains("host p2m"), "\(error)")
        }
        #expect(recorder.ignoring.isEmpty, "the host step was not the first access change: \(recorder.calls)")
        #expect(grants.listChannels().isEmpty && world.host.storeEntries.isEmpty)
    }
}
