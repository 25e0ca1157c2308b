import Foundation
import Testing

/// Channels outlive their sessions, through the built binaries: an agent
/// killed (kill -9) or stopped (SIGTERM) and started again reopens the same
/// channel without any host action, and the side that stayed carries on
/// with it; a re-issue cuts the session off and both sides reopen with the
/// new descriptors.
@Suite("End to end: agents that restart reopen the same channel", .serialized)
struct ReconnectTests {
    static let cases: [(String, String, Int32)] = ["encrypted", "isolated"].flatMap { mode in
        ["run", "ping"].flatMap { side in [SIGKILL, SIGTERM].map { (mode, side, $0) } }
    }

    /// A world with a channel `probe` of `mode` between left and right.
    func world(mode: String) throws -> SimWorld {
        let world = try SimWorld(allow: false)
        try world.chanctl("policy", "allow", "left", "right", "--modes", "encrypted,isolated")
        try world.chanctl("channel", "create", "probe", "--between", "left", "right", "--pages", "4", "--mode", mode)
        return world
    }

    func startRun(_ world: SimWorld, log: String) throws -> Process {
        try world.spawnAgent(["run", "--wait", "block", "--poll-ms", "20"] + world.agentOptions("right"), log: log)
    }

    func startPing(_ world: SimWorld, count: Int, reconnect: Bool, log: String) throws -> Process {
        try world.spawnAgent(["ping", "--channel", "probe", "--count", String(count), "--size", "64", "--wait", "block",
                              "--timeout", "30", "--json"] + (reconnect ? ["--reconnect", "30"] : []) + world.agentOptions("left"),
                             log: log)
    }

    /// Waits until `process` made `text` appear in its log, failing by name past 20 s.
    func expectLog(_ world: SimWorld, _ name: String, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(world.waitForLog(name, text), "\(name) never logged '\(text)': \(world.log(name))", sourceLocation: sourceLocation)
    }

    func finishedJSON(_ world: SimWorld, _ name: String) -> [String: Any]? {
        let text = (try? String(contentsOfFile: world.tmp.path + "/\(name).out", encoding: .utf8)) ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }

