import Foundation
import Testing

/// The connecting forwarder's connects never hold up the channel: a service
/// that does not accept (a full backlog, SYNs dropped) leaves every other
/// connection running, and the stuck one is refused at --connect-timeout.
private enum ConnectScripts {
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

@Suite("End to end: forward --connect never blocks on a connect", .serialized)
struct ForwardMuxConnectTests {
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
}
