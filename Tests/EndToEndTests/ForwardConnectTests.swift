import Foundation
import Testing

/// Programs the connect, reset and limit tests drive.
private enum ConnectScripts {
    /// argv: port. A TCP upper-casing server whose listening socket first
    /// drops every packet (a socket filter returning 0), so the first connect
    /// to it hangs in SYN_SENT like one to a host that never answers. Once
    /// that connect shows in /proc/net/tcp, only its source port stays
    /// dropped: later connects get through, the hung one never does.
    static let blackhole = """
        import sys, socket, ctypes, struct, time
        port = int(sys.argv[1])
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port)); s.listen(8)
        keep = []
        def attach(prog):
            code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog)); keep.append(code)
            s.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", len(prog), ctypes.addressof(code)))  # SO_ATTACH_FILTER
        attach([(0x06, 0, 0, 0)])
        print("listening", file=sys.stderr, flush=True)
        stuck = None
        while stuck is None:
            for line in open("/proc/net/tcp").read().splitlines()[1:]:
                f = line.split()
                if f[3] == "02" and int(f[2].split(":")[1], 16) == port: stuck = int(f[1].split(":")[1], 16)
            time.sleep(0.02)
        # ldh [0] (the TCP source port); jeq stuck: drop; else accept
        attach([(0x28, 0, 0, 0), (0x15, 1, 0, stuck), (0x06, 0, 0, 0xffffffff), (0x06, 0, 0, 0)])
        print("stuck %d" % stuck, file=sys.stderr, flush=True)
        while True:
            c, _ = s.accept(); data = b""
            while True:
                b = c.recv(65536)
                if not b: break
                data += b
            c.sendall(data.upper()); c.close()
        """
    /// argv: service port, listening forwarder's port. An echo service with
    /// a backlog of 1 that accepts one connection only; once the first
    /// client echoes through the forwarders, the script fills the
    /// service's accept queue itself, opens a second client (whose connect
    /// on the far side now hangs) and times an echo on the first.
    static let stuck = """
        import sys, socket, threading, time, json
        sport, fport = int(sys.argv[1]), int(sys.argv[2])
        srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", sport)); srv.listen(1)
        def echo():
            c, _ = srv.accept()
            while True:
                b = c.recv(65536)
                if not b: break
                c.sendall(b)
        threading.Thread(target=echo, daemon=True).start()
        def roundtrip(s, data):
            t0 = time.time(); s.sendall(data); got = b""
            while len(got) < len(data):
                b = s.recv(65536)
                if not b: break
                got += b
            return got == data, time.time() - t0
        c1 = socket.create_connection(("127.0.0.1", fport), timeout=30)
        ok1, _ = roundtrip(c1, b"first")
        fillers = []
        for _ in range(3):
            f = socket.socket(); f.setblocking(False); f.connect_ex(("127.0.0.1", sport)); fillers.append(f)
        time.sleep(0.3)
        c2 = socket.create_connection(("127.0.0.1", fport), timeout=30)
        c2.settimeout(30)
        t2 = time.time()
        time.sleep(0.5)
        c1.settimeout(10)
        try: ok2, echo_s = roundtrip(c1, b"second while another connection's connect hangs")
        except Exception as e: ok2, echo_s = False, repr(e)
        try: end = c2.recv(100); c2_end = "eof" if end == b"" else "data"
        except ConnectionResetError: c2_end = "reset"
        except Exception as e: c2_end = repr(e)
        print(json.dumps({"first": ok1, "second": ok2, "echo_seconds": echo_s, "c2_end": c2_end, "c2_seconds": time.time() - t2}))
        """
}

/// Waits until a socket listens on 127.0.0.1:`port` (/proc/net/tcp, so no
/// probe connection is made), true, or `seconds` pass.
func waitForListening(_ port: Int, seconds: Double = 30) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    let local = String(format: "0100007F:%04X", port)
    repeat {
        let table = (try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)) ?? ""
        if table.split(separator: "\n").contains(where: { $0.split(separator: " ").count > 3 && $0.split(separator: " ")[1] == local && $0.split(separator: " ")[3] == "0A" }) {
            return true
        }
        usleep(20_000)
    } while Date() < deadline
    return false
}

