import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto

@Suite("Channel isolation in the simulator")
struct IsolationTests {
    /// Creates alpha <-> beta with an extra view in each domain made before.
    private func setUp() throws -> (SimWorld, ChannelSummary, [DomainID: ViewID], [String]) {
        let world = try SimWorld()
        let a = try world.addDomain("alpha")
        let b = try world.addDomain("beta")
        try world.grants.allow("alpha", "beta")
        var extra: [DomainID: ViewID] = [:]
        for id in [a.domain, b.domain] {
            try world.engine.setDomainState(id, active: true)
            extra[id] = try world.engine.createView(id, defaultAccess: .default)
        }
        let made = try world.grants.createChannel(ChannelRequest(name: "c1", between: "beta", and: "alpha", pageCount: 5))
        return (world, made.channel, extra, made.warnings)
    }

    @Test("the window is reachable only through each domain's channel view")
    func windowOnlyInChannelView() throws {
        let (world, channel, extra, warnings) = try setUp()
        let engine = world.engine
        #expect(channel.initiator.domainName == "alpha", "the lower id is the initiator")
        #expect(warnings.count == 2 && warnings.allSatisfy { $0.contains("view") })

        for end in [channel.initiator, channel.responder] {
            let id = end.domain
            let window = (0..<channel.pageCount).map { end.windowFirstGFN.advanced(by: $0) }
            let later = try engine.createView(id, defaultAccess: .default)
            for (index, gfn) in window.enumerated() {
                // The channel view maps the window onto the shared frame, rw.
                let mapped = try #require(try engine.entry(id, .view(end.view), gfn: gfn))
                let backing = try #require(try engine.entry(id, .host, gfn: end.backingGFNs[index]))
                #expect(mapped.mfn == backing.mfn)
                #expect(mapped.access == .readWrite)
            }
            for gfn in window + end.backingGFNs {
                // View 0's table (not the host p2m) denies it: on 4.17 its
                // lazy copy takes the host entry's n.
                #expect(try engine.translate(id, view: .hostOrView0, gfn: gfn)?.access == MemAccess.none, "view 0 table \(gfn)")
                #expect(try engine.translate(id, view: extra[id]!, gfn: gfn)?.access == MemAccess.none)
                #expect(try engine.translate(id, view: later, gfn: gfn)?.access == MemAccess.none, "a view made later")
                #expect(try engine.entry(id, .view(extra[id]!), gfn: gfn)?.suppressVE == false)
            }
            // #VE and VMFUNC are on for every vCPU, each with its own info page.
            let pages = try (0..<2).map { try engine.vcpuInfo(id, vcpu: VCPUID($0)) }
            #expect(pages.allSatisfy { $0.vmfuncEnabled && $0.notifyGFN != nil })
            #expect(Set(pages.compactMap(\.notifyGFN)).count == 2)
            #expect(try engine.domainStatus(id).accessRequired)
            try engine.destroyView(id, view: later)
        }
        // The two windows show the same frames.
        for index in 0..<channel.pageCount {
            let a = try engine.entry(channel.initiator.domain, .host, gfn: channel.initiator.backingGFNs[index])?.mfn
            let b = try engine.entry(channel.responder.domain, .host, gfn: channel.responder.backingGFNs[index])?.mfn
            #expect(a != nil && a == b)
        }
    }

