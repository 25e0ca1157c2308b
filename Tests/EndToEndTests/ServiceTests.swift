import Foundation
import Testing

/// End-to-end tests of `guest-agent run`'s per-channel services, its polite
/// shutdown, `--enforcement`, and a descriptor tampered with in dom0's
/// storage, all through the built binaries.
@Suite("End to end: guest-agent run services, shutdown, enforcement, tampering", .serialized, .timeLimit(.minutes(2)))
struct ServiceEndToEndTests {
    /// Writes a services file into the world's directory; returns its path.
    func servicesFile(_ world: SimWorld, _ text: String, name: String = "services.conf") -> String {
        let path = world.tmp.path + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// Runs `guest-agent cat` on `domain` with `input` as standard input;
    /// returns the result and what it wrote to standard output.
    func cat(_ world: SimWorld, domain: String, channel: String, input: [UInt8], tag: String) throws -> (Binaries.Result, [UInt8]) {
        let inputPath = world.tmp.path + "/\(tag).in", outputPath = world.tmp.path + "/\(tag).out"
        _ = FileManager.default.createFile(atPath: inputPath, contents: Data(input))
        let result = try Binaries.run("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \(inputPath) > \(outputPath)", try Binaries.guestAgent, "cat",
                                                  "--channel", channel, "--timeout", "20"] + world.agentOptions(domain), timeout: 30)
        let output = FileManager.default.contents(atPath: outputPath).map { [UInt8]($0) } ?? []
        return (result, output)
    }

