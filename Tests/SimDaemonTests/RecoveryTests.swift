import Altp2mSim
import Foundation
import Testing

/// The daemon's journal: `kill -9` and restart give the same answers and
/// the same guest memory.
@Suite("Crash recovery", .serialized)
struct RecoveryTests {
    @Test("kill -9 of the daemon: domain list, get-access and guest memory survive a restart")
    func killAndRestart() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        try sim.start("--xen", "4.19")
        sim.ok("domain", "create", "alpha", "--vcpus", "2", "--memory-mib", "2", "--altp2m", "external")
        sim.ok("domain", "create", "beta", "--memory-mib", "1")
        sim.ok("altp2m", "set-state", "alpha", "on")
        sim.ok("altp2m", "create-view", "alpha", "--default-access", "rx")
        sim.ok("altp2m", "create-view", "alpha")
        sim.ok("altp2m", "set-access", "alpha", "1", "0x120", "n")
        sim.ok("altp2m", "set-access-multi", "alpha", "2", "0x121=r", "0x122=rx2rw")
        sim.ok("altp2m", "change-gfn", "alpha", "2", "0x130", "0x131")
        sim.ok("altp2m", "enable-notify", "alpha", "0", "0x180")
        sim.ok("domain", "destroy", "beta")
        sim.ok("domain", "create", "gamma", "--memory-mib", "1")

        let guest = try sim.guest("alpha")
        #expect(try guest.send("write 0x140 0 survives-kill-9")["ok"]?.bool == true)
        #expect(try guest.send("vmfunc 2")["outcome"]?.string == "ok")
        #expect(try guest.send("write 0x130 8 remapped")["ok"]?.bool == true)
        #expect(try guest.send("detach")["detached"]?.bool == true)

        let queries: [[String]] = [
            ["domain", "list"],
            ["altp2m", "get-access", "alpha", "1", "0x120"],
            ["altp2m", "get-access", "alpha", "1", "~0"],
            ["altp2m", "get-access", "alpha", "2", "0x121"],
            ["altp2m", "get-access", "alpha", "2", "0x122"],
            ["altp2m", "get-access", "alpha", "2", "0x130"],
            ["altp2m", "vcpu-view", "alpha", "0"],
            ["sim", "view-entry", "alpha", "2", "0x130"],
        ]
        let before = queries.map { sim.run($0).stdout }
        #expect(before.allSatisfy { $0.hasPrefix("{\"ok\":true") })
        let token = try String(contentsOfFile: sim.stateDir + "/domains/alpha.token", encoding: .utf8)

        let pid = try #require(sim.daemonPID)
        Foundation.kill(pid, SIGKILL)
        var waited = 0
        while Foundation.kill(pid, 0) == 0 && waited < 200 { usleep(10_000); waited += 1 }
        let down = sim.run(["domain", "list"])
        #expect(down.status == 1)
        #expect(down["error"]?.string?.contains("run: chanctl sim start") == true)

        try sim.start()
        let after = queries.map { sim.run($0).stdout }
        #expect(after == before)
        #expect(try String(contentsOfFile: sim.stateDir + "/domains/alpha.token", encoding: .utf8) == token)
        #expect(sim.ok("sim", "status")["xen"]?.string == "4.19")

        let again = try sim.guest("alpha")
        // The process that entered view 2 detached, so its vCPU went back to
        // view 0 (journaled), and the restart kept that.
        #expect(sim.ok("altp2m", "vcpu-view", "alpha", "0")["view"]?.int64 == 0)
        #expect(try again.send("view")["view"]?.int64 == 0)
        #expect(try again.send("vmfunc 2")["outcome"]?.string == "ok")
        #expect(try again.send("read 0x130 8 8")["text"]?.string == "remapped")
        #expect(try again.send("vmfunc 0")["outcome"]?.string == "ok")
        #expect(try again.send("read 0x140 0 15")["text"]?.string == "survives-kill-9")
        #expect(try again.send("read 0x131 8 8")["text"]?.string == "remapped")
        _ = try again.send("detach")
    }

    @Test("a torn last journal record is dropped; other host options are refused while recovering")
    func tornRecord() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        try sim.start()
        sim.ok("domain", "create", "alpha", "--memory-mib", "1", "--altp2m", "external")
        sim.ok("altp2m", "set-state", "alpha", "on")
        let pid = try #require(sim.daemonPID)
        Foundation.kill(pid, SIGKILL)
        var waited = 0
        while Foundation.kill(pid, 0) == 0 && waited < 200 { usleep(10_000); waited += 1 }
        // Half a record at the end, as a power cut during append leaves it.
        let journal = try #require(FileHandle(forWritingAtPath: sim.stateDir + "/journal"))
        journal.seekToEndOfFile()
        journal.write(Data([40, 0, 0, 0, 1, 2, 3, 4, 0x7B, 0x22]))
        journal.closeFile()

        let mismatch = sim.run(["sim", "start", "--cpu", "amd"])
        #expect(mismatch.status == 1)
        #expect(mismatch["error"]?.string?.contains("another host profile") == true)
        try sim.start()
        #expect(sim.ok("altp2m", "get-state", "alpha")["state"]?.string == "on")
        let log = try String(contentsOfFile: sim.stateDir + "/daemon.log", encoding: .utf8)
        #expect(log.contains("dropped a torn last record"))
    }
}
