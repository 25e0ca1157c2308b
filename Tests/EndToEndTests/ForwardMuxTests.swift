import Foundation
import Testing

/// Python programs the multiplexed-forwarding tests drive: an HTTP/1.1 file
/// server, an upper-casing server that answers at end of file, and a client
/// of many concurrent keep-alive requests whose bodies are SHA-256 checked.
enum MuxScripts {
    static let server = """
        import sys, http.server, functools
        class H(http.server.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *a): pass
        handler = functools.partial(H, directory=sys.argv[2])
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
        """
    static let upper = """
        import sys, socket
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
        while True:
            c, _ = s.accept(); data = b""
            while True:
                b = c.recv(65536)
                if not b: break
                data += b
            c.sendall(data.upper()); c.close()
        """
    static let files = """
        import sys, os, hashlib, json
        d = sys.argv[1]; out = {}
        for name, size in [("small", 1000), ("medium", 150000), ("large", 3000000), ("huge", 50000000)]:
            b = os.urandom(size); open(os.path.join(d, name), "wb").write(b); out[name] = hashlib.sha256(b).hexdigest()
        json.dump(out, open(os.path.join(d, "..", "sums.json"), "w"))
        """
    /// argv: port, sums.json, threads, requests per connection.
    static let client = """
        import sys, json, hashlib, threading, http.client, time
        port, sums, threads, per = int(sys.argv[1]), json.load(open(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])
        names = ["small", "medium", "large"]; ok = []; bad = []
        def work(i):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                for k in range(per):
                    name = names[(i + k) % 3]
                    c.request("GET", "/" + name); r = c.getresponse(); body = r.read()
                    if r.status == 200 and hashlib.sha256(body).hexdigest() == sums[name]: ok.append(name)
                    else: bad.append((name, r.status, len(body)))
                c.close()
            except Exception as e: bad.append(repr(e))
        ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        t0 = time.time(); [t.start() for t in ts]; [t.join(90) for t in ts]
        print(json.dumps({"ok": len(ok), "bad": [str(b) for b in bad[:5]], "failed": len(bad), "seconds": time.time() - t0}))
        """
    /// argv: port, sums.json, name: one GET, prints seconds and whether the body matched.
    static let fetch = """
        import sys, json, hashlib, http.client, time
        port, sums, name = int(sys.argv[1]), json.load(open(sys.argv[2])), sys.argv[3]
        t0 = time.time(); c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("GET", "/" + name); body = c.getresponse().read(); t = time.time() - t0
        print(json.dumps({"seconds": t, "bytes": len(body), "ok": hashlib.sha256(body).hexdigest() == sums[name]}))
        """
}

/// A port nothing listens on now (bound to 0, read back, closed).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
            _ = bind(fd, p, length)
            return getsockname(fd, p, &length)
        }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// User plus system CPU seconds of `pid` so far (/proc/PID/stat).
private func cpuSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A client connection to 127.0.0.1:`port`, retried until something
/// accepts or `seconds` pass (-1 then).
func connectLoopback(_ port: Int, seconds: Double) -> Int32 {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if ok == 0 { return fd }
        close(fd)
        guard Date() < deadline else { return -1 }
        usleep(20_000)
    }
}

/// Waits until something accepts on 127.0.0.1:`port` (true) or `seconds` pass.
func waitForPort(_ port: Int, seconds: Double) -> Bool {
    let fd = connectLoopback(port, seconds: seconds)
    if fd >= 0 { close(fd) }
    return fd >= 0
}

/// A world with a channel, a local service on `servicePort` behind
/// `forward --connect` (right) and `forward --listen` on `port` (left).
final class MuxWorld {
    let world: SimWorld
    let port = freePort()
    let servicePort = freePort()
    var processes: [Process] = []

    init(pages: Int = 16) throws {
        world = try SimWorld()
        try world.chanctl("channel", "create", "web", "--between", "left", "right", "--pages", "\(pages)")
    }

    deinit { processes.forEach { stopProcess($0) } }

