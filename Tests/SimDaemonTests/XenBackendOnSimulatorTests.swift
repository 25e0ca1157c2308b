import Altp2m
import Altp2mSim
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import XenBackend
@testable import XenGuest
import XenInterface

/// The Xen backend's own code (`XenControl`, `XenGuestPlatform`) over the
/// simulator's implementation of the Xen libraries: what it writes through
/// one library the other side reads through another, as on a Xen host.
@Suite("Xen backend on the simulator's Xen libraries", .serialized)
struct XenBackendOnSimulatorTests {
    static func control(_ sim: ChanctlHarness) throws -> XenControl {
        let directory = StateDirectory(path: sim.stateDir)
        return try XenControl(libraries: XenHostLibraries(
            control: try SimXenControlLibrary(stateDirectory: directory),
            store: try SimXenStoreLibrary(stateDirectory: directory),
            foreignMemory: try SimForeignMemoryLibrary(stateDirectory: directory)))
    }

    static func guest(_ sim: ChanctlHarness, _ name: String) throws -> XenGuestPlatform {
        try XenGuestPlatform(libraries: try .simulator(domain: name, stateDirectory: sim.stateDir))
    }

    @Test("XenControl publishes a descriptor in xenstore that only its domain's XenGuestPlatform reads")
    func descriptorsThroughXenstore() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1", "--altp2m", "external")
            sim.ok("domain", "create", "beta", "--memory-mib", "1", "--altp2m", "external")
            let control = try Self.control(sim)
            let domains = try control.listDomains()
            let alpha = try #require(domains.first { $0.name == "alpha" }).id
            let beta = try #require(domains.first { $0.name == "beta" }).id
            let envelope = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try control.publishDescriptor(envelope, for: alpha, name: "chan-1")

            let alphaGuest = try Self.guest(sim, "alpha")
            #expect(alphaGuest.domain == alpha, "the guest read its own domid from xenstore")
            #expect(try alphaGuest.descriptorNames() == ["chan-1"])
            #expect(try alphaGuest.readDescriptor(named: "chan-1") == envelope)