    @Test("run --services: bad content exits 2 naming FILE:LINE before attaching; an unreadable file exits 1")
    func badServicesFiles() throws {
        let tmp = try TemporaryDirectory()
        // No simulator at this state directory: a check that ran after
        // attaching would fail with "no simulator" (exit 1) instead.
        let common = ["--domain", "a", "--key", tmp.path + "/none.key", "--host-key", Binaries.someHostKey,
                      "--state-dir", tmp.path + "/nowhere"]
        let cases: [(text: String, line: Int, says: String)] = [
            ("# comment\n\norders-* forward-unix /run/o.sock\nmetrics frobnicate\n", 4, "unknown service 'frobnicate'"),
            ("metrics sink extra\n", 1, "sink takes no argument"),
            ("a echo\norders-* forward-unix\n", 2, "forward-unix needs the path"),
            ("orders-* forward-unix /run/a.sock /run/b.sock\n", 1, "forward-unix takes one argument"),
            ("orders-* forward-unix run/orders.sock\n", 1, "is relative"),
            ("web-* forward-tcp localhost\n", 1, "forward-tcp takes one argument, HOST:PORT"),
            ("web-* forward-tcp 127.0.0.1:0\n", 1, "is not HOST:PORT"),
            ("lonely   # no service\n", 1, "has no service"),
            ("orders/* echo\n", 1, "bad pattern 'orders/*'"),
            ("a echo\norders.v1 echo\n", 2, "bad pattern 'orders.v1'"),
        ]
        for (index, item) in cases.enumerated() {
            let path = tmp.path + "/bad\(index).conf"
            _ = FileManager.default.createFile(atPath: path, contents: Data(item.text.utf8))
            let result = try Binaries.run(Binaries.guestAgent, ["run", "--services", path] + common)
            #expect(result.status == 2, "case \(index): \(result.stderr)")
            #expect(result.stderr.contains("\(path):\(item.line): "), "case \(index) must name FILE:LINE: \(result.stderr)")
            #expect(result.stderr.contains(item.says), "case \(index): \(result.stderr)")
        }
        let missing = tmp.path + "/missing.conf"
        let unreadable = try Binaries.run(Binaries.guestAgent, ["run", "--services", missing] + common)
        #expect(unreadable.status == 1, "\(unreadable.stderr)")
        #expect(unreadable.stderr.contains(missing) && unreadable.stderr.contains("No such file"), "\(unreadable.stderr)")

        // --enforcement: a bad value and a Xen backend are usage errors.
        let badMode = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "c", "--enforcement", "paranoid"] + common)
        #expect(badMode.status == 2)
        #expect(badMode.stderr.contains("software") && badMode.stderr.contains("mprotect"), "\(badMode.stderr)")
        let onXen = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "c", "--backend", "xen", "--enforcement", "mprotect"] + common)
        #expect(onXen.status == 2)
        #expect(onXen.stderr.contains("simulator only"), "\(onXen.stderr)")
    }

    @Test("sink service: cat pipes 300 000 bytes into it and exits 0 with no echo; the run log has the byte count")
    func sinkService() throws {
        let world = try SimWorld()
        let services = servicesFile(world, "metrics   sink   # counts only\n*         echo\n")
        try world.chanctl("channel", "create", "metrics", "--between", "left", "right", "--pages", "4")
        let agent = try world.spawnAgent(["run", "--wait", "block", "--services", services] + world.agentOptions("right"), log: "run")
        defer { stopProcess(agent) }

        let input = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        let (result, output) = try cat(world, domain: "left", channel: "metrics", input: input, tag: "metrics")
        #expect(result.status == 0, "\(result.stderr) \(world.log("run"))")
        #expect(output.isEmpty, "a sink sends nothing back (\(output.count) bytes came back)")
        #expect(world.waitForLog("run", "sink: peer closed the channel after"), "\(world.log("run"))")
        let log = world.log("run")
        #expect(log.contains("300000 bytes"), "\(log)")
        #expect(log.contains("serving with sink") && log.contains("rule=\(services):1"), "the chosen service and its rule are logged: \(log)")
        #expect(agent.isRunning)
    }

    /// `forward --listen stdio` with `input` on standard input: its status and output.
    func forwardStdio(_ world: SimWorld, domain: String, channel: String, input: [UInt8], tag: String) throws -> (Binaries.Result, [UInt8]) {
        let inputPath = world.tmp.path + "/\(tag).in", outputPath = world.tmp.path + "/\(tag).out"
        _ = FileManager.default.createFile(atPath: inputPath, contents: Data(input))
        let result = try Binaries.run("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \(inputPath) > \(outputPath)", try Binaries.guestAgent, "forward",
                                                  "--channel", channel, "--listen", "stdio", "--timeout", "20"] + world.agentOptions(domain), timeout: 60)
        let output = FileManager.default.contents(atPath: outputPath).map { [UInt8]($0) } ?? []
        return (result, output)
    }

    @Test("forward-unix service: a request through forward --listen stdio reaches a Unix socket server and its response comes back")
    func forwardUnixService() throws {
        let world = try SimWorld()
        let serverPath = world.tmp.path + "/orders.sock"
        let services = servicesFile(world, "legacy-*  refuse\norders-*  forward-unix \(serverPath)\n")
        try world.chanctl("channel", "create", "orders-1", "--between", "left", "right", "--pages", "8")

        // The local service: reads one request, answers, closes. The answer
        // is many rings long and the request's sender half-closes at once,
        // so the bridge waits for room after the peer's close.
        let body = (0..<4_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 10) }
        let response = Array("ORDER 42 ACCEPTED \(body.count)\n".utf8) + body
        let listener = try UnixSocket.listen(serverPath)
        defer { close(listener) }
        nonisolated(unsafe) var request: [UInt8] = []
        let served = DispatchSemaphore(value: 0)
        Thread {
            defer { served.signal() }
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 30_000) > 0 else { return }  // never blocks the test for ever
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            request = UnixSocket.read(connection) { $0.last == UInt8(ascii: "\n") }
            // MSG_NOSIGNAL: if the bridge drops the connection, the write
            // fails instead of killing the test runner with SIGPIPE.
            var offset = 0
            while offset < response.count {
                let n = response.withUnsafeBytes { send(connection, $0.baseAddress! + offset, response.count - offset, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { break }
                offset += n
            }
            close(connection)
        }.start()

        let agent = try world.spawnAgent(["run", "--wait", "block", "--services", services] + world.agentOptions("right"), log: "run")
        defer { stopProcess(agent) }
        let (result, output) = try forwardStdio(world, domain: "left", channel: "orders-1", input: Array("PLACE ORDER 42\n".utf8), tag: "orders")
        #expect(served.wait(timeout: .now() + 10) == .success, "the socket server was never reached: \(world.log("run"))")
        #expect(String(decoding: request, as: UTF8.self) == "PLACE ORDER 42\n")
        #expect(result.status == 0, "\(result.stderr) \(world.log("run"))")
        #expect(output.count == response.count, "\(output.count) of \(response.count) bytes: \(result.stderr) \(world.log("run"))")
        let intact = output == response  // compared outside #expect, which would print both arrays
        #expect(intact, "the response must arrive byte for byte")
        let log = world.log("run")
        #expect(log.contains("serving with forward-unix \(serverPath)") && log.contains("rule=\(services):2"), "\(log)")
        #expect(world.waitForLog("run", "connection 1 open"), "\(world.log("run"))")
    }

    @Test("refuse service: the channel is never opened, ping fails with a timeout, the refusal is logged once")
    func refuseService() throws {
        let world = try SimWorld()
        let services = servicesFile(world, "legacy-*  refuse\n")
        try world.chanctl("channel", "create", "legacy-1", "--between", "left", "right", "--pages", "4")
        let agent = try world.spawnAgent(["run", "--wait", "block", "--poll-ms", "20", "--services", services] + world.agentOptions("right"),
                                         log: "run")
        defer { stopProcess(agent) }
        #expect(world.waitForLog("run", "refused by \(services):1"), "\(world.log("run"))")
        let ping = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "legacy-1", "--count", "1", "--timeout", "2", "--wait", "block"]
                                    + world.agentOptions("left"), timeout: 30)
        #expect(ping.status == 1)
        #expect(ping.stderr.contains("timed out") && ping.stderr.contains("did not open its end"), "\(ping.stderr)")
        // Many polls later the refusal is still logged once, and nothing opened.
        let log = world.log("run")
        #expect(log.components(separatedBy: "refused by").count - 1 == 1, "\(log)")
        #expect(!log.contains("channel open"), "\(log)")
        #expect(agent.isRunning)
    }

    @Test("SIGHUP re-reads --services: new rules apply (refused channels included); a broken file keeps the old rules")
    func servicesReload() throws {
        let world = try SimWorld()
        let services = servicesFile(world, "hup-*  refuse\n")
        try world.chanctl("channel", "create", "hup-1", "--between", "left", "right", "--pages", "4")
        let agent = try world.spawnAgent(["run", "--wait", "block", "--poll-ms", "20", "--services", services] + world.agentOptions("right"),
                                         log: "run")
        defer { stopProcess(agent) }
        #expect(world.waitForLog("run", "refused by"), "\(world.log("run"))")

        _ = servicesFile(world, "hup-*  sink\n")
        kill(agent.processIdentifier, SIGHUP)
        #expect(world.waitForLog("run", "SIGHUP: re-read"), "\(world.log("run"))")
        let (first, _) = try cat(world, domain: "left", channel: "hup-1", input: Array(repeating: 7, count: 1000), tag: "hup1")
        #expect(first.status == 0, "the refused channel is served under the new rules: \(first.stderr) \(world.log("run"))")
        #expect(world.waitForLog("run", "1000 bytes"), "\(world.log("run"))")

        _ = servicesFile(world, "hup-*  teleport\n")
        kill(agent.processIdentifier, SIGHUP)
        #expect(world.waitForLog("run", "keeping the previous rules"), "\(world.log("run"))")
        #expect(world.log("run").contains("\(services):1: unknown service 'teleport'"), "\(world.log("run"))")
        try world.chanctl("channel", "create", "hup-2", "--between", "left", "right", "--pages", "4")
        let (second, _) = try cat(world, domain: "left", channel: "hup-2", input: Array(repeating: 9, count: 2000), tag: "hup2")
        #expect(second.status == 0, "\(second.stderr) \(world.log("run"))")
        #expect(world.waitForLog("run", "2000 bytes"), "still a sink under the kept rules: \(world.log("run"))")
        #expect(agent.isRunning)
    }

    @Test("--enforcement mprotect: run and ping --count 200 work end to end")
    func enforcementMprotect() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "guarded", "--between", "left", "right", "--pages", "4")
        let agent = try world.spawnAgent(["run", "--wait", "block", "--enforcement", "mprotect"] + world.agentOptions("right"), log: "run")
        defer { stopProcess(agent) }
        let ping = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "guarded", "--count", "200", "--wait", "block",
                                                          "--enforcement", "mprotect", "--json"] + world.agentOptions("left"), timeout: 60)
        #expect(ping.status == 0, "\(ping.stdout) \(ping.stderr) \(world.log("run"))")
        #expect(ping.json?["ok"] as? Bool == true, "\(ping.stdout)")
        #expect(ping.json?["count"] as? Int == 200, "\(ping.stdout)")
        #expect(((ping.json?["p50_ns"] as? NSNumber)?.uint64Value ?? 0) > 0, "\(ping.stdout)")
        #expect(ping.json?["enforcement"] as? String == "mprotect", "the platform must be attached with mprotect: \(ping.stdout)")
        #expect(world.log("run").contains("enforcement=mprotect"), "\(world.log("run"))")
        #expect(agent.isRunning, "\(world.log("run"))")
    }

    @Test("SIGTERM to run mid-ping: run closes politely and exits 0 within 3 s; ping exits 1 saying the peer closed")
    func politeShutdown() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "probe", "--between", "left", "right", "--pages", "4")
        let agent = try world.spawnAgent(["run", "--wait", "block"] + world.agentOptions("right"), log: "run")
        defer { stopProcess(agent) }
        let ping = try world.spawnAgent(["ping", "--channel", "probe", "--count", "1000000", "--wait", "block", "--timeout", "20"]
                                        + world.agentOptions("left"), log: "ping")
        defer { stopProcess(ping) }
        #expect(world.waitForLog("run", "channel open"), "\(world.log("run")) \(world.log("ping"))")
        usleep(500_000)
        #expect(ping.isRunning, "ping must be mid-way: \(world.log("ping"))")

        agent.terminate()  // SIGTERM
        let signalled = Date()
        let exited = waitForExit(agent, seconds: 3)
        let took = Date().timeIntervalSince(signalled)
        #expect(exited, "run must exit within 3 s of SIGTERM: \(world.log("run"))")
        #expect(agent.terminationStatus == 0, "\(world.log("run"))")
        print("SIGTERM: run exited after \(String(format: "%.3f", took)) s")
        #expect(waitForExit(ping, seconds: 5), "ping must end once its peer closed: \(world.log("ping"))")
        #expect(ping.terminationStatus == 1)
        let message = world.log("ping")
        #expect(message.contains("peerClosed") && message.contains("the peer closed channel probe"), "\(message)")
        #expect(!message.contains("died"), "a polite close is not a dead peer: \(message)")
        #expect(world.log("run").contains("stopping: closed the channel"), "\(world.log("run"))")

        // The agent detached: its domain is alive, not crashed.
        let domains = try world.chanctl("domain", "list").json?["domains"] as? [[String: Any]] ?? []
        let right = domains.first { $0["name"] as? String == "right" }
        #expect(right?["state"] as? String == "running", "\(domains)")
    }

    @Test("SIGTERM to ping or cat mid-run: it closes the channel, exits 1 saying it was stopped, and its domain stays alive")
    func pingAndCatStopPolitely() throws {
        let world = try SimWorld()
        for name in ["p", "c"] { try world.chanctl("channel", "create", name, "--between", "left", "right", "--pages", "4") }
        let agent = try world.spawnAgent(["run", "--wait", "block"] + world.agentOptions("right"), log: "run")
        defer { stopProcess(agent) }
        let ping = try world.spawnAgent(["ping", "--channel", "p", "--count", "100000000", "--wait", "block", "--timeout", "20"]
                                        + world.agentOptions("left"), log: "ping")
        defer { stopProcess(ping) }
        #expect(world.waitForLog("run", "channel open"), "\(world.log("run")) \(world.log("ping"))")
        usleep(300_000)
        ping.terminate()  // SIGTERM
        #expect(waitForExit(ping, seconds: 3), "ping must stop within 3 s: \(world.log("ping"))")
        #expect(ping.terminationStatus == 1)
        #expect(world.log("ping").contains("stopped by a signal"), "\(world.log("ping"))")

        // cat reading from a pipe that never ends.
        let cat = Process()
        cat.executableURL = URL(fileURLWithPath: try Binaries.guestAgent)
        cat.arguments = ["cat", "--channel", "c"] + world.agentOptions("left")
        let input = Pipe()
        cat.standardInput = input
        cat.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        cat.standardError = errors
        try cat.run()
        defer { stopProcess(cat) }
        input.fileHandleForWriting.write(Data(repeating: 0x41, count: 4096))
        usleep(500_000)
        cat.terminate()
        #expect(waitForExit(cat, seconds: 3), "cat must stop within 3 s")
        #expect(cat.terminationStatus == 1)
        let catErrors = String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
        #expect(catErrors.contains("stopped by a signal"), "\(catErrors)")

        // Both agents detached: the domain is alive, not crashed.
        let domains = try world.chanctl("domain", "list").json?["domains"] as? [[String: Any]] ?? []
        let left = domains.first { $0["name"] as? String == "left" }
        #expect(left?["state"] as? String == "running", "\(domains)")
    }

    @Test("a descriptor envelope altered in dom0's stored state: ping exits 1 naming the bad signature")
    func tamperedDescriptor() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "sealed", "--between", "left", "right", "--pages", "4")
        let domains = try world.chanctl("domain", "list").json?["domains"] as? [[String: Any]] ?? []
        let leftID = try #require(domains.first { $0["name"] as? String == "left" }?["domid"] as? Int, "\(domains)")

        // The simulator keeps the published descriptors in its journal and
        // reads it only at start: stop the daemon with a signal (state kept),
        // flip one byte of the stored envelope as someone with access to
        // dom0's storage could (fixing the record's CRC, which is an
        // integrity check against torn writes, not against an attacker),
        // and start the daemon again on the same state directory.
        let pidText = try String(contentsOfFile: world.state + "/daemon.pid", encoding: .utf8)
        let daemon = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(daemon, SIGTERM) == 0)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && processAlive(daemon) { usleep(20_000) }
        #expect(!processAlive(daemon), "the daemon must stop on SIGTERM")

        let journalPath = world.state + "/journal"
        var journal = [UInt8](try Data(contentsOf: URL(fileURLWithPath: journalPath)))
        let flipped = flipEnvelopeByte(&journal, channel: "sealed", domain: leftID)
        #expect(flipped, "no publishDescriptor record for sealed / domain \(leftID) in the journal")
        try Data(journal).write(to: URL(fileURLWithPath: journalPath))
        try world.chanctl("sim", "start")
        let channels = try world.chanctl("channel", "list").json?["channels"] as? [[String: Any]] ?? []
        #expect(channels.contains { $0["name"] as? String == "sealed" }, "the restarted daemon recovered the channel: \(channels)")

        let ping = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "sealed", "--count", "1", "--timeout", "2"]
                                    + world.agentOptions("left"), timeout: 30)
        #expect(ping.status == 1)
        #expect(ping.stderr.contains("descriptor rejected") && ping.stderr.contains("signature does not verify"), "\(ping.stderr)")
        #expect(ping.stderr.contains("altered"), "the message says what it likely means: \(ping.stderr)")

        // The other side's envelope was left alone: it opens (and then waits
        // in vain for a peer), so the rejection is the tampering's doing.
        let other = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "sealed", "--count", "1", "--timeout", "1"]
                                     + world.agentOptions("right"), timeout: 30)
        #expect(other.status == 1)
        #expect(!other.stderr.contains("descriptor rejected") && other.stderr.contains("timed out"), "\(other.stderr)")
    }
}

