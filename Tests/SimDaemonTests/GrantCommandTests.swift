import Altp2mSim
import Foundation
import Testing

/// `chanctl keys|policy|channel` against the grant module inside the daemon,
/// and two channel-probe guest processes talking over a real channel.
@Suite("Grant commands", .serialized)
struct GrantCommandTests {
    static let keyA = String(repeating: "11", count: 32)
    static let keyB = String(repeating: "22", count: 32)

    static func twoDomains(_ sim: ChanctlHarness) {
        sim.ok("domain", "create", "alpha", "--vcpus", "1", "--altp2m", "external")
        sim.ok("domain", "create", "beta", "--vcpus", "1", "--altp2m", "external")
    }

    @Test("keys show makes the host key once; keys register checks the key")
    func keys() throws {
        try withSimulator { sim in
            let first = sim.ok("keys", "show")["public_key"]?.string ?? ""
            #expect(first.count == 64)
            #expect(sim.ok("keys", "show")["public_key"]?.string == first)
            #expect(FileManager.default.fileExists(atPath: sim.stateDir + "/grant/host-ed25519.key"))
            #expect(sim.ok("keys", "register", "alpha", Self.keyA)["public_key"]?.string == Self.keyA)
            let bad = sim.run(["keys", "register", "alpha", "zz"])
            #expect(bad.status == 2)
            #expect(bad.json?["ok"]?.bool == false)
        }
    }

    @Test("policy: default deny names the fix; allow, show, deny")
    func policy() throws {
        try withSimulator { sim in
            Self.twoDomains(sim)
            sim.ok("keys", "register", "alpha", Self.keyA)
            sim.ok("keys", "register", "beta", Self.keyB)
            let denied = sim.run(["channel", "create", "c1", "--between", "alpha", "beta"])
            #expect(denied.status == 1)
            #expect(denied.json?["error"]?.string == "no policy allows alpha <-> beta; run: chanctl policy allow alpha beta")
            sim.ok("policy", "allow", "alpha", "beta", "--max-pages", "32")
            let rules = sim.ok("policy", "show")["rules"]?.array ?? []
            #expect(rules.count == 1)
            #expect(rules.first?["max_pages"]?.int64 == 32)
            #expect(sim.ok("policy", "deny", "alpha", "beta")["removed"]?.bool == true)
            #expect(sim.ok("policy", "show")["rules"]?.array?.isEmpty == true)
        }
    }

    @Test("channel create, list, show, destroy and their errors")
    func channelLifecycle() throws {
        try withSimulator { sim in
            Self.twoDomains(sim)
            sim.ok("policy", "allow", "alpha", "beta")
            let noKey = sim.run(["channel", "create", "c1", "--between", "alpha", "beta"])
            #expect(noKey.status == 1)
            #expect(noKey.json?["error"]?.string?.contains("chanctl keys register alpha") == true)
            sim.ok("keys", "register", "alpha", Self.keyA)
            sim.ok("keys", "register", "beta", Self.keyB)

            let made = sim.ok("channel", "create", "c1", "--between", "alpha", "beta", "--pages", "8", "--suite", "aesgcm")
            #expect(made["channel"]?.string?.count == 32)
            #expect(made["views"]?["alpha"]?.int64 == 1)
            #expect(made["views"]?["beta"]?.int64 == 1)
            #expect(made["windows"]?["alpha"]?["pages"]?.int64 == 8)
            #expect(made["windows"]?["beta"]?["first_gfn"]?.uint64 != nil)
            #expect(made["warnings"]?.array != nil)
            #expect(made["suite"]?.string == "aesgcm")

            let list = sim.ok("channel", "list")["channels"]?.array ?? []
            #expect(list.count == 1)
            #expect(list.first?["name"]?.string == "c1")
            #expect(list.first?["channel"]?.string == made["channel"]?.string)
            let shown = sim.ok("channel", "show", "c1")
            #expect(shown["state"]?.string == "active")
            #expect(shown["windows"] == made["windows"])
            // The host's view: its age, generation and (none yet) last re-issue.
            #expect(shown["age_s"]?.int64 != nil && shown["generation"] == made["generation"])
            #expect(shown["reissued_at"] == .null)

            // Errors.
            let pages = sim.run(["channel", "create", "c2", "--between", "alpha", "beta", "--pages", "600"])
            #expect(pages.status == 2)
            let overPolicy = sim.run(["channel", "create", "c2", "--between", "alpha", "beta", "--pages", "128"])
            #expect(overPolicy.status == 1)
            let unknownDomain = sim.run(["channel", "create", "c2", "--between", "alpha", "gamma"])
            #expect(unknownDomain.status == 1)
            #expect(unknownDomain.json?["error"]?.string?.contains("gamma") == true)
            let unknownChannel = sim.run(["channel", "show", "nope"])
            #expect(unknownChannel.status == 1)
            #expect(unknownChannel.json?["error"]?.string == "no channel named 'nope'; run: chanctl channel list")
            #expect(sim.run(["channel", "destroy", "nope"]).status == 1)
            let xen = sim.run(["channel", "list", "--backend", "xen"])
            #expect(xen.status == 1)
            #expect(xen.json?["error"]?.string?.hasPrefix("Xen control interface not available") == true)

            #expect(sim.ok("channel", "destroy", "c1")["problems"]?.array == [])
            #expect(sim.ok("channel", "list")["channels"]?.array?.isEmpty == true)
            // The view went with the last channel.
            #expect(sim.run(["altp2m", "get-access", "alpha", "1", "0x100000"]).status == 3)
        }
    }