@Suite("End to end: forward --connect connects without blocking, local resets and the connection limit", .serialized)
struct ForwardConnectTests {
    @Test("A connect that hangs (SYNs dropped) stops no other connection: a second one completes meanwhile; the hung one is refused at the connect timeout, naming the address and the error")
    func hungConnectBlocksNothing() throws {
        let mux = try MuxWorld(pages: 4)
        let timeout = 4.0
        // The forwarders first: the probe that waits for the listening port
        // is connection 1, refused at once (nothing listens yet), so the
        // connect the server sees hang is the test's own.
        try mux.forwarders(connectArguments: ["--connect-timeout", "\(timeout)"])
        try #require(mux.world.waitForLog("fwd-connect", "connection 1 refused"), "\(mux.world.log("fwd-connect"))")
        try mux.python("blackhole", ConnectScripts.blackhole, ["\(mux.servicePort)"])
        try #require(mux.world.waitForLog("blackhole", "listening"), "\(mux.world.log("blackhole"))")
        let hung = connectLoopback(mux.port, seconds: 0)
        try #require(hung >= 0)
        defer { close(hung) }
        let started = Date()
        #expect(UnixSocket.writeAll(hung, Array("never delivered\n".utf8)))
        try #require(mux.world.waitForLog("blackhole", "stuck ", seconds: 10),
                     "the first connect never hung: \(mux.world.log("blackhole")) \(mux.world.log("fwd-connect"))")

