import Foundation
import Testing

/// A hostile peer speaking the forwarding protocol (docs/PROTOCOL.md,
/// "Forwarding"): `guest-agent cat` writes prepared frames into the channel,
/// each batch one message, and the forwarder on the other end must end the
/// session with a protocol error naming the frame: exit status 1, no crash,
/// no hang.
private enum HostileFrames {
    static func frame(_ type: UInt8, _ id: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        func u32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
        return [type] + u32(id) + u32(UInt32(payload.count)) + payload
    }

    /// HELLO: magic, version, role (0 listens, 1 connects), window.
    static func hello(version: UInt8 = 1, role: UInt8, window: UInt32 = 256 * 1024) -> [UInt8] {
        frame(1, 0, Array("GAFWD".utf8) + [version, role] + [UInt8(window >> 24), UInt8(truncatingIfNeeded: window >> 16),
                                                              UInt8(truncatingIfNeeded: window >> 8), UInt8(truncatingIfNeeded: window)])
    }

    static func credit(_ id: UInt32, _ grant: UInt32) -> [UInt8] {
        frame(6, id, [UInt8(grant >> 24), UInt8(truncatingIfNeeded: grant >> 16), UInt8(truncatingIfNeeded: grant >> 8), UInt8(truncatingIfNeeded: grant)])
    }

    static let open: UInt8 = 2, opened: UInt8 = 3, refused: UInt8 = 4, data: UInt8 = 5, fin: UInt8 = 7, reset: UInt8 = 8

    /// Against `forward --connect` (the hostile peer plays the listener,
    /// role 0): a first message (a HELLO and what follows it) and, for the
    /// frames that need connection 1 open, a second one sent once the
    /// forwarder connected it to a service that accepts.
    static let againstConnect: [(String, [UInt8], [UInt8], String)] = {
        let h = hello(role: 0)
        let open1 = h + frame(open, 1)
        return [
            ("unknown type", h + frame(9, 1), [], "unknown frame type 9"),
            ("short header", h + [5, 0, 0, 0, 1], [], "short frame: 5 bytes left"),
            ("length past the message", h + [5, 0, 0, 0, 1, 0, 0, 0, 100, 1, 2], [], "claims 100 bytes but the message holds 2"),
            ("wrong version", hello(version: 2, role: 0), [], "forwarding protocol version 2"),
            ("same role", hello(role: 1), [], "the peer also connects"),
            ("window out of range", hello(role: 0, window: 100), [], "grants a window of 100 bytes"),
            ("second HELLO", h + h, [], "a second HELLO"),
            ("OPENED from the listening side", h + frame(opened, 1), [], "OPENED frame from the listening side"),
            ("REFUSED from the listening side", h + frame(refused, 1, Array("no".utf8)), [], "REFUSED frame from the listening side"),
            ("OPEN with a payload", h + frame(open, 1, [1]), [], "OPEN frame for connection 1 has a payload of 1 bytes"),
            ("OPEN reusing an id", open1, frame(open, 1), "reuses an id"),
            ("CREDIT of 0", open1, credit(1, 0), "CREDIT frame of 0 bytes"),
            ("CREDIT past the announced window", open1, credit(1, 1), "past the 262144-byte window the peer announced"),
            ("FIN twice", open1, frame(fin, 1) + frame(fin, 1), "a second FIN frame for connection 1"),
            ("DATA after FIN", open1, frame(fin, 1) + frame(data, 1, [1]), "DATA frame for connection 1 after its FIN"),
            ("empty DATA", open1, frame(data, 1), "DATA frame for connection 1 has a payload of 0 bytes"),
            ("a frame for an id never used", open1, credit(5, 10), "CREDIT frame for unknown connection 5"),
            ("an oversize RESET reason", open1, frame(reset, 1, [UInt8](repeating: 0x41, count: 600)), "RESET frame for connection 1 has a payload of 600 bytes"),
        ]
    }()

    /// Against `forward --listen` (the peer plays the connector, role 1):
    /// the HELLO, then, once a client connected (so the forwarder sent
    /// OPEN 1), the second batch.
    static let againstListen: [(String, [UInt8], [UInt8], String)] = {
        let h = hello(role: 1)
        return [
            ("OPEN from the connecting side", h + frame(open, 1), [], "OPEN frame from the connecting side"),
            ("DATA before OPENED", h, frame(data, 1, [1, 2, 3]), "DATA frame for connection 1 before it was open"),
            ("FIN before OPENED", h, frame(fin, 1), "FIN frame for connection 1 before it was open"),
            ("OPENED twice", h, frame(opened, 1) + frame(opened, 1), "OPENED frame for connection 1, which is already open"),
            ("CREDIT past the announced window", h, frame(opened, 1) + credit(1, 1), "past the 262144-byte window the peer announced"),
        ]
    }()
}