/// True while `pid` exists and is not a zombie (the daemon is not our child,
/// so whoever reaps it may take its time).
func processAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    return !stat[stat.index(after: close)...].hasPrefix(" Z")
}

/// Flips one hex digit in the middle of the envelope of the journal's
/// `publishDescriptor` record for `channel` and `domain`, and rewrites the
/// record's CRC-32. Journal records are u32 LE length, u32 LE CRC-32 of the
/// payload, then the JSON payload.
func flipEnvelopeByte(_ journal: inout [UInt8], channel: String, domain: Int) -> Bool {
    func u32(_ at: Int) -> Int {
        Int(journal[at]) | Int(journal[at + 1]) << 8 | Int(journal[at + 2]) << 16 | Int(journal[at + 3]) << 24
    }
    var position = 0
    while position + 8 <= journal.count {
        let length = u32(position), start = position + 8
        guard start + length <= journal.count else { return false }
        let payload = String(decoding: journal[start..<start + length], as: UTF8.self)
        if payload.contains("\"call\":\"publishDescriptor\""), payload.contains("\"name\":\"\(channel)\""),
           payload.contains("\"domain\":\(domain),") || payload.contains("\"domain\":\(domain)}"),
           let marker = payload.range(of: "\"envelope\":\"") {
            let hexStart = payload.utf8.distance(from: payload.utf8.startIndex, to: marker.upperBound)
            let hexLength = payload.utf8[marker.upperBound...].prefix { $0 != UInt8(ascii: "\"") }.count
            let at = start + hexStart + hexLength / 2
            let digit = Int(String(UnicodeScalar(journal[at])), radix: 16) ?? 0
            journal[at] = Array(String(digit ^ 1, radix: 16).utf8)[0]
            let crc = crc32(journal[start..<start + length])
            for i in 0..<4 { journal[position + 4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * i)) }
            return true
        }
        position = start + length
    }
    return false
}

/// CRC-32 (IEEE, reflected), as the journal uses.
func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
    }
    return crc ^ 0xFFFF_FFFF
}