    func script(_ name: String, _ text: String) throws -> String {
        let path = world.tmp.path + "/\(name).py"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @discardableResult
    func python(_ name: String, _ text: String, _ arguments: [String]) throws -> Process {
        let p = try world.spawn("/usr/bin/python3", [try script(name, text)] + arguments, log: name)
        processes.append(p)
        return p
    }

    /// Starts both forwarders and waits for the listening port.
    func forwarders(connectArguments: [String] = []) throws {
        let connect = try world.spawnAgent(["forward", "--channel", "web", "--connect", "tcp:127.0.0.1:\(servicePort)"] + connectArguments
                                           + world.agentOptions("right"), log: "fwd-connect")
        processes.append(connect)
        let listen = try world.spawnAgent(["forward", "--channel", "web", "--listen", "tcp:\(port)"] + world.agentOptions("left"),
                                          log: "fwd-listen")
        processes.append(listen)
        try #require(waitForPort(port, seconds: 30), "the listening forwarder never listened: \(world.log("fwd-listen")) \(world.log("fwd-connect"))")
    }

    func httpServer() throws {
        let files = world.tmp.path + "/files"
        try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
        let made = try Binaries.run("/usr/bin/python3", [try script("files", MuxScripts.files), files], timeout: 60)
        try #require(made.status == 0, "\(made.stderr)")
        try python("server", MuxScripts.server, ["\(servicePort)", files])
        try #require(waitForPort(servicePort, seconds: 20), "the HTTP server never listened: \(world.log("server"))")
    }

    var sums: String { world.tmp.path + "/sums.json" }

    func runPython(_ name: String, _ text: String, _ arguments: [String], timeout: Double) throws -> [String: Any] {
        let result = try Binaries.run("/usr/bin/python3", [try script(name, text)] + arguments, timeout: timeout)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return try #require(json, "\(name): \(result.stdout) \(result.stderr)")
    }

    /// The most connections the listening forwarder had open at once.
    var peak: Int {
        world.log("fwd-listen").components(separatedBy: "at most ").dropFirst()
            .compactMap { Int($0.prefix { $0.isNumber }) }.max() ?? 0
    }
}

@Suite("End to end: guest-agent forward --listen/--connect, many connections over one channel", .serialized)
struct ForwardMuxTests {
    @Test("50 concurrent keep-alive HTTP clients (3 requests each) through one channel: every body SHA-256 equal, connections overlapped")
    func concurrentHTTP() throws {
        let mux = try MuxWorld()
        try mux.httpServer()
        try mux.forwarders()
        let result = try mux.runPython("client", MuxScripts.client, ["\(mux.port)", mux.sums, "50", "3"], timeout: 240)
        let log = "\(mux.world.log("fwd-listen")) \(mux.world.log("fwd-connect"))"
        #expect(result["ok"] as? Int == 150, "\(result); \(log.suffix(3000))")
        #expect(result["failed"] as? Int == 0, "\(result)")
        #expect(mux.peak > 1, "the connections must overlap (at most \(mux.peak) at once)")
        print("forward mux: 150 requests on 50 connections in \(result["seconds"] ?? "?") s, at most \(mux.peak) at once")

        // Idle, the forwarders do not spin: CPU time over 2 s of wall time.
        let before = mux.processes.map { cpuSeconds($0.processIdentifier) }
        usleep(2_000_000)
        let used = zip(mux.processes, before).map { cpuSeconds($0.0.processIdentifier) - $0.1 }
        print("forward mux: idle CPU over 2 s: \(used.map { String(format: "%.3f", $0) }) s")
        #expect(used.allSatisfy { $0 < 0.5 }, "an idle forwarder must not spin: \(used) s of CPU in 2 s")
    }