    @Test("kill -9 of the daemon and recovery keep channels exactly; domain destroy tears channels down")
    func recovery() throws {
        try withSimulator { sim in
            Self.twoDomains(sim)
            sim.ok("policy", "allow", "alpha", "beta")
            sim.ok("keys", "register", "alpha", Self.keyA)
            sim.ok("keys", "register", "beta", Self.keyB)
            let made = sim.ok("channel", "create", "c1", "--between", "alpha", "beta", "--pages", "8")
            let reissued = sim.ok("channel", "reissue", "c1")
            let before = sim.ok("channel", "show", "c1")
            // A re-issue is recorded: when, and the next generation.
            #expect(before["reissued_at"]?.uint64 != nil && before["reissued_at"]!.uint64! >= made["created_at"]!.uint64!)
            #expect(before["generation"] == reissued["generation"] && before["generation"] != made["generation"])
            let domainsBefore = sim.ok("domain", "list")["domains"]
            guard let pid = sim.daemonPID else { throw HarnessError("no daemon pid") }
            kill(pid, SIGKILL)
            Thread.sleep(forTimeInterval: 0.3)
            try sim.start()
            let after = sim.ok("channel", "show", "c1")
            #expect(after["state"]?.string == "active")
            #expect(after["reissued_at"] == before["reissued_at"] && after["generation"] == before["generation"])
            #expect(after["windows"] == before["windows"])
            #expect(after["port"] == before["port"])
            #expect(sim.ok("domain", "list")["domains"] == domainsBefore)
            #expect(sim.ok("channel", "list")["channels"]?.array?.count == 1)
            // A second channel after recovery gets fresh resources (nothing duplicated).
            let second = sim.ok("channel", "create", "c2", "--between", "alpha", "beta", "--pages", "4")
            #expect(second["port"] != before["port"])
            #expect(second["windows"]?["alpha"]?["first_gfn"] != before["windows"]?["alpha"]?["first_gfn"])

            sim.ok("domain", "destroy", "beta")
            #expect(sim.ok("channel", "list")["channels"]?.array?.isEmpty == true)
            // And that survives a restart too.
            guard let pid2 = sim.daemonPID else { throw HarnessError("no daemon pid") }
            kill(pid2, SIGKILL)
            Thread.sleep(forTimeInterval: 0.3)
            try sim.start()
            #expect(sim.ok("channel", "list")["channels"]?.array?.isEmpty == true)
            #expect(sim.ok("domain", "list")["domains"]?.array?.count == 2)
        }
    }

