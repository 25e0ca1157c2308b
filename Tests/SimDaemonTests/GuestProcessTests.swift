import Altp2mSim
import Foundation
import Testing

/// Guest processes attached to the daemon: local VMFUNC, the two enforcement
/// modes, event words, what a process leaving its domain releases (and that
/// the domain keeps running), and the explicit `domain crash`.
@Suite("Guest processes", .serialized)
struct GuestProcessTests {
    static let window = "0x100", channel = "0x1f0", spare = "0x1f1"

    /// A channel set up as the grant module will: view 1 shows the channel
    /// frame at the window gfn; the frame's own gfn is locked (n) in the host
    /// and so in view 0; both vCPUs may VMFUNC; a monitor ring takes events.
    static func channelDomain(_ sim: ChanctlHarness, name: String = "chan") {
        sim.ok("domain", "create", name, "--vcpus", "2", "--memory-mib", "2", "--altp2m", "external")
        sim.ok("altp2m", "set-state", name, "on")
        sim.ok("altp2m", "create-view", name, "--default-access", "rwx")
        sim.ok("monitor", "enable", name)
        sim.ok("altp2m", "change-gfn", name, "1", window, channel)
        sim.ok("altp2m", "set-access", name, "0", channel, "n")
        sim.ok("altp2m", "enable-notify", name, "0", "0x180")
        sim.ok("altp2m", "enable-notify", name, "1", "0x181")
    }

    @Test("mprotect: two guest processes; the channel page is reachable only in the channel view")
    func mprotectTwoProcesses() throws {
        try withSimulator { sim in
            Self.channelDomain(sim)
            let a = try sim.guest("chan", vcpu: 0, enforcement: "mprotect")
            let b = try sim.guest("chan", vcpu: 1, enforcement: "mprotect")
            #expect(try a.send("write \(Self.spare) 0 world")["ok"]?.bool == true)

            // A enters the channel view locally and writes the page through its window.
            let enter = try a.send("vmfunc 1")
            #expect(enter["outcome"]?.string == "ok")
            #expect(enter["view"]?.int64 == 1)
            #expect(try a.send("probe \(Self.window) w")["allowed"]?.bool == true)
            #expect(try a.send("raw-write \(Self.window) 0 hello")["ok"]?.bool == true)
            #expect(try a.send("raw-read \(Self.window) 0 5")["text"]?.string == "hello")
            #expect(try a.send("vmfunc 0")["view"]?.int64 == 0)
            // In view 0 the window gfn is just its own frame.
            #expect(try a.send("read \(Self.window) 0 5")["text"]?.string != "hello")
            // The daemon learnt A's VMFUNCs from its vCPU page.
            #expect(sim.ok("altp2m", "vcpu-view", "chan", "0")["view"]?.int64 == 0)

            // B, on view 0, reads the channel frame's own gfn: refused.
            let refused = try b.send("read \(Self.channel) 0 5")
            #expect(refused["ok"]?.bool == false)
            #expect(refused["fault"]?.string == "vm_event")
            let events = sim.ok("monitor", "events", "chan")["events"]?.array ?? []
            #expect(events.count == 1)
            #expect(events.first?["vcpu"]?.int64 == 1)
            #expect(events.first?["altp2m_idx"]?.int64 == 0)
            #expect(events.first?["mem_access"]?["gfn"]?.string == Self.channel)
            #expect(events.first?["mem_access"]?["access"]?.array == ["r"])
            // ... and the kernel refuses it too: the page is PROT_NONE in B's window.
            let probe = try b.send("probe \(Self.channel) r")
            #expect(probe["result"]?.string == "refused")
            #expect(sim.ok("sim", "view-entry", "chan", "0", Self.channel)["access"]?.string == "n")

            // dom0 remaps the window; A sees the new frame at its next VMFUNC.
            sim.ok("altp2m", "change-gfn", "chan", "1", Self.window, Self.spare)
            #expect(try a.send("vmfunc 1")["outcome"]?.string == "ok")
            #expect(try a.send("raw-read \(Self.window) 0 5")["text"]?.string == "world")
            #expect(try a.send("read \(Self.window) 0 5")["text"]?.string == "world")

            // A stray raw load of a forbidden page is a real fault: SIGSEGV.
            let death = b.sendExpectingDeath("raw-read \(Self.channel) 0 1")
            #expect(death.signal == SIGSEGV)
            #expect(try a.send("detach")["detached"]?.bool == true)
        }
    }