    @Test("A client that requests 50 MB and never reads stalls only its own connection; the others complete, and after it closes the forwarder still serves")
    func stalledConnection() throws {
        let mux = try MuxWorld()
        try mux.httpServer()
        try mux.forwarders()
        let stalled = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(mux.port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(stalled, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(connected == 0)
        #expect(UnixSocket.writeAll(stalled, Array("GET /huge HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        usleep(1_000_000)  // its window fills while nobody reads
        let others = try mux.runPython("client", MuxScripts.client, ["\(mux.port)", mux.sums, "10", "2"], timeout: 120)
        #expect(others["ok"] as? Int == 20, "\(others) \(mux.world.log("fwd-listen").suffix(2000))")
        #expect((others["seconds"] as? Double ?? 999) < 60, "\(others)")
        close(stalled)
        let after = try mux.runPython("fetch", MuxScripts.fetch, ["\(mux.port)", mux.sums, "medium"], timeout: 60)
        #expect(after["ok"] as? Bool == true, "\(after) \(mux.world.log("fwd-listen").suffix(2000))")
        let running = mux.processes.allSatisfy { $0.isRunning }
        #expect(running, "both forwarders carry on")
    }

    @Test("Half-close: a request then shutdown(SHUT_WR) still gets the whole answer; --listen stdio as a ProxyCommand ends with status 0")
    func halfCloseAndStdio() throws {
        let mux = try MuxWorld()
        try mux.python("upper", MuxScripts.upper, ["\(mux.servicePort)"])
        try #require(waitForPort(mux.servicePort, seconds: 20))
        // waitForPort's probe connection is answered with nothing: harmless.
        try mux.forwarders()
        let text = String(repeating: "half-closed request ", count: 20_000)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(mux.port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(connected == 0)
        #expect(UnixSocket.writeAll(fd, Array(text.utf8)))
        shutdown(fd, Int32(SHUT_WR))
        let answer = UnixSocket.read(fd, within: 60)
        close(fd)
        #expect(answer == Array(text.uppercased().utf8), "\(answer.count) of \(text.utf8.count) bytes: \(mux.world.log("fwd-listen").suffix(2000))")

        // stdio: a second listening forwarder would need a second channel;
        // stop the TCP one (SIGTERM, status 0) and use the channel again.
        let listen = mux.processes.last!
        kill(listen.processIdentifier, SIGTERM)
        #expect(waitForExit(listen, seconds: 10))
        #expect(listen.terminationStatus == 0, "\(mux.world.log("fwd-listen"))")
        let connector = mux.processes[mux.processes.count - 2]
        #expect(waitForExit(connector, seconds: 10), "the connecting forwarder ends when the peer closes: \(mux.world.log("fwd-connect"))")
        #expect(connector.terminationStatus == 0, "\(mux.world.log("fwd-connect"))")
        let again = try mux.world.spawnAgent(["forward", "--channel", "web", "--connect", "tcp:127.0.0.1:\(mux.servicePort)"] + mux.world.agentOptions("right"),
                                             log: "fwd-connect2")
        mux.processes.append(again)
        let input = mux.world.tmp.path + "/stdin"
        try "ssh-like bytes\n".write(toFile: input, atomically: true, encoding: .utf8)
        let proxy = try Binaries.run("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \(input)", try Binaries.guestAgent, "forward", "--channel", "web",
                                                 "--listen", "stdio", "--timeout", "30"] + mux.world.agentOptions("left"), timeout: 60)
        #expect(proxy.status == 0, "\(proxy.stderr) \(mux.world.log("fwd-connect2"))")
        #expect(proxy.stdout == "SSH-LIKE BYTES\n", "\(proxy.stdout) \(proxy.stderr)")
    }

    @Test("--connect stdio carries the first connection on standard input and output (both half-closes) and refuses a second")
    func connectStdio() throws {
        let mux = try MuxWorld(pages: 4)
        let input = mux.world.tmp.path + "/answer", output = mux.world.tmp.path + "/question"
        try "the answer\n".write(toFile: input, atomically: true, encoding: .utf8)
        let connector = try mux.world.spawn("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \(input) > \(output)", try Binaries.guestAgent, "forward",
                                                        "--channel", "web", "--connect", "stdio"] + mux.world.agentOptions("right"), log: "fwd-connect")
        mux.processes.append(connector)
        let listen = try mux.world.spawnAgent(["forward", "--channel", "web", "--listen", "tcp:\(mux.port)"] + mux.world.agentOptions("left"),
                                              log: "fwd-listen")
        mux.processes.append(listen)
        // The first connection that gets through is the one on standard input and output.
        func connectTCP() -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(mux.port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if ok != 0 { close(fd); return -1 }
            return fd
        }
        let deadline = Date().addingTimeInterval(30)
        var first: Int32 = -1
        while first < 0 && Date() < deadline { first = connectTCP(); if first < 0 { usleep(20_000) } }
        try #require(first >= 0, "\(mux.world.log("fwd-listen"))")
        defer { close(first) }
        #expect(UnixSocket.writeAll(first, Array("the question\n".utf8)))
        shutdown(first, Int32(SHUT_WR))
        let answer = UnixSocket.read(first, within: 20)
        #expect(String(decoding: answer, as: UTF8.self) == "the answer\n", "\(mux.world.log("fwd-listen")) \(mux.world.log("fwd-connect"))")
        let finish = Date().addingTimeInterval(20)
        while ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "") != "the question\n" && Date() < finish { usleep(20_000) }
        #expect(((try? String(contentsOfFile: output, encoding: .utf8)) ?? "") == "the question\n")

        let second = connectTCP()
        try #require(second >= 0)
        defer { close(second) }
        #expect(UnixSocket.read(second, within: 20).isEmpty, "a second connection is refused: standard input and output carried the first")
        #expect(mux.world.waitForLog("fwd-listen", "busy: standard input and output carry one connection"), "\(mux.world.log("fwd-listen"))")
    }