/// A TCP socket listening on 127.0.0.1:`port` that is never accepted from:
/// the kernel completes connections into its backlog, so a connect to it
/// succeeds at once.
private func listenTCP(_ port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard bound == 0, listen(fd, 16) == 0 else { close(fd); throw BinaryError("cannot listen on port \(port): errno \(errno)") }
    return fd
}

@Suite("End to end: forward against a hostile peer's frames", .serialized)
struct ForwardMuxHostileTests {
    /// Checks the forwarder ended with a protocol error naming `expected`.
    private func expectProtocolError(_ mux: MuxWorld, _ forwarder: Process, _ name: String, _ expected: String,
                                     sourceLocation: SourceLocation = #_sourceLocation) {
        let log = mux.world.log(name)
        #expect(waitForExit(forwarder, seconds: 20), "the forwarder must end the session: \(log)", sourceLocation: sourceLocation)
        guard !forwarder.isRunning else { return }
        #expect(forwarder.terminationReason == .exit, "no crash: \(log)", sourceLocation: sourceLocation)
        #expect(forwarder.terminationStatus == 1, "\(log)", sourceLocation: sourceLocation)
        let final = mux.world.log(name)
        #expect(final.contains("protocol error") && final.contains(expected), "expected '\(expected)': \(final)", sourceLocation: sourceLocation)
    }

    @Test("forward --connect: each hostile frame after a HELLO ends the session with a protocol error naming it (exit 1, no crash, no hang)",
          arguments: HostileFrames.againstConnect)
    func againstConnect(name: String, first: [UInt8], second: [UInt8], expected: String) throws {
        let mux = try MuxWorld(pages: 4)
        let service = try listenTCP(mux.servicePort)
        defer { close(service) }
        let connect = try mux.world.spawnAgent(["forward", "--channel", "web", "--connect", "tcp:127.0.0.1:\(mux.servicePort)"]
                                               + mux.world.agentOptions("right"), log: "fwd-connect")
        mux.processes.append(connect)
        try attack(mux, domain: "left", first: first, second: second, victim: "fwd-connect") {
            // The attack happens once connection 1 is open.
            #expect(mux.world.waitForLog("fwd-connect", "connection 1 open"), "\(mux.world.log("fwd-connect"))")
        }
        expectProtocolError(mux, connect, "fwd-connect", expected)
    }

    /// Runs `guest-agent cat` on `domain` writing `first` into the channel,
    /// then (if there is one) `second` after `between` ran; each write is
    /// one message.
    private func attack(_ mux: MuxWorld, domain: String, first: [UInt8], second: [UInt8], victim: String,
                        between: () throws -> Void) throws {
        let input = Pipe()
        let cat = Process()
        cat.executableURL = URL(fileURLWithPath: try Binaries.guestAgent)
        cat.arguments = ["cat", "--channel", "web", "--timeout", "30"] + mux.world.agentOptions(domain)
        cat.standardInput = input
        cat.standardOutput = FileHandle.nullDevice
        cat.standardError = FileHandle.nullDevice
        try cat.run()
        defer { stopProcess(cat) }
        input.fileHandleForWriting.write(Data(first))
        if !second.isEmpty {
            try between()
            usleep(200_000)
            input.fileHandleForWriting.write(Data(second))
        }
        // The victim ends the session; cat's own end does not matter here.
        let deadline = Date().addingTimeInterval(20)
        while !mux.world.log(victim).contains("protocol error"), Date() < deadline { usleep(20_000) }
        try? input.fileHandleForWriting.close()
    }

    @Test("forward --listen: a hostile connector's frames, sent once a client connected, end the session with a protocol error naming them",
          arguments: HostileFrames.againstListen)
    func againstListen(name: String, first: [UInt8], second: [UInt8], expected: String) throws {
        let mux = try MuxWorld(pages: 4)
        let listen = try mux.world.spawnAgent(["forward", "--channel", "web", "--listen", "tcp:127.0.0.1:\(mux.port)"]
                                              + mux.world.agentOptions("left"), log: "fwd-listen")
        mux.processes.append(listen)
        var client: Int32 = -1
        defer { if client >= 0 { close(client) } }
        try attack(mux, domain: "right", first: first, second: second, victim: "fwd-listen") {
            client = connectLoopback(mux.port, seconds: 30)
            try #require(client >= 0, "the listening forwarder never listened: \(mux.world.log("fwd-listen"))")
            // The attack happens after the forwarder opened connection 1.
            #expect(mux.world.waitForLog("fwd-listen", "connection 1 open"), "\(mux.world.log("fwd-listen"))")
        }
        expectProtocolError(mux, listen, "fwd-listen", expected)
    }
}