        let second = connectLoopback(mux.port, seconds: 0)
        try #require(second >= 0)
        defer { close(second) }
        #expect(UnixSocket.writeAll(second, Array("second connection\n".utf8)))
        shutdown(second, Int32(SHUT_WR))
        let answer = UnixSocket.read(second, within: 20)
        let answered = Date().timeIntervalSince(started)
        #expect(String(decoding: answer, as: UTF8.self) == "SECOND CONNECTION\n",
                "\(mux.world.log("fwd-connect").suffix(2000)) \(mux.world.log("fwd-listen").suffix(2000))")
        #expect(answered < timeout, "the second connection completed only after \(answered) s, not while the first was connecting")
        #expect(!mux.world.log("fwd-connect").contains("not connected within"), "the second answer came before the first was given up")

        // The hung one: REFUSED at the timeout, so its local client is closed.
        let rest = UnixSocket.read(hung, within: timeout + 10)
        let closedAfter = Date().timeIntervalSince(started)
        #expect(rest.isEmpty)
        #expect(closedAfter >= timeout - 0.5 && closedAfter < timeout + 8, "closed after \(closedAfter) s")
        let expected = "connection 2 refused by the peer: cannot connect to tcp:127.0.0.1:\(mux.servicePort): not connected within 4.0 s"
        #expect(mux.world.waitForLog("fwd-listen", expected, seconds: 5), "\(mux.world.log("fwd-listen").suffix(2000))")
        #expect(mux.processes.allSatisfy { $0.isRunning }, "both forwarders carry on")
    }

    @Test("a service that accepts no more (full backlog, SYNs dropped): the other connection's echo goes on at once, and the stuck one is refused at --connect-timeout naming the address")
    func stuckConnectDoesNotStallOthers() throws {
        let mux = try MuxWorld()
        try mux.forwarders(connectArguments: ["--connect-timeout", "3"])
        let result = try mux.runPython("stuck", ConnectScripts.stuck, ["\(mux.servicePort)", "\(mux.port)"], timeout: 90)
        let logs = "\(mux.world.log("fwd-connect")) \(mux.world.log("fwd-listen"))"
        #expect(result["first"] as? Bool == true, "\(result) \(logs)")
        // The attack happened: the second connection was still unanswered
        // when the first echoed, and was refused for its connect timing out.
        #expect(mux.world.log("fwd-connect").contains("not connected within 3.0 s"), "\(logs)")
        #expect(result["second"] as? Bool == true, "the echo stalled behind the hanging connect: \(result) \(logs)")
        #expect((result["echo_seconds"] as? Double ?? 99) < 2, "\(result)")
        #expect(["eof", "reset"].contains(result["c2_end"] as? String ?? ""), "\(result)")
        let refusedAfter = result["c2_seconds"] as? Double ?? 0
        #expect(refusedAfter > 2 && refusedAfter < 15, "the stuck connection must be refused at about 3 s: \(result)")
    }

    @Test("A connect to a closed port is refused naming the address and errno text; the forwarder carries on")
    func refusedConnect() throws {
        let mux = try MuxWorld(pages: 4)
        try mux.forwarders()
        let fd = connectLoopback(mux.port, seconds: 0)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(UnixSocket.read(fd, within: 20).isEmpty)
        let expected = "refused by the peer: cannot connect to tcp:127.0.0.1:\(mux.servicePort): Connection refused"
        #expect(mux.world.waitForLog("fwd-listen", expected, seconds: 10), "\(mux.world.log("fwd-listen").suffix(2000))")
        #expect(mux.processes.allSatisfy { $0.isRunning })
    }

    @Test("A client that resets its connection mid-transfer (SO_LINGER 0): the peer gets RESET naming the error, while a 50 MB body on another connection completes SHA-256 equal")
    func localReset() throws {
        let mux = try MuxWorld()
        try mux.httpServer()
        try mux.forwarders()
        let other = try mux.python("other", MuxScripts.fetch, ["\(mux.port)", mux.sums, "huge"])
        let fd = connectLoopback(mux.port, seconds: 0)
        try #require(fd >= 0)
        #expect(UnixSocket.writeAll(fd, Array("GET /huge HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        // Mid-transfer: part of its body came, more is on the way.
        let part = UnixSocket.read(fd, within: 30) { $0.count >= 200_000 }
        #expect(part.count >= 200_000)
        var abort = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, socklen_t(MemoryLayout<linger>.size))
        close(fd)  // a TCP RST

        let reasons = ["local socket: Connection reset by peer", "local socket: Broken pipe"]
        let deadline = Date().addingTimeInterval(20)
        while !reasons.contains(where: { mux.world.log("fwd-connect").contains("reset by the peer: writing to the \($0)")
                                         || mux.world.log("fwd-connect").contains("reset by the peer: reading the \($0)") }),
              Date() < deadline { usleep(20_000) }
        let connectLog = mux.world.log("fwd-connect")
        #expect(reasons.contains(where: { connectLog.contains($0) }) && connectLog.contains("reset by the peer"),
                "the connecting side gets RESET naming the local error: \(connectLog.suffix(2000)) \(mux.world.log("fwd-listen").suffix(2000))")

        #expect(waitForExit(other, seconds: 120), "the other transfer never ended")
        let json = (try? String(contentsOfFile: mux.world.tmp.path + "/other.out", encoding: .utf8)) ?? ""
        let result = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
        #expect(result?["ok"] as? Bool == true && result?["bytes"] as? Int == 50_000_000, "\(json) \(mux.world.log("other"))")
        let after = try mux.runPython("fetch", MuxScripts.fetch, ["\(mux.port)", mux.sums, "medium"], timeout: 60)
        #expect(after["ok"] as? Bool == true, "\(after)")
        #expect(mux.processes.filter { $0 !== other }.allSatisfy { $0.isRunning }, "both forwarders carry on")
    }

    @Test("--max-connections 2: a third connection is closed at once (listening side) or refused (connecting side), while the first two stay open and complete",
          arguments: ["listen", "connect"])
    func connectionLimit(side: String) throws {
        let mux = try MuxWorld(pages: 4)
        try mux.python("upper", MuxScripts.upper, ["\(mux.servicePort)"])
        try #require(waitForListening(mux.servicePort), "\(mux.world.log("upper"))")
        let limit = ["--max-connections", "2"]
        let connect = try mux.world.spawnAgent(["forward", "--channel", "web", "--connect", "tcp:127.0.0.1:\(mux.servicePort)"]
                                               + (side == "connect" ? limit : []) + mux.world.agentOptions("right"), log: "fwd-connect")
        mux.processes.append(connect)
        let listen = try mux.world.spawnAgent(["forward", "--channel", "web", "--listen", "tcp:\(mux.port)"]
                                              + (side == "listen" ? limit : []) + mux.world.agentOptions("left"), log: "fwd-listen")
        mux.processes.append(listen)
        // No probe connection: it would count towards the limit.
        try #require(waitForListening(mux.port), "\(mux.world.log("fwd-listen"))")
        let first = connectLoopback(mux.port, seconds: 0), second = connectLoopback(mux.port, seconds: 0)
        defer { close(first); close(second) }
        try #require(first >= 0 && second >= 0)
        let limited = side == "listen" ? "fwd-listen" : "fwd-connect"
        try #require(mux.world.waitForLog(limited, "(2 at once"), "\(mux.world.log(limited))")

        let third = connectLoopback(mux.port, seconds: 0)
        try #require(third >= 0)
        defer { close(third) }
        #expect(UnixSocket.read(third, within: 20).isEmpty, "the third connection is closed")
        let expected = side == "listen" ? "2 connections open already (--max-connections 2)"
                                        : "connection 3 refused by the peer: 2 connections open already (--max-connections)"
        #expect(mux.world.waitForLog("fwd-listen", expected), "\(mux.world.log("fwd-listen"))")

        for (fd, text) in [(first, "first"), (second, "second")] {
            #expect(UnixSocket.writeAll(fd, Array(text.utf8)))
            shutdown(fd, Int32(SHUT_WR))
            #expect(String(decoding: UnixSocket.read(fd, within: 20), as: UTF8.self) == text.uppercased(),
                    "\(mux.world.log("fwd-listen").suffix(1500)) \(mux.world.log("fwd-connect").suffix(1500))")
        }
        #expect(connect.isRunning && listen.isRunning)
    }
}