    @Test("A peer that is not a forwarder (cat with garbage) or sends a DATA frame for an unknown connection ends the session with a named protocol error, no crash",
          arguments: [("garbage", "not a forwarder\n", "does not speak the forwarding protocol"),
                      ("unknown", "hello", "DATA frame for unknown connection 7")])
    func hostilePeer(name: String, input: String, expected: String) throws {
        let mux = try MuxWorld(pages: 4)
        var bytes = Array(input.utf8)
        if name == "unknown" {
            bytes = [1, 0, 0, 0, 0, 0, 0, 0, 11] + Array("GAFWD".utf8) + [1, 0, 0, 4, 0, 0] + [5, 0, 0, 0, 7, 0, 0, 0, 1, 0x78]
        }
        let file = mux.world.tmp.path + "/hostile"
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let connect = try mux.world.spawnAgent(["forward", "--channel", "web", "--connect", "tcp:127.0.0.1:\(mux.servicePort)"] + mux.world.agentOptions("right"),
                                               log: "fwd-connect")
        mux.processes.append(connect)
        _ = try Binaries.run("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \(file) > /dev/null", try Binaries.guestAgent, "cat", "--channel", "web",
                                         "--timeout", "30"] + mux.world.agentOptions("left"), timeout: 60)
        #expect(waitForExit(connect, seconds: 20), "\(mux.world.log("fwd-connect"))")
        #expect(connect.terminationStatus == 1)
        let log = mux.world.log("fwd-connect")
        #expect(log.contains("protocol error") && log.contains(expected), "\(log)")
    }

    @Test("run's forward-tcp service serves 20 concurrent keep-alive HTTP clients from forward --listen, every body SHA-256 equal")
    func forwardTCPService() throws {
        let mux = try MuxWorld()
        try mux.httpServer()
        let services = mux.world.tmp.path + "/services.conf"
        try "web  forward-tcp 127.0.0.1:\(mux.servicePort)\n".write(toFile: services, atomically: true, encoding: .utf8)
        let run = try mux.world.spawnAgent(["run", "--wait", "block", "--services", services] + mux.world.agentOptions("right"), log: "run")
        mux.processes.append(run)
        let listen = try mux.world.spawnAgent(["forward", "--channel", "web", "--listen", "tcp:127.0.0.1:\(mux.port)"] + mux.world.agentOptions("left"),
                                              log: "fwd-listen")
        mux.processes.append(listen)
        try #require(waitForPort(mux.port, seconds: 30), "\(mux.world.log("fwd-listen")) \(mux.world.log("run"))")
        let result = try mux.runPython("client", MuxScripts.client, ["\(mux.port)", mux.sums, "20", "3"], timeout: 180)
        #expect(result["ok"] as? Int == 60, "\(result); \(mux.world.log("run").suffix(2000))")
        #expect(mux.world.log("run").contains("serving with forward-tcp 127.0.0.1:\(mux.servicePort)"), "\(mux.world.log("run"))")
        #expect(mux.peak > 1, "the connections must overlap (at most \(mux.peak) at once)")
        #expect(run.isRunning && listen.isRunning)
    }

    @Test("Throughput: one 50 MB body through the forwarder vs. directly over loopback TCP (printed)")
    func throughput() throws {
        let mux = try MuxWorld(pages: 64)
        try mux.httpServer()
        try mux.forwarders()
        let direct = try mux.runPython("fetch", MuxScripts.fetch, ["\(mux.servicePort)", mux.sums, "huge"], timeout: 300)
        let forwarded = try mux.runPython("fetch", MuxScripts.fetch, ["\(mux.port)", mux.sums, "huge"], timeout: 300)
        #expect(direct["ok"] as? Bool == true && forwarded["ok"] as? Bool == true, "\(direct) \(forwarded)")
        let d = direct["seconds"] as? Double ?? 0, f = forwarded["seconds"] as? Double ?? 0
        print(String(format: "forward mux throughput: 50 MB direct %.3f s (%.1f MB/s), forwarded %.3f s (%.1f MB/s), ratio %.1fx",
                     d, 50 / d, f, 50 / f, f / d))
    }
}
