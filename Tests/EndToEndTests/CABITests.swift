import Foundation
import Testing

/// End-to-end tests of the C interface (securechannel.h, libsecurechannel):
/// the installed files and their exported symbols, the C examples and a
/// Python program against the Swift agents on the simulator, and every
/// function called with bad input.
@Suite("End to end: the C interface (libsecurechannel)", .serialized, .timeLimit(.minutes(5)))
struct CABITests {
    static let functions: Set<String> = ["sc_options_init", "sc_open", "sc_send", "sc_recv", "sc_max_message", "sc_fd",
                                         "sc_close", "sc_statistics", "sc_strerror", "sc_last_error", "sc_version"]

    @Test("install-lib installs the header, libsecurechannel.so.1, the archive and securechannel.pc; the .so exports exactly the header's sc_ functions")
    func installedFiles() throws {
        let tmp = try TemporaryDirectory()
        let c = try CInterface.install(into: tmp.path)
        for file in ["/securechannel.h"] { #expect(FileManager.default.fileExists(atPath: c.includedir + file)) }
        for file in ["libsecurechannel.so.1", "libsecurechannel.so", "libsecurechannel.a", "pkgconfig/securechannel.pc"] {
            #expect(FileManager.default.fileExists(atPath: c.libdir + "/" + file), "\(file) installed")
        }
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: c.libdir + "/libsecurechannel.so") == "libsecurechannel.so.1")
        #expect(try c.pkgConfig("--cflags") == ["-I" + c.includedir])
        #expect(try c.pkgConfig("--libs") == ["-L" + c.libdir, "-lsecurechannel"])