    @Test("software: VMFUNC is local, follows visibility changes, and guests share the channel page")
    func softwareMode() throws {
        try withSimulator { sim in
            Self.channelDomain(sim)
            let a = try sim.guest("chan", vcpu: 0)
            let b = try sim.guest("chan", vcpu: 1)
            #expect(try a.send("vmfunc 1")["outcome"]?.string == "ok")
            #expect(try a.send("write \(Self.window) 16 ping")["ok"]?.bool == true)
            #expect(try b.send("vmfunc 1")["outcome"]?.string == "ok")
            #expect(try b.send("read \(Self.window) 16 4")["text"]?.string == "ping")
            #expect(try a.send("vmfunc 5")["outcome"]?.string == "ud")
            #expect(try a.send("vmfunc 1 1")["outcome"]?.string == "ud")
            #expect(sim.ok("altp2m", "vcpu-view", "chan", "0")["view"]?.int64 == 1)
            #expect(try a.send("vmfunc 0")["outcome"]?.string == "ok")
            // dom0 hides view 1: the next local VMFUNC sees the new generation.
            sim.ok("altp2m", "set-visibility", "chan", "1", "off")
            #expect(try a.send("vmfunc 1")["outcome"]?.string == "ud")
            #expect(try a.send("view")["view"]?.int64 == 0)
            // A vCPU without enable_notify has no VMFUNC at all.
            sim.ok("domain", "create", "plain", "--altp2m", "external", "--memory-mib", "1")
            sim.ok("altp2m", "set-state", "plain", "on")
            let c = try sim.guest("plain")
            #expect(try c.send("vmfunc 0")["outcome"]?.string == "ud")
            // dom0 switches every vCPU: the guest's view follows.
            sim.ok("altp2m", "set-visibility", "chan", "1", "on")
            sim.ok("altp2m", "switch-view", "chan", "1")
            #expect(try b.send("view")["view"]?.int64 == 1)
            for guest in [a, b, c] { _ = try guest.send("detach") }
            let list = sim.ok("domain", "list")["domains"]?.array ?? []
            #expect(list.allSatisfy { $0["state"]?.string == "running" })
        }
    }

    /// Polls `body` for up to two seconds (the daemon learns of a dead
    /// process when its connection closes, a moment after the kill).
    static func eventually(_ body: () -> Bool) -> Bool {
        for _ in 0..<200 {
            if body() { return true }
            usleep(10_000)
        }
        return body()
    }

    @Test("kill -9 of an attached guest process: the domain keeps running, its ports close, its vCPU leaves the channel view; a restarted process works")
    func killedGuestLeavesDomainRunning() throws {
        try withSimulator { sim in
            Self.channelDomain(sim)
            let peerID = sim.ok("domain", "create", "peer", "--memory-mib", "1")["domid"]!.int64!
            let victim = try sim.guest("chan", vcpu: 0)
            let other = try sim.guest("chan", vcpu: 1)
            let port = try #require(victim.send("evtchn-bind-unbound \(peerID)")["port"]?.int64)
            #expect(try victim.send("vmfunc 1")["outcome"]?.string == "ok")
            #expect(try other.send("vmfunc 1")["outcome"]?.string == "ok")
            #expect(sim.ok("altp2m", "vcpu-view", "chan", "0")["view"]?.int64 == 1)

            Foundation.kill(victim.pid, SIGKILL)
            // evtchn_release: the dead process's port closes.
            #expect(Self.eventually {
                sim.ok("evtchn", "list", "chan")["ports"]?.array?.contains { $0["port"]?.int64 == port } == false
            })
            let list = sim.ok("domain", "list")["domains"]?.array ?? []
            #expect(list.first { $0["name"]?.string == "chan" }?["state"]?.string == "running")
            #expect(list.first { $0["name"]?.string == "chan" }?["attached"]?.int64 == 1)
            // Its vCPU is back in view 0; the other process's vCPU stays where it went.
            #expect(sim.ok("altp2m", "vcpu-view", "chan", "0")["view"]?.int64 == 0)
            #expect(sim.ok("altp2m", "vcpu-view", "chan", "1")["view"]?.int64 == 1)
            #expect(try other.send("view")["view"]?.int64 == 1)
            #expect(sim.ok("sim", "access", "chan", "0", "0x100", "r")["outcome"]?.string != "domain_crashed")