    @Test("agents reach the window with VMFUNC and see each other's bytes")
    func vmfuncAndSharedBytes() throws {
        let (world, channel, extra, _) = try setUp()
        let engine = world.engine
        let a = channel.initiator, b = channel.responder
        let v0 = VCPUID(0)

        #expect(try engine.vmfunc(a.domain, vcpu: v0, eax: 0, ecx: UInt32(a.view.rawValue)) == .switched(from: 0, to: a.view))
        let message: [UInt8] = Array("hello from alpha".utf8)
        let wrote = try engine.guestWrite(a.domain, vcpu: v0, gfn: a.windowFirstGFN.advanced(by: 1), offset: 100, bytes: message)
        #expect(wrote.completedMFN != nil)
        #expect(try engine.vmfunc(a.domain, vcpu: v0, eax: 0, ecx: 0) == .switched(from: a.view, to: 0))

        #expect(try engine.vmfunc(b.domain, vcpu: v0, eax: 0, ecx: UInt32(b.view.rawValue)) == .switched(from: 0, to: b.view))
        let read = try engine.guestRead(b.domain, vcpu: v0, gfn: b.windowFirstGFN.advanced(by: 1), offset: 100, count: message.count)
        #expect(read.bytes == message)
        // The host wrote the control page header into the first frame.
        let header = try engine.guestRead(b.domain, vcpu: v0, gfn: b.windowFirstGFN, offset: 0, count: 8)
        #expect(header.bytes == Array("SCHANRNG".utf8))
        #expect(try engine.vmfunc(b.domain, vcpu: v0, eax: 0, ecx: 0) == .switched(from: b.view, to: 0))

        // VMFUNC reaches nothing that is not a visible view.
        let hidden = try engine.createView(a.domain, defaultAccess: .default)
        try engine.setVisibility(a.domain, view: hidden, visible: false)
        let visible = Set(try world.host.activeViews(a.domain).filter { $0.isVisible == true }.map(\.view.rawValue))
        for ecx in UInt32(0)..<16 where !visible.contains(UInt16(ecx)) {
            #expect(try engine.vmfunc(a.domain, vcpu: v0, eax: 0, ecx: ecx) == .invalidOpcode(.vmExit), "ecx \(ecx)")
        }
        #expect(try engine.vmfunc(a.domain, vcpu: v0, eax: 0, ecx: 512) == .invalidOpcode(.vmExit))
        #expect(try engine.vmfunc(a.domain, vcpu: v0, eax: 1, ecx: UInt32(a.view.rawValue)) == .invalidOpcode(.vmExit))
        #expect(try engine.getVCPUView(a.domain, vcpu: v0) == 0)

        // A stray access from another view is a #VE in the guest, never a success.
        #expect(try engine.vmfunc(a.domain, vcpu: v0, eax: 0, ecx: UInt32(extra[a.domain]!.rawValue)) != .invalidOpcode(.vmExit))
        let stray = try engine.guestRead(a.domain, vcpu: v0, gfn: a.windowFirstGFN.advanced(by: 1), offset: 100, count: 4)
        guard case .virtualizationException = stray.outcome else {
            Issue.record("expected #VE, got \(stray.outcome)")
            return
        }
        #expect(stray.bytes == nil)
        _ = try engine.vmfunc(a.domain, vcpu: v0, eax: 0, ecx: 0)

        // From view 0: a vm_event to the monitor ...
        try engine.enableMonitor(a.domain)
        let v1 = VCPUID(1)
        let fromView0 = try engine.guestRead(a.domain, vcpu: v1, gfn: a.windowFirstGFN.advanced(by: 1), offset: 100, count: 4)
        guard case .vmEvent(let request, completedAt: nil) = fromView0.outcome else {
            Issue.record("expected a synchronous vm_event, got \(fromView0.outcome)")
            return
        }
        #expect(request.altp2mIndex == 0)
        let backing = try engine.guestRead(a.domain, vcpu: v0, gfn: a.backingGFNs[1], offset: 100, count: 4)
        #expect(backing.bytes == nil, "the backing gfn is denied in view 0 too")
        try engine.disableMonitor(a.domain)
        // ... and with no monitor, access_required crashes the domain rather
        // than relaxing the entry.
        let b1 = try engine.guestRead(b.domain, vcpu: v1, gfn: b.windowFirstGFN, offset: 0, count: 4)
        #expect(b1.outcome == .domainCrashed)
    }

    @Test("descriptors are readable only by their domain; destroy scrubs and removes everything")
    func publicationAndDestroy() throws {
        let (world, channel, extra, _) = try setUp()
        let a = channel.initiator, b = channel.responder
        let envelope = try world.host.readDescriptor(for: a.domain, name: "c1", as: a.domain)
        #expect(!envelope.isEmpty)
        #expect(throws: XenErrno.notPermitted) { try world.host.readDescriptor(for: a.domain, name: "c1", as: b.domain) }
        #expect(world.host.descriptorNames(for: b.domain) == ["c1"])

        // Put something secret in the ring, then destroy.
        let mfn = try #require(try world.engine.entry(a.domain, .host, gfn: a.backingGFNs[2])?.mfn)
        world.engine.memory.write(mfn, offset: 0, bytes: [UInt8](repeating: 0xAB, count: 64))
        let framesBefore = world.engine.frameCounts
        let report = try world.grants.destroyChannel("c1")
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(world.engine.memory.read(mfn, offset: 0, count: 64) == [UInt8](repeating: 0, count: 64))
        #expect(world.engine.frameCounts.free == framesBefore.free + 2 * (5 + 5 + 2) - 5,
                "5 shared frames, two windows of 5, two #VE pages per domain")
        #expect(world.host.storeEntries.isEmpty)
        for end in [a, b] {
            #expect(try !world.engine.viewInfo(end.domain, view: end.view).isActive)
            #expect(try world.engine.viewInfo(end.domain, view: extra[end.domain]!).isActive, "another's view is left alone")
            #expect(try world.engine.getDomainState(end.domain), "altp2m was active before the grant module came")
            #expect(try !world.engine.domainStatus(end.domain).accessRequired)
            for vcpu in 0..<2 { #expect(try world.engine.vcpuInfo(end.domain, vcpu: VCPUID(UInt32(vcpu))).notifyGFN == nil) }
        }
        #expect(world.grants.listChannels().isEmpty)
    }