        // Every defined global symbol is one of the header's functions (the
        // version node SECURECHANNEL_1 aside); the Swift code stays local.
        let nm = try Binaries.run("/usr/bin/nm", ["-D", "--defined-only", "--extern-only", c.libdir + "/libsecurechannel.so.1"])
        #expect(nm.status == 0, "\(nm.stderr)")
        let exported = Set(nm.stdout.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count == 3, fields[1] != "A" else { return nil }
            return String(fields[2].split(separator: "@").first ?? "")
        })
        #expect(exported == Self.functions, "exported: \(exported.sorted())")
        let header = try String(contentsOfFile: c.includedir + "/securechannel.h", encoding: .utf8)
        // Declarations start a line with their return type; comments with " *".
        let declarations = header.split(separator: "\n").filter { $0.first?.isLowercase == true }
        let declared = Set(declarations.flatMap { $0.matches(of: /\b(sc_[a-z_]+)\(/).map { String($0.1) } })
        #expect(declared == Self.functions, "declared in the header: \(declared.sorted())")
    }

    @Test("every function with bad input (NULL pointers, bad key files, a wrong host key, unknown channel and options, a closed handle) returns its documented error; the program is linked to the static archive")
    func misuse() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "misuse", "--between", "left", "right", "--pages", "4")
        let echo = try world.spawnAgent(["run", "--wait", "block"] + world.agentOptions("right"), log: "run")
        defer { stopProcess(echo) }
        let c = try CInterface.install(into: world.tmp.path)
        let program = world.tmp.path + "/sc_misuse"
        try c.compile(CInterface.repository + "/Tests/CABI/sc_misuse.c", to: program, statically: true)
        let ldd = try Binaries.run("/usr/bin/ldd", [program])
        #expect(!ldd.stdout.contains("libsecurechannel"), "linked to the archive, not the shared object: \(ldd.stdout)")
        let result = try Binaries.run(program, ["left", world.keyPath("left"), world.keyPath("right"), world.hostKey, world.state,
                                                "misuse", world.tmp.path], timeout: 120)
        #expect(result.status == 0, "\(result.stdout.split(separator: "\n").filter { $0.hasPrefix("FAIL") }.joined(separator: "\n")) \(result.stderr) \(world.log("run"))")
        #expect(result.stdout.contains("\n0 failed\n"), "\(result.stdout)")
    }

    @Test("C ping (pkg-config, shared object) against guest-agent run, beside guest-agent ping; guest-agent ping against the C echo server polling sc_fd",
          arguments: ["encrypted", "isolated"])
    func cPingAndEcho(_ mode: String) throws {
        let world = try SimWorld(domains: ["left", "right", "third"], allow: false)
        try world.chanctl("policy", "allow", "left", "right", "--modes", "encrypted,isolated")
        try world.chanctl("policy", "allow", "left", "third", "--modes", "encrypted,isolated")
        let c = try CInterface.install(into: world.tmp.path)
        try c.buildExamples(into: world.tmp.path)
        let echo = try world.spawnAgent(["run", "--wait", "spin"] + world.agentOptions("right"), log: "run")
        defer { stopProcess(echo) }

        // The same round trips from both programs, alternating, each on a
        // fresh channel (a descriptor is accepted once).
        var p50s: [String: [Int]] = ["guest-agent": [], "c": []]
        for round in 0..<3 {
            for program in ["guest-agent", "c"] {
                let channel = "\(program == "c" ? "c" : "swift")-\(round)"
                try world.chanctl("channel", "create", channel, "--between", "left", "right", "--pages", "4", "--mode", mode)
                let arguments = ["--channel", channel, "--count", "2000", "--size", "64", "--wait", "spin", "--json"] + world.agentOptions("left")
                let result = program == "c"
                    ? try Binaries.run(world.tmp.path + "/sc_ping", arguments + ["--timeout-ms", "20000"], environment: c.environment, timeout: 120)
                    : try Binaries.run(Binaries.guestAgent, ["ping", "--timeout", "20"] + arguments, timeout: 120)
                #expect(result.status == 0, "\(program) ping: \(result.stdout) \(result.stderr) \(world.log("run"))")
                p50s[program]!.append(try #require(result.json?["p50_ns"] as? Int, "\(program): \(result.stdout)"))
            }
        }
        let median = p50s.mapValues { $0.sorted()[1] }
        let ratio = Double(median["c"]!) / Double(median["guest-agent"]!)
        print("\(mode), 64 B, spin: guest-agent ping p50 \(median["guest-agent"]!) ns, sc_ping p50 \(median["c"]!) ns, ratio \(ratio)")
        // A loose bound (a debug build on a shared machine): per-message
        // allocation, locks or system calls in the C path would break it.
        #expect(ratio < 1.5, "sc_ping's p50 is \(ratio) x guest-agent ping's: \(p50s)")

        // The C echo server: poll() on sc_fd, sc_recv with timeout 0.
        try world.chanctl("channel", "create", "to-c", "--between", "left", "third", "--pages", "4", "--mode", mode)
        let server = try world.spawn(world.tmp.path + "/sc_echo", ["--channel", "to-c", "--wait", "block"] + world.agentOptions("third"),
                                     log: "sc_echo", environment: c.environment)
        defer { stopProcess(server) }
        let ping = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "to-c", "--count", "500", "--size", "1000", "--wait", "block",
                                                          "--timeout", "20", "--json"] + world.agentOptions("left"), timeout: 120)
        #expect(ping.status == 0, "\(ping.stdout) \(ping.stderr) \(world.log("sc_echo"))")
        #expect(ping.json?["mode"] as? String == mode)
        #expect(waitForExit(server, seconds: 20), "sc_echo ends when the peer closes: \(world.log("sc_echo"))")
        #expect(server.terminationStatus == 0, "\(world.log("sc_echo"))")
        let output = (try? String(contentsOfFile: world.tmp.path + "/sc_echo.out", encoding: .utf8)) ?? ""
        #expect(output.contains("echoed 501 messages"), "every round trip and the first: \(output) \(world.log("sc_echo"))")
        // Its counters through sc_statistics: 501 messages of 1000 bytes each way.
        #expect(world.log("sc_echo").contains("to-c: 501 messages (501000 bytes) received, 501 (501000 bytes) sent"), "\(world.log("sc_echo"))")
    }

    @Test("Python through ctypes (examples/python/ping.py) against guest-agent run; its errors carry the SC_E* name")
    func python() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "py", "--between", "left", "right", "--pages", "4")
        let echo = try world.spawnAgent(["run", "--wait", "block"] + world.agentOptions("right"), log: "run")
        defer { stopProcess(echo) }
        let c = try CInterface.install(into: world.tmp.path)
        let script = CInterface.repository + "/examples/python/ping.py"
        let result = try Binaries.run("/usr/bin/python3", [script, "--channel", "py", "--count", "200", "--wait", "block", "--json"]
                                      + world.agentOptions("left"), environment: c.environment, timeout: 120)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr) \(world.log("run"))")
        #expect(result.json?["ok"] as? Bool == true && (result.json?["p50_ns"] as? Int ?? 0) > 0, "\(result.stdout)")
        let version = result.json?["version"] as? String ?? ""
        #expect(version.hasPrefix("securechannel "), "\(result.stdout)")

        let missing = try Binaries.run("/usr/bin/python3", [script, "--channel", "nope", "--timeout-ms", "200"] + world.agentOptions("left"),
                                       environment: c.environment, timeout: 60)
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("SC_EDESCRIPTOR") && missing.stderr.contains("no channel named 'nope'"), "\(missing.stderr)")
    }
}
