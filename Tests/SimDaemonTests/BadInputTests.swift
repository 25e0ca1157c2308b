import Altp2mSim
import Foundation
import Testing

/// Errors a user can cause: each exits with the documented code and names
/// the problem and the fix.
@Suite("Bad input", .serialized)
struct BadInputTests {
    @Test("simulator not running: exit 1 and how to start it")
    func notRunning() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        let result = sim.run(["domain", "list"])
        #expect(result.status == 1)
        #expect(result["error"]?.string == "no simulator at \(sim.stateDir)/sim.sock; run: chanctl sim start")
        let text = sim.run(["sim", "status"], json: false)
        #expect(text.status == 1)
        #expect(text.stderr.contains("run: chanctl sim start"))
        #expect(text.stdout.isEmpty)
    }

    @Test("--backend xen off Xen: one clear line, no crash, for altp2m and domain commands")
    func xenBackendOffXen() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        for command in [["altp2m", "get-state", "d"], ["altp2m", "create-view", "d"], ["domain", "list"],
                        ["domain", "get-param", "d", "altp2m"]] {
            let result = sim.run(command + ["--backend", "xen"])
            #expect(result.status == 1, "\(command)")
            #expect(result["error"]?.string == "Xen control interface not available: /dev/xen/privcmd missing; use the simulator backend")
        }
        let create = sim.run(["domain", "create", "d", "--backend", "xen"])
        #expect(create.status == 2)
        #expect(create["error"]?.string?.contains("xl create") == true)
        let asGuest = sim.run(["altp2m", "get-state", "d", "--backend", "xen", "--as-guest"])
        #expect(asGuest.status == 2)
        #expect(asGuest["error"]?.string?.contains("only on the simulator") == true)
    }

    @Test("unknown domain, bad GFN, bad ACCESS, bad vCPU, r_pw before 4.20")
    func badArguments() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "d", "--memory-mib", "1", "--altp2m", "external")
            sim.ok("altp2m", "set-state", "d", "on")
            let unknown = sim.run(["altp2m", "get-state", "nosuch"])
            #expect(unknown.status == 1)
            #expect(unknown["error"]?.string == "no domain named nosuch; see chanctl domain list")

            let gfn = sim.run(["altp2m", "get-access", "d", "0", "zz"])
            #expect(gfn.status == 2)
            #expect(gfn["ok"]?.bool == false)
            #expect(gfn["error"]?.string?.contains("bad GFN 'zz': expected a frame number in hex (0x100) or decimal (256), or ~0") == true)

            let access = sim.run(["altp2m", "set-access", "d", "0", "0x10", "rwz"])
            #expect(access.status == 2)
            #expect(access["error"]?.string?.contains("bad ACCESS 'rwz': expected one of n r w rw x rx wx rwx rx2rw n2rwx default") == true)

            let textual = sim.run(["altp2m", "set-access", "d", "0", "0x10", "rwz"], json: false)
            #expect(textual.status == 2)
            #expect(textual.stderr.contains("bad ACCESS 'rwz'"))

            let rpw = sim.run(["altp2m", "set-access", "d", "0", "0x10", "r_pw"])
            #expect(rpw.status == 2)
            #expect(rpw["error"]?.string?.contains("--xen 4.20 or 4.21") == true)

            let onOff = sim.run(["altp2m", "set-visibility", "d", "0", "maybe"])
            #expect(onOff.status == 2)
            #expect(onOff["error"]?.string?.contains("expected on or off") == true)

            let missing = sim.run(["altp2m", "get-access", "d", "0"])
            #expect(missing.status == 2)

            let duplicate = sim.run(["domain", "create", "d"])
            #expect(duplicate.status == 1)
            #expect(duplicate["error"]?.string?.contains("already exists") == true)

            let name = sim.run(["domain", "create", "bad/name"])
            #expect(name.status == 2)

            // A hypervisor error without --json: one readable line, exit 3.
            let busy = sim.run(["altp2m", "destroy-view", "d", "0"], json: false)
            #expect(busy.status == 3)
            #expect(busy.stderr.hasPrefix("chanctl: EBUSY (-16)"))

            let twice = sim.run(["sim", "start"])
            #expect(twice.status == 1)
            #expect(twice["error"]?.string?.contains("already running") == true)
        }
    }

    @Test("a state directory open to others or owned by someone else is refused")
    func unsafeStateDirectory() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        chmod(sim.stateDir, 0o755)
        let open = sim.run(["sim", "start"])
        #expect(open.status == 1)
        #expect(open["error"]?.string?.contains("chmod 700") == true)
        let listing = sim.run(["domain", "list"])
        #expect(listing.status == 1)
        #expect(listing["error"]?.string?.contains("open to group or others") == true)
        chmod(sim.stateDir, 0o700)
        if getuid() == 0 {
            chown(sim.stateDir, 65534, 65534)
            let foreign = sim.run(["sim", "start"])
            #expect(foreign.status == 1)
            #expect(foreign["error"]?.string?.contains("not by you") == true)
            chown(sim.stateDir, 0, 0)
        }
        // The default location comes from the environment.
        var environment = ProcessInfo.processInfo.environment
        environment["CHANCTL_STATE_DIR"] = sim.stateDir + "/from-env"
        let fromEnv = ChanctlHarness.execute(sim.binary, ["domain", "list", "--json"], environment: environment)
        #expect(fromEnv.status == 1)
        #expect(fromEnv["error"]?.string?.contains(sim.stateDir + "/from-env/sim.sock") == true)
    }
}