            // A restarted process attaches to the same vCPU and works.
            let again = try sim.guest("chan", vcpu: 0)
            #expect(try again.send("view")["view"]?.int64 == 0)
            #expect(try again.send("vmfunc 1")["outcome"]?.string == "ok")
            #expect(try again.send("write \(Self.window) 0 again")["ok"]?.bool == true)
            #expect(try other.send("read \(Self.window) 0 5")["text"]?.string == "again")
            #expect(try again.send("vmfunc 0")["outcome"]?.string == "ok")
            #expect(try again.send("evtchn-bind-unbound \(peerID)")["port"]?.int64 != nil)
            // A polite exit leaves what it held too: the vCPU goes back to view 0.
            #expect(try again.send("vmfunc 1")["outcome"]?.string == "ok")
            _ = try again.send("detach")
            #expect(sim.ok("altp2m", "vcpu-view", "chan", "0")["view"]?.int64 == 0)
            _ = try other.send("detach")
        }
    }

    @Test("a view dom0 set stays when a guest process leaves")
    func dom0ViewSurvivesProcessExit() throws {
        try withSimulator { sim in
            Self.channelDomain(sim)
            let guest = try sim.guest("chan", vcpu: 0)
            sim.ok("altp2m", "switch-view", "chan", "1")
            #expect(try guest.send("view")["view"]?.int64 == 1)
            guest.kill()
            #expect(Self.eventually {
                sim.ok("domain", "list")["domains"]?.array?.first { $0["name"]?.string == "chan" }?["attached"]?.int64 == 0
            })
            #expect(sim.ok("altp2m", "vcpu-view", "chan", "0")["view"]?.int64 == 1)
        }
    }

    @Test("domain crash: the vCPUs stop, event waiters wake, a second crash changes nothing, a daemon restart replays it")
    func explicitCrash() throws {
        try withSimulator { sim in
            Self.channelDomain(sim)
            sim.ok("domain", "create", "peer", "--memory-mib", "1")
            let victim = try sim.guest("chan")
            let peer = try sim.guest("peer")
            let chanID = victim.hello["domid"]?.int64 ?? 0
            try peer.post("wait 1 0 10000")
            usleep(200_000)
            let crashed = sim.ok("domain", "crash", "chan")
            #expect(crashed["already"]?.bool == false)
            #expect(try peer.answer(timeoutSeconds: 10)["woken"]?.bool == true)
            #expect(try peer.send("state \(chanID)")["state"]?.string == "crashed")
            #expect(try victim.send("vmfunc 1")["outcome"]?.string == "not_running")
            #expect(sim.ok("sim", "access", "chan", "0", "0x100", "r")["outcome"]?.string == "domain_crashed")
            #expect(sim.ok("domain", "crash", "chan")["already"]?.bool == true)
            #expect(sim.run(["domain", "crash", "0"]).status == 1)
            #expect(sim.run(["domain", "crash", "nosuch"]).status == 1)

            let pid = try #require(sim.daemonPID)
            Foundation.kill(pid, SIGKILL)
            var waited = 0
            while Foundation.kill(pid, 0) == 0 && waited < 200 { usleep(10_000); waited += 1 }
            try sim.start()
            let list = sim.ok("domain", "list")["domains"]?.array ?? []
            #expect(list.first { $0["name"]?.string == "chan" }?["state"]?.string == "crashed")
            #expect(list.first { $0["name"]?.string == "peer" }?["state"]?.string == "running")
            sim.ok("domain", "destroy", "chan")
        }
    }
}