    @Test("either side of run/ping killed (kill -9) or stopped (SIGTERM) and started again: the survivor carries on with it, in both modes",
          arguments: cases)
    func restartOneSide(mode: String, side: String, signal: Int32) throws {
        let world = try world(mode: mode)
        let run = try startRun(world, log: "run1")
        defer { stopProcess(run) }
        if side == "run" {
            // ping survives: a long run that must outlive the agent's restart.
            let ping = try startPing(world, count: 100_000, reconnect: true, log: "ping")
            defer { stopProcess(ping) }
            expectLog(world, "run1", "channel open")
            usleep(300_000)
            #expect(ping.isRunning, "ping must still be running: \(world.log("ping"))")
            kill(run.processIdentifier, signal)
            #expect(waitForExit(run, seconds: 5), "run must go: \(world.log("run1"))")
            let again = try startRun(world, log: "run2")
            defer { stopProcess(again) }
            expectLog(world, "run2", "channel open")
            #expect(waitForExit(ping, seconds: 120), "ping must finish after the restart: \(world.log("ping"))")
            #expect(ping.terminationStatus == 0, "\(world.log("ping")) \(world.log("run2"))")
            let result = finishedJSON(world, "ping")
            #expect(result?["mode"] as? String == mode)
            #expect((result?["reconnects"] as? Int ?? 0) >= 1, "the run must span the restart: \(String(describing: result))")
            #expect(world.log("ping").contains(signal == SIGKILL ? "opening the channel again" : "peer closed")
                    || world.log("ping").contains("opening the channel again"), "\(world.log("ping"))")
        } else {
            // run survives: a ping killed or stopped mid-run, then another.
            let ping = try startPing(world, count: 100_000, reconnect: false, log: "ping1")
            defer { stopProcess(ping) }
            expectLog(world, "run1", "channel open")
            usleep(300_000)
            #expect(ping.isRunning, "ping must still be running: \(world.log("ping1"))")
            kill(ping.processIdentifier, signal)
            #expect(waitForExit(ping, seconds: 5), "ping must go: \(world.log("ping1"))")
            expectLog(world, "run1", "waiting for")
            let second = try startPing(world, count: 200, reconnect: false, log: "ping2")
            defer { stopProcess(second) }
            #expect(waitForExit(second, seconds: 60), "the second ping must finish: \(world.log("ping2"))")
            #expect(second.terminationStatus == 0, "\(world.log("ping2")) \(world.log("run1"))")
            expectLog(world, "run1", "channel open again")
            #expect(run.isRunning, "run survives its peer's restart: \(world.log("run1"))")
        }
    }

    @Test("chanctl channel reissue cuts the session off: ping without --reconnect fails naming the re-issue, run and a reconnecting ping reopen with the new descriptors")
    func reissue() throws {
        let world = try world(mode: "encrypted")
        let run = try startRun(world, log: "run")
        defer { stopProcess(run) }
        let strict = try startPing(world, count: 1_000_000, reconnect: false, log: "strict")
        defer { stopProcess(strict) }
        expectLog(world, "run", "channel open")
        usleep(300_000)
        #expect(strict.isRunning, "\(world.log("strict"))")
        let first = try world.chanctl("channel", "reissue", "probe")
        let generation = try #require(first.json?["generation"] as? Int, "\(first.stdout)")
        #expect(waitForExit(strict, seconds: 10), "\(world.log("strict"))")
        #expect(strict.terminationStatus == 1)
        let said = world.log("strict") + ((try? String(contentsOfFile: world.tmp.path + "/strict.out", encoding: .utf8)) ?? "")
        #expect(said.contains("re-issued") && said.contains("generation \(generation)"), "the error names the re-issue: \(said)")
        expectLog(world, "run", "re-issued")

        // A reconnecting ping spans the next re-issue.
        let ping = try startPing(world, count: 400_000, reconnect: true, log: "ping")
        defer { stopProcess(ping) }
        usleep(800_000)
        #expect(ping.isRunning, "\(world.log("ping")) \(world.log("run"))")
        try world.chanctl("channel", "reissue", "probe")
        #expect(waitForExit(ping, seconds: 240), "\(world.log("ping"))")
        #expect(ping.terminationStatus == 0, "\(world.log("ping")) \(world.log("run"))")
        #expect((finishedJSON(world, "ping")?["reconnects"] as? Int ?? 0) >= 1, "\(world.log("ping"))")
        #expect(run.isRunning, "\(world.log("run"))")
    }

    @Test("forward --reconnect: the connecting forwarder killed (kill -9) and started again; the listening one cuts the connection, reopens and carries the next one, in both modes",
          arguments: ["encrypted", "isolated"])
    func forwardCarriesOn(mode: String) throws {
        let world = try SimWorld(allow: false)
        try world.chanctl("policy", "allow", "left", "right", "--modes", "encrypted,isolated")
        try world.chanctl("channel", "create", "web", "--between", "left", "right", "--pages", "4", "--mode", mode)
        let serverPath = world.tmp.path + "/server.sock", clientPath = world.tmp.path + "/client.sock"
        let listener = try UnixSocket.listen(serverPath)
        defer { close(listener) }
        let connector = ["forward", "--channel", "web", "--connect-unix", serverPath] + world.agentOptions("right")
        let first = try world.spawnAgent(connector, log: "fwd-server1")
        defer { stopProcess(first) }
        let client = try world.spawnAgent(["forward", "--channel", "web", "--listen-unix", clientPath, "--reconnect", "30"]
                                          + world.agentOptions("left"), log: "fwd-client")
        defer { stopProcess(client) }

        func exchange(_ text: String) throws {
            let fd: Int32
            do { fd = try UnixSocket.connect(clientPath, retryFor: 20) } catch {
                Issue.record("\(error); the listening forwarder \(client.isRunning ? "runs" : "exited (status \(client.terminationStatus))"): \(world.log("fwd-client")); the connecting one: \(world.log("fwd-server1"))")
                throw error
            }
            defer { close(fd) }
            let accepted = UnixSocket.accept(listener, within: 20)
            defer { if accepted >= 0 { close(accepted) } }
            try #require(accepted >= 0, "the connecting forwarder never connected: \(world.log("fwd-client"))")
            #expect(UnixSocket.writeAll(fd, Array(text.utf8)))
            #expect(UnixSocket.read(accepted) { $0.count >= text.utf8.count } == Array(text.utf8),
                    "\(world.log("fwd-client"))")
        }
        try exchange("hello")
        kill(first.processIdentifier, SIGKILL)
        #expect(waitForExit(first, seconds: 5))
        #expect(world.waitForLog("fwd-client", "opening the channel again"), "\(world.log("fwd-client"))")
        #expect(client.isRunning, "the listening forwarder carries on: \(world.log("fwd-client"))")
        let second = try world.spawnAgent(connector, log: "fwd-server2")
        defer { stopProcess(second) }
        try exchange("hello again")
        #expect(client.isRunning, "\(world.log("fwd-client"))")
    }

    @Test("cat killed (kill -9) or stopped (SIGTERM) mid-stream and started again: run serves the new one, whose bytes come back intact, in both modes",
          arguments: ["encrypted", "isolated"].flatMap { mode in [SIGKILL, SIGTERM].map { (mode, $0) } })
    func catRestarted(mode: String, signal: Int32) throws {
        let world = try world(mode: mode)
        let run = try startRun(world, log: "run")
        defer { stopProcess(run) }
        // The first cat keeps its standard input open, so it is mid-stream when it goes.
        let input = Pipe()
        let first = Process()
        first.executableURL = URL(fileURLWithPath: try Binaries.guestAgent)
        first.arguments = ["cat", "--channel", "probe", "--timeout", "20"] + world.agentOptions("left")
        first.standardInput = input
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { stopProcess(first) }
        input.fileHandleForWriting.write(Data(repeating: 0x5A, count: 100_000))
        expectLog(world, "run", "channel open")
        usleep(200_000)
        kill(first.processIdentifier, signal)
        #expect(waitForExit(first, seconds: 5))
        try? input.fileHandleForWriting.close()
        expectLog(world, "run", "waiting for")

        let source = world.tmp.path + "/input", sink = world.tmp.path + "/output"
        var bytes = [UInt8](repeating: 0, count: 1 << 20)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 131 &+ i >> 11) }
        try Data(bytes).write(to: URL(fileURLWithPath: source))
        let second = try Binaries.run("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \(source) > \(sink)", try Binaries.guestAgent, "cat",
                                                  "--channel", "probe", "--timeout", "30"] + world.agentOptions("left"), timeout: 120)
        #expect(second.status == 0, "\(second.stderr) \(world.log("run"))")
        #expect(try sha256(ofFile: source) == sha256(ofFile: sink), "the echo of the new cat must be its own bytes only")
        #expect(run.isRunning, "\(world.log("run"))")
    }
}