    @Test("two guest processes open a channel with SimGuestPlatform; kill -9 of one gives the peer peerDied, the channel stays, a restarted agent opens it again; domain crash tears it down")
    func crossProcess() throws {
        try withSimulator { sim in
            Self.twoDomains(sim)
            sim.ok("policy", "allow", "alpha", "beta")
            let a = try sim.channelProbe("alpha")
            let b = try sim.channelProbe("beta")
            sim.ok("keys", "register", "alpha", a.hello["public_key"]?.string ?? "")
            sim.ok("keys", "register", "beta", b.hello["public_key"]?.string ?? "")
            sim.ok("channel", "create", "orders", "--between", "alpha", "beta", "--pages", "8")
            let hostKey = sim.ok("keys", "show")["public_key"]?.string ?? ""

            #expect(try a.send("names")["names"]?.array == ["orders"])
            // A domain without the channel sees none of its descriptors.
            sim.ok("domain", "create", "gamma", "--vcpus", "1", "--altp2m", "external")
            let c = try sim.channelProbe("gamma")
            #expect(try c.send("names")["names"]?.array == [])
            let stolen = try c.send("open \(hostKey) orders")
            #expect(stolen["ok"]?.bool == false)
            #expect(stolen["error"]?.string?.contains("no descriptor named 'orders'") == true, "\(stolen.serialized)")
            try c.post("exit")
            // Local VMFUNC: the channel view and view 0 are reachable; a view
            // that does not exist, or is hidden, is #UD.
            #expect(try a.send("enter 1")["entered"]?.bool == true)
            #expect(try a.send("enter 0")["entered"]?.bool == true)
            #expect(try a.send("enter 5")["entered"]?.bool == false)
            sim.ok("altp2m", "create-view", "alpha", "--default-access", "rwx")
            sim.ok("altp2m", "set-visibility", "alpha", "2", "0")
            #expect(try a.send("enter 2")["entered"]?.bool == false)
            sim.ok("altp2m", "set-visibility", "alpha", "2", "1")
            #expect(try a.send("enter 2")["entered"]?.bool == true)
            #expect(try a.send("enter 0")["entered"]?.bool == true)
            sim.ok("altp2m", "destroy-view", "alpha", "2")

            try a.post("open \(hostKey) orders")
            try b.post("open \(hostKey) orders block")
            #expect(try a.answer()["ok"]?.bool == true)
            #expect(try b.answer()["ok"]?.bool == true)

            #expect(try a.send("send hello from alpha")["ok"]?.bool == true)
            #expect(try b.send("echo")["text"]?.string == "hello from alpha")
            #expect(try a.send("recv")["text"]?.string == "hello from alpha")

            // B blocks in receive; A's process dies.
            try b.post("recv 10000")
            Thread.sleep(forTimeInterval: 0.2)
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            let killedAt = UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
            a.kill()
            let answer = try b.answer(timeoutSeconds: 5)
            #expect(answer["kind"]?.string == "peer_died", "\(answer.serialized)")
            let at = answer["at_ms"]?.uint64 ?? .max
            print("cross-process peerDied \(at &- killedAt) ms after kill -9")
            #expect(at >= killedAt && at - killedAt < 1000, "peerDied \(at &- killedAt) ms after kill -9")

            // The process died, not its domain: the domain runs and the channel stays.
            let domains = sim.ok("domain", "list")["domains"]?.array ?? []
            #expect(domains.first { $0["name"]?.string == "alpha" }?["state"]?.string == "running")
            #expect(sim.ok("channel", "list")["channels"]?.array?.count == 1)
            #expect(sim.ok("channel", "show", "orders")["name"]?.string == "orders")
            #expect(answer["error"]?.string?.contains("agent process went away") == true, "\(answer.serialized)")

            // A restarted agent finds its descriptor and the window again;
            // with fresh descriptors both ends open a new session on the same ring.
            let restarted = try sim.channelProbe("alpha")
            #expect(try restarted.send("names")["names"]?.array == ["orders"])
            // The probe makes a new agent key each run: register it, then
            // issue fresh descriptors (the peer accepted the old generation).
            sim.ok("keys", "register", "alpha", restarted.hello["public_key"]?.string ?? "")
            sim.ok("channel", "reissue", "orders")
            try restarted.post("open \(hostKey) orders")
            try b.post("open \(hostKey) orders block")
            #expect(try restarted.answer()["ok"]?.bool == true)
            #expect(try b.answer()["ok"]?.bool == true)
            #expect(try restarted.send("send after the restart")["ok"]?.bool == true)
            #expect(try b.send("echo")["text"]?.string == "after the restart")
            #expect(try restarted.send("recv")["text"]?.string == "after the restart")

            // An explicit crash is what tears the channel down now.
            try b.post("recv 10000")
            Thread.sleep(forTimeInterval: 0.2)
            sim.ok("domain", "crash", "alpha")
            let died = try b.answer(timeoutSeconds: 5)
            #expect(died["kind"]?.string == "peer_died", "\(died.serialized)")
            #expect(died["error"]?.string?.contains("domain died") == true, "\(died.serialized)")
            #expect(sim.ok("channel", "list")["channels"]?.array?.isEmpty == true)
        }
    }
}

extension ChanctlHarness {
    /// Spawns a `chanctl sim channel-probe` agent process.
    func channelProbe(_ domain: String) throws -> GuestProcess {
        try GuestProcess(binary: binary, arguments: ["sim", "channel-probe", domain, "--state-dir", stateDir])
    }
}