            // beta has no descriptor, and alpha's node is not readable by it
            // (owner dom0, read for alpha only: xenstored's perm_for_conn).
            let betaGuest = try Self.guest(sim, "beta")
            #expect(try betaGuest.descriptorNames().isEmpty)
            let betaStore = try SimXenStoreLibrary(stateDirectory: StateDirectory(path: sim.stateDir),
                                                   token: EventChannelTests.token(sim, "beta"))
            #expect(throws: XenErrno.accessDenied) {
                try betaStore.read(XenStoreLayout.descriptorDirectory(alpha) + "/chan-1", transaction: 0)
            }
            _ = beta

            try control.revokeDescriptor(for: alpha, name: "chan-1")
            #expect(try alphaGuest.descriptorNames().isEmpty)
            #expect(throws: GuestPlatformError.self) { try alphaGuest.readDescriptor(named: "chan-1") }
        }
    }

    @Test("XenGuestPlatform's event channels, a handle per channel: the initiator uses the port its frame-flow agent bound, the responder binds to it at open and unbinds at close; notify wakes the other side's wait, which never reads the window")
    func eventChannelsBetweenGuests() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1", "--altp2m", "external")
            sim.ok("domain", "create", "beta", "--memory-mib", "1", "--altp2m", "external")
            let alphaLibraries = try XenGuestLibraries.simulator(domain: "alpha", stateDirectory: sim.stateDir)
            let alpha = try XenGuestPlatform(libraries: alphaLibraries)
            let beta = try Self.guest(sim, "beta")
            let otherBeta = try Self.guest(sim, "beta")

            // What alpha's frame-flow agent does when it shares the pages: an
            // unbound port for beta, in a handle of its own.
            let agentEvents = try alphaLibraries.openEventChannel()
            let port = try agentEvents.bindUnboundPort(remote: beta.domain)
            #expect(throws: GuestPlatformError.self, "a port no agent of this process bound is refused") {
                try alpha.openNotifications(port: port, peer: beta.domain, isInitiator: true)
            }
            XenNotificationPorts.shared.register(agentEvents, domain: alpha.domain, port: port)
            defer { XenNotificationPorts.shared.remove(agentEvents, domain: alpha.domain, port: port) }
            let alphaPort = try alpha.openNotifications(port: port, peer: beta.domain, isInitiator: true)
            #expect(alphaPort == port)
            let betaPort = try beta.openNotifications(port: port, peer: alpha.domain, isInitiator: false)
            #expect(throws: GuestPlatformError.self, "the port is taken: a second responder cannot bind it") {
                try otherBeta.openNotifications(port: port, peer: alpha.domain, isInitiator: false)
            }

            // The wake word is in the window, which view 0 does not map: a
            // wait must not read it. An inaccessible page stands for it.
            let page = try #require(mmap(nil, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
            #expect(page != MAP_FAILED)
            defer { munmap(page, 4096) }
            let word = page.assumingMemoryBound(to: UInt32.self)
            let alphaTarget = WakeTarget(word: word, port: alphaPort)
            let betaTarget = WakeTarget(word: word, port: betaPort)
            // Each descriptor-directory watch fires once when it is set.
            alpha.wait(alphaTarget, expected: 1, timeoutNanoseconds: 1_000_000_000)
            beta.wait(betaTarget, expected: 1, timeoutNanoseconds: 1_000_000_000)
            // Without a notification a wait runs out its timeout.
            var start = Date()
            alpha.wait(alphaTarget, expected: 1, timeoutNanoseconds: 300_000_000)
            #expect(Date().timeIntervalSince(start) >= 0.25, "nothing fired, so the wait lasted its timeout")
            // A notify sent before the wait is not lost: the port stays pending.
            beta.notify(betaTarget)
            start = Date()
            alpha.wait(alphaTarget, expected: 1, timeoutNanoseconds: 5_000_000_000)
            #expect(Date().timeIntervalSince(start) < 2, "beta's notification woke alpha")
            alpha.notify(alphaTarget)
            start = Date()
            beta.wait(betaTarget, expected: 1, timeoutNanoseconds: 5_000_000_000)
            #expect(Date().timeIntervalSince(start) < 2, "alpha's notification woke beta")

            // Closing the responder's end leaves alpha's port unbound and
            // waiting for beta again (evtchn_close): another process binds it.
            beta.closeNotifications(port: betaPort)
            let again = try otherBeta.openNotifications(port: port, peer: alpha.domain, isInitiator: false)
            otherBeta.closeNotifications(port: again)
            alpha.closeNotifications(port: alphaPort)
        }
    }

    @Test("channel create --backend xen-sim with no agent running: progress on stderr names the agent it waits for; the failure names it and the fix; a bad --agent-timeout is a usage error")
    func frameFlowNamesTheSilentAgent() throws {
        try withSimulator { sim in
            GrantCommandTests.twoDomains(sim)
            sim.ok("keys", "register", "alpha", GrantCommandTests.keyA, "--backend", "xen-sim")
            sim.ok("keys", "register", "beta", GrantCommandTests.keyB, "--backend", "xen-sim")
            sim.ok("policy", "allow", "alpha", "beta", "--backend", "xen-sim")
            let bad = sim.run(["channel", "create", "c1", "--between", "alpha", "beta", "--backend", "xen-sim",
                               "--agent-timeout", "0"])
            #expect(bad.status == 2, "\(bad.stdout) \(bad.stderr)")

            let start = Date()
            let result = sim.run(["channel", "create", "c1", "--between", "alpha", "beta", "--pages", "8",
                                  "--backend", "xen-sim", "--agent-timeout", "5"])
            let took = Date().timeIntervalSince(start)
            #expect(result.status != 0)
            #expect(took >= 4.5 && took < 30, "the wait lasts --agent-timeout: \(took) s")
            let lines = result.stderr.split(separator: "\n").map(String.init)
            let progress = lines.filter { $0.contains("waiting for the agent of ") && $0.contains("to share 8 pages") }
            #expect(progress.count >= 1, "progress lines: \(result.stderr)")
            #expect(lines.contains { $0.contains("did not share 8 pages within 5 s")
                                     && $0.contains("start guest-agent in that guest with the Xen backend") },
                    "the failure names the agent: \(result.stderr)")
            #expect(lines.contains { $0.range(of: #"agent of (alpha|beta) \(d\d+\)"#, options: .regularExpression) != nil },
                    "the agent is named with its domain id: \(result.stderr)")
            #expect(result.json?["ok"]?.bool == false, "stdout stays one JSON object: \(result.stdout)")
            #expect(sim.ok("channel", "list", "--backend", "xen-sim")["channels"]?.array?.isEmpty == true)
        }
    }

    @Test("windows lie above all the RAM a guest may have: 4 GiB + memory/static-max (libxl's HVM layout); a larger static-max moves the window and #VE regions above it; a filled gfn is skipped")
    func windowAboveGuestRAM() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1", "--altp2m", "external")
            let control = try Self.control(sim)
            let alpha = try #require(try control.listDomains().first { $0.name == "alpha" }).id
            try control.setDomainState(alpha, active: true)
            let first = try control.reserveWindow(alpha, pageCount: 4)
            #expect(first == control.windowRegion.lowerBound, "a 1 MiB guest uses the default region")
            // Something already at the next gfns: the next window skips them.
            let second = try control.reserveWindow(alpha, pageCount: 4)
            #expect(second == first.advanced(by: 4))
            try control.releaseWindow(alpha, firstGFN: first, pageCount: 4)
            try control.releaseWindow(alpha, firstGFN: second, pageCount: 4)

            // xl mem-max 80g: the guest may balloon up to 80 GiB, which libxl
            // lays out from 4 GiB to 84 GiB, over the default region.
            sim.ok("xenstore", "write", "/local/domain/\(alpha.rawValue)/memory/static-max", String(80 << 20))
            let gib: UInt64 = 1 << 18
            let moved = try control.reserveWindow(alpha, pageCount: 4)
            #expect(moved.rawValue == 84 * gib, "the window starts at the first GiB above 84 GiB: \(moved)")
            #expect(try control.getMemAccess(alpha, view: .hostOrView0, gfn: moved) == .readWriteExecute)
            let ve = try control.reserveVEInfoPage(alpha)
            #expect(ve.rawValue == 84 * gib + (control.veInfoRegion.lowerBound.rawValue - control.windowRegion.lowerBound.rawValue),
                    "the #VE region moves with the window region: \(ve)")
            try control.releaseWindow(alpha, firstGFN: moved, pageCount: 4)
            try control.releaseVEInfoPage(alpha, gfn: ve)
        }
    }

    @Test("a wait ends when dom0 revokes a descriptor: XenGuestPlatform watches its descriptor directory")
    func revocationWakesAWait() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1", "--altp2m", "external")
            let control = try Self.control(sim)
            let alpha = try #require(try control.listDomains().first { $0.name == "alpha" }).id
            try control.publishDescriptor([1, 2, 3], for: alpha, name: "chan")
            let guest = try Self.guest(sim, "alpha")
            let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
            defer { word.deallocate() }
            word.pointee = 7
            let target = WakeTarget(word: word, port: 0)
            // The watch fires once when it is set: the first wait returns at once.
            guest.wait(target, expected: 7, timeoutNanoseconds: 1_000_000_000)
            // Now nothing changes: a wait lasts its timeout.
            var start = Date()
            guest.wait(target, expected: 7, timeoutNanoseconds: 300_000_000)
            #expect(Date().timeIntervalSince(start) >= 0.25)
            // dom0 revokes the descriptor 200 ms into a 10 s wait.
            let revoker = Thread { [control = HandedOverControl(control)] in
                usleep(200_000)
                try? control.value.revokeDescriptor(for: alpha, name: "chan")
            }
            start = Date()
            revoker.start()
            guest.wait(target, expected: 7, timeoutNanoseconds: 10_000_000_000)
            let waited = Date().timeIntervalSince(start)
            #expect(waited >= 0.15 && waited < 3, "the revocation ended the wait after \(waited) s")
            #expect(try guest.descriptorNames().isEmpty)
        }
    }

    @Test("deadDomains (libxl's domain_death_xswatch_callback): a crashed domain is shut down (crash), a destroyed one and an id never used are gone, a running and a paused one are alive")
    func deadDomains() throws {
        try withSimulator { sim in
            for name in ["alive", "halted", "crashed", "destroyed"] { sim.ok("domain", "create", name, "--memory-mib", "1") }
            let control = try Self.control(sim)
            let ids = Dictionary(uniqueKeysWithValues: try control.listDomains().map { ($0.name, $0.id) })
            let alive = try #require(ids["alive"]), halted = try #require(ids["halted"])
            let crashed = try #require(ids["crashed"]), destroyed = try #require(ids["destroyed"])
            try control.pauseDomain(halted)
            sim.ok("domain", "crash", "crashed")
            sim.ok("domain", "destroy", "destroyed")
            let never = DomainID(rawValue: 300)
            let dead = try control.deadDomains(among: [alive, halted, crashed, destroyed, never])
            #expect(dead == [crashed: .shutDown(reason: 3), destroyed: .gone, never: .gone], "\(dead)")
            #expect(dead[crashed]?.description == "shut down (crash)")
            #expect(try control.deadDomains(among: []).isEmpty)
        }
    }

    @Test("xc_version through the simulator: 4.19 and 4.20 are accepted, 4.21 is refused with the reason")
    func releaseGate() throws {
        try withSimulator("--xen", "4.21") { sim in
            do {
                _ = try Self.control(sim)
                Issue.record("XenControl accepted Xen 4.21, whose per-domain view count it cannot read back")
            } catch {
                #expect("\(error)".contains("4.21 is not supported"), "\(error)")
            }
        }
        for (release, profile) in [("4.19", XenVersion.v4_19), ("4.20", .v4_20)] {
            try withSimulator("--xen", release) { sim in
                let control = try Self.control(sim)
                #expect(control.xenVersion == profile)
            }
        }
    }

    /// Xen 4.20 inserted `XENMEM_access_r_pw` at 10 and moved
    /// `XENMEM_access_default` to 11: XenControl must send and read the
    /// numbers of the release it runs on, as the simulator's own requests do.
    @Test("Xen 4.20's xenmem_access_t numbering: r_pw and default set and read back the same through XenControl (xen-sim) as through the simulator (sim)", arguments: ["sim", "xen-sim"])
    func accessNumberingOn420(backend: String) throws {
        try withSimulator(backend: backend, "--xen", "4.20") { sim in
            sim.ok("domain", "create", "d", "--vcpus", "1", "--memory-mib", "2", "--altp2m", "external")
            sim.ok("altp2m", "set-state", "d", "on")
            #expect(sim.ok("altp2m", "create-view", "d", "--default-access", "r_pw")["view"]?.int64 == 1)
            #expect(sim.ok("altp2m", "get-access", "d", "1", "~0")["access"]?.string == "r_pw")
            sim.ok("altp2m", "set-access", "d", "1", "0x100", "r_pw")
            #expect(sim.ok("altp2m", "get-access", "d", "1", "0x100")["access"]?.string == "r_pw")
            sim.ok("altp2m", "set-access", "d", "1", "0x101", "rw")
            #expect(sim.ok("altp2m", "get-access", "d", "1", "0x101")["access"]?.string == "rw")
            // default: the host p2m's default access (rwx), not r_pw.
            sim.ok("altp2m", "set-access", "d", "1", "0x102", "default")
            #expect(sim.ok("altp2m", "get-access", "d", "1", "0x102")["access"]?.string == "rwx")
        }
    }

    @Test("chanctl altp2m access-required DOM on|off reaches every view while altp2m is active, through XenControl (xen-sim) as through the simulator (sim)",
          arguments: ["sim", "xen-sim"])
    func accessRequiredCommand(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            sim.ok("domain", "create", "d", "--vcpus", "1", "--memory-mib", "2", "--altp2m", "external")
            sim.ok("altp2m", "set-state", "d", "on")
            #expect(sim.ok("altp2m", "create-view", "d")["view"]?.int64 == 1)
            for (state, expected) in [("on", true), ("off", false)] {
                sim.ok("altp2m", "access-required", "d", state)
                for view in ["0", "1"] {
                    #expect(sim.ok("sim", "view-entry", "d", view, "0x10")["view_access_required"]?.bool == expected,
                            "view \(view) after access-required \(state)")
                }
            }
            #expect(sim.run(["altp2m", "access-required", "d", "maybe"]).status == 2)
        }
    }
}

/// dom0's control handed to the one thread that uses it next.
struct HandedOverControl: @unchecked Sendable {
    let value: XenControl
    init(_ value: XenControl) { self.value = value }
}