    @Test("a domain's channels share its one channel view")
    func oneViewPerDomain() throws {
        let world = try SimWorld()
        try world.addDomain("a")
        try world.addDomain("b")
        try world.addDomain("c")
        try world.grants.allow("a", "b")
        try world.grants.allow("a", "c")
        let ab = try world.grants.createChannel(ChannelRequest(name: "ab", between: "a", and: "b", pageCount: 3)).channel
        let ac = try world.grants.createChannel(ChannelRequest(name: "ac", between: "a", and: "c", pageCount: 2)).channel
        #expect(ab.initiator.view == ac.initiator.view)
        #expect(try world.host.activeViews(ab.initiator.domain).count == 2)
        // Destroying one re-applies the other (the backing drop reset the view).
        try world.grants.destroyChannel("ab")
        let details = try world.grants.showChannel("ac")
        #expect(details.state == .active, "\(details.state)")
        let a = ac.initiator
        _ = try world.engine.vmfunc(a.domain, vcpu: 0, eax: 0, ecx: UInt32(a.view.rawValue))
        #expect(try world.engine.guestWrite(a.domain, vcpu: 0, gfn: a.windowFirstGFN.advanced(by: 1), bytes: [1, 2, 3]).completedMFN != nil)
        #expect(try world.engine.domainStatus(a.domain).pauseCount == 0)
    }

    @Test("a dying domain's peer is told through the control page")
    func domainDeath() throws {
        let world = try SimWorld()
        try world.addDomain("a")
        let b = try world.addDomain("b")
        try world.grants.allow("a", "b")
        let channel = try world.grants.createChannel(ChannelRequest(name: "ab", between: "a", and: "b", pageCount: 2)).channel
        // Watch the teardown through a host that records writes (the frames
        // are scrubbed at the end, so memory alone cannot show the order).
        world.grants = nil
        let recorder = FaultInjectingHost(world.host)
        let watched = try world.makeGrants(host: recorder)
        try world.engine.destroyDomain(b.domain)
        let reports = try watched.domainDied(b.domain)
        #expect(reports.map(\.name) == ["ab"])
        let first = channel.initiator.backingGFNs[0]
        let hostLine = recorder.writes.filter { $0.gfn == first && $0.offset >= 0x1C0 && $0.offset < 0x1C8 }
        #expect(hostLine.map(\.offset) == [0x1C4, 0x1C0], "reason first, then closed")
        #expect(hostLine.map(\.bytes) == [[2, 0, 0, 0], [1, 0, 0, 0]], "closed = 1, reason = responder died")
        let scrubs = recorder.writes.filter { $0.offset == 0 && $0.bytes.count == 4096 && $0.bytes.allSatisfy { $0 == 0 } }
        #expect(scrubs.count == channel.pageCount)
        #expect(recorder.calls.contains("wake"))
        #expect(try world.engine.entry(channel.initiator.domain, .host, gfn: first) == nil, "the backing gfn is released")
        #expect(watched.listChannels().isEmpty)
        #expect(try !world.engine.viewInfo(channel.initiator.domain, view: channel.initiator.view).isActive)
        #expect(world.host.storeEntries.isEmpty)
    }

    @Test("Xen 4.19 semantics: lazy copy takes the view default, so view 0's table is pinned")
    func xen419() throws {
        let world = try SimWorld(hostProfile: HostProfile(xen: .v4_19))
        try world.addDomain("a")
        try world.addDomain("b")
        try world.grants.allow("a", "b")
        let one = try world.grants.createChannel(ChannelRequest(name: "one", between: "a", and: "b", pageCount: 3)).channel
        let two = try world.grants.createChannel(ChannelRequest(name: "two", between: "a", and: "b", pageCount: 2)).channel
        for channel in [one, two] {
            for end in [channel.initiator, channel.responder] {
                let later = try world.engine.createView(end.domain, defaultAccess: .default)
                for offset in 0..<channel.pageCount {
                    let gfn = end.windowFirstGFN.advanced(by: offset)
                    #expect(try world.engine.entry(end.domain, .view(0), gfn: gfn)?.access == MemAccess.none, "pinned")
                    // A view made after the channel copies its own default: the
                    // lock-out cannot reach it until the next re-application.
                    #expect(try world.engine.translate(end.domain, view: later, gfn: gfn)?.access == .readWriteExecute)
                }
                try world.engine.destroyView(end.domain, view: later)
            }
        }
        // The view made later is reported, and a repair locks it out too.
        let late = try world.engine.createView(one.initiator.domain, defaultAccess: .default)
        guard case .degraded(let problems) = try world.grants.showChannel("one").state else {
            Issue.record("a view that can read the window is not reported")
            return
        }
        #expect(problems.contains { $0.contains("view \(late.rawValue)") })
        #expect(try world.grants.repairChannel("one").isEmpty)
        #expect(try world.grants.showChannel("one").state == .active)
        #expect(try world.engine.translate(one.initiator.domain, view: late, gfn: one.initiator.windowFirstGFN)?.access == MemAccess.none)
        try world.engine.destroyView(one.initiator.domain, view: late)

        // Destroying one drops backing gfns inside two views' remapped
        // ranges (the channel view and view 0): every view is reset, and the
        // other channel must be re-applied everywhere.
        let report = try world.grants.destroyChannel("one")
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(try world.grants.showChannel("two").state == .active)
        let end = two.initiator
        #expect(try world.engine.entry(end.domain, .view(0), gfn: end.windowFirstGFN)?.access == MemAccess.none)
        try world.grants.destroyChannel("two")
        #expect(try !world.engine.getDomainState(end.domain))
    }
}
