import Foundation
import Testing

/// Forwarding frames built by hand (docs/PROTOCOL.md, "Forwarding"), so a
/// test can send what no forwarder would.
enum RawFrames {
    static let hello: UInt8 = 1, open: UInt8 = 2, opened: UInt8 = 3, refused: UInt8 = 4
    static let data: UInt8 = 5, credit: UInt8 = 6, fin: UInt8 = 7, reset: UInt8 = 8

    static func be32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    /// A frame; `length` overrides the payload's true length.
    static func frame(_ type: UInt8, _ id: UInt32, _ payload: [UInt8] = [], length: UInt32? = nil) -> [UInt8] {
        [type] + be32(id) + be32(length ?? UInt32(payload.count)) + payload
    }

    /// HELLO; role 0 listens, 1 connects.
    static func hello(version: UInt8 = 1, role: UInt8, window: UInt32 = 256 * 1024) -> [UInt8] {
        frame(hello, 0, Array("GAFWD".utf8) + [version, role] + be32(window))
    }
}

/// A raw forwarding peer: `guest-agent cat` whose standard input is one end
/// of a SOCK_SEQPACKET pair, so each packet the test sends is exactly one
/// channel message (a frame never spans messages); what the forwarder sends
/// lands in a file.
final class RawPeer {
    let process: Process
    let socket: Int32
    let output: String

    init(world: SimWorld, domain: String, channel: String = "web") throws {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pair) == 0 else { throw BinaryError("socketpair: errno \(errno)") }
        socket = pair[0]
        // A forwarder that stops reading must fail the send, not hang the test.
        var limit = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        output = world.tmp.path + "/peer.out"
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        _ = FileManager.default.createFile(atPath: world.tmp.path + "/peer.err", contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Binaries.guestAgent)
        p.arguments = ["cat", "--channel", channel, "--timeout", "30"] + world.agentOptions(domain)
        p.standardInput = FileHandle(fileDescriptor: pair[1], closeOnDealloc: false)
        p.standardOutput = FileHandle(forWritingAtPath: output)
        p.standardError = FileHandle(forWritingAtPath: world.tmp.path + "/peer.err")
        try p.run()
        close(pair[1])
        process = p
    }

    deinit {
        close(socket)
        stopProcess(process)
    }

    /// Sends `bytes` as one message; false once the peer is gone.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Waits until the forwarder has sent `frame` (true) or `seconds` pass.
    func waitFor(_ frame: [UInt8], seconds: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            let got = Array(FileManager.default.contents(atPath: output) ?? Data())
            if got.count >= frame.count, (0...(got.count - frame.count)).contains(where: { got[$0..<$0 + frame.count].elementsEqual(frame) }) {
                return true
            }
            usleep(20_000)
        } while Date() < deadline
        return false
    }
}

/// Connects non-blocking clients to the Unix listener at `path` until its
/// backlog is full (connect says EAGAIN), so the next connect waits.
func fillBacklog(_ path: String) -> [Int32] {
    var held: [Int32] = []
    for _ in 0..<64 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var address = UnixSocket.address(path)
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if ok != 0 { close(fd); break }
        held.append(fd)
    }
    return held
}

/// One hostile frame (or message) after a valid HELLO, and the phrase the
/// forwarder's error must contain.
struct HostileCase: Sendable, CustomTestStringConvertible {
    enum Role: String, Sendable { case listen, connect }
    /// What happens before the hostile messages: nothing; connection 1
    /// opened (the forwarder sent OPEN or OPENED); connection 1 announced
    /// but not open (listening: OPEN sent, no OPENED; connecting: its
    /// connect waits on a full backlog).
    enum Setup: Sendable { case none, open, opening }

    var name: String
    var role: Role
    var setup: Setup = .none
    var hello: [UInt8]? = nil
    var messages: [[UInt8]] = []
    var expected: String

    var testDescription: String { "\(name) (forwarder --\(role.rawValue))" }
}

private typealias F = RawFrames

private let reason513 = [UInt8](repeating: 0x72, count: 513)
private let reason600 = [UInt8](repeating: 0x72, count: 600)
/// 320 DATA messages of 4 KiB (a message holds about 8 KiB here): 1.25 MiB without waiting for CREDIT, far past
/// the 256 KiB window plus what a local socket that is never read absorbs.
private let flood = [[UInt8]](repeating: F.frame(F.data, 1, [UInt8](repeating: 0x64, count: 4096)), count: 320)

private let hostileCases: [HostileCase] = [
    HostileCase(name: "unknown frame type", role: .connect, messages: [F.frame(9, 1)], expected: "unknown frame type 9"),
    HostileCase(name: "unknown frame type", role: .listen, messages: [F.frame(0, 1)], expected: "unknown frame type 0"),
    HostileCase(name: "truncated header", role: .connect, messages: [[F.data, 0, 0]], expected: "short frame: 3 bytes left in the message"),
    HostileCase(name: "length past the message", role: .connect, messages: [F.frame(F.data, 1, [UInt8](repeating: 1, count: 10), length: 100)],
                expected: "DATA frame for connection 1 claims 100 bytes but the message holds 10"),
    HostileCase(name: "payload size the type never has", role: .connect, messages: [F.frame(F.credit, 1, [0, 0, 1])],
                expected: "CREDIT frame for connection 1 has a payload of 3 bytes"),
    HostileCase(name: "empty DATA", role: .listen, messages: [F.frame(F.data, 1)], expected: "DATA frame for connection 1 has a payload of 0 bytes"),
    HostileCase(name: "HELLO of another version", role: .connect, hello: F.hello(version: 2, role: 0), expected: "HELLO of forwarding protocol version 2"),
    HostileCase(name: "HELLO of the same role", role: .connect, hello: F.hello(role: 1), expected: "HELLO says the peer also connects"),
    HostileCase(name: "HELLO of the same role", role: .listen, hello: F.hello(role: 0), expected: "HELLO says the peer also listens"),
    HostileCase(name: "HELLO window below 1 KiB", role: .connect, hello: F.hello(role: 0, window: 1023), expected: "HELLO grants a window of 1023 bytes"),
    HostileCase(name: "HELLO window above 16 MiB", role: .listen, hello: F.hello(role: 1, window: 1 << 24 + 1), expected: "HELLO grants a window of 16777217 bytes"),
    HostileCase(name: "second HELLO", role: .connect, messages: [F.hello(role: 0)], expected: "a second HELLO frame"),
    HostileCase(name: "OPEN from the connecting side", role: .listen, messages: [F.frame(F.open, 1)], expected: "OPEN frame from the connecting side (connection 1)"),
    HostileCase(name: "OPEN reusing an id", role: .connect, messages: [F.frame(F.open, 3) + F.frame(F.open, 2)],
                expected: "OPEN frame for connection 2 reuses an id (the last was 3"),
    HostileCase(name: "OPEN of id 0", role: .connect, messages: [F.frame(F.open, 0)], expected: "OPEN frame for connection 0 reuses an id"),
    HostileCase(name: "OPENED from the listening side", role: .connect, messages: [F.frame(F.opened, 1)], expected: "OPENED frame from the listening side (connection 1)"),
    HostileCase(name: "REFUSED from the listening side", role: .connect, messages: [F.frame(F.refused, 1, Array("no".utf8))],
                expected: "REFUSED frame from the listening side (connection 1)"),
    HostileCase(name: "second OPENED", role: .listen, setup: .open, messages: [F.frame(F.opened, 1)], expected: "OPENED frame for connection 1, which is already open"),
    HostileCase(name: "DATA before OPENED", role: .listen, setup: .opening, messages: [F.frame(F.data, 1, [1])], expected: "DATA frame for connection 1 before it was open"),
    HostileCase(name: "DATA while connecting", role: .connect, setup: .opening, messages: [F.frame(F.data, 1, [1])],
                expected: "DATA frame for connection 1 before it was open"),
    HostileCase(name: "CREDIT while connecting", role: .connect, setup: .opening, messages: [F.frame(F.credit, 1, F.be32(1))],
                expected: "CREDIT frame for connection 1 before it was open"),
    HostileCase(name: "FIN before OPENED", role: .listen, setup: .opening, messages: [F.frame(F.fin, 1)], expected: "FIN frame for connection 1 before it was open"),
    HostileCase(name: "DATA past the credit", role: .connect, setup: .open, messages: flood, expected: "DATA frame of 4096 bytes for connection 1 beyond the granted window"),
    HostileCase(name: "DATA past the credit", role: .listen, setup: .open, messages: flood, expected: "DATA frame of 4096 bytes for connection 1 beyond the granted window"),
    HostileCase(name: "DATA after FIN", role: .connect, setup: .open, messages: [F.frame(F.fin, 1) + F.frame(F.data, 1, [1])],
                expected: "DATA frame for connection 1 after its FIN"),
    HostileCase(name: "FIN twice", role: .connect, setup: .open, messages: [F.frame(F.fin, 1), F.frame(F.fin, 1)], expected: "a second FIN frame for connection 1"),
    HostileCase(name: "CREDIT of 0", role: .connect, setup: .open, messages: [F.frame(F.credit, 1, F.be32(0))], expected: "CREDIT frame of 0 bytes for connection 1"),
    HostileCase(name: "CREDIT past the announced window", role: .connect, setup: .open, messages: [F.frame(F.credit, 1, F.be32(1))],
                expected: "CREDIT frame of 1 bytes for connection 1: the credit would be 262145 bytes, past the 262144-byte window the peer announced"),
    HostileCase(name: "CREDIT past a small announced window", role: .listen, setup: .open, hello: F.hello(role: 1, window: 1024),
                messages: [F.frame(F.credit, 1, F.be32(512))],
                expected: "CREDIT frame of 512 bytes for connection 1: the credit would be 1536 bytes, past the 1024-byte window the peer announced"),
    HostileCase(name: "DATA for a never-used id", role: .connect, messages: [F.frame(F.data, 7, [1])], expected: "DATA frame for unknown connection 7"),
    HostileCase(name: "CREDIT for a never-used id", role: .connect, setup: .open, messages: [F.frame(F.credit, 9, F.be32(1))], expected: "CREDIT frame for unknown connection 9"),
    HostileCase(name: "FIN for a never-used id", role: .listen, messages: [F.frame(F.fin, 9)], expected: "FIN frame for unknown connection 9"),
    HostileCase(name: "RESET for a never-used id", role: .connect, messages: [F.frame(F.reset, 9)], expected: "RESET frame for unknown connection 9"),
    HostileCase(name: "OPENED for a never-used id", role: .listen, setup: .opening, messages: [F.frame(F.opened, 4)], expected: "OPENED frame for unknown connection 4"),
    HostileCase(name: "DATA for id 0", role: .listen, messages: [F.frame(F.data, 0, [1])], expected: "DATA frame for unknown connection 0"),
    HostileCase(name: "oversize REFUSED reason", role: .listen, setup: .opening, messages: [F.frame(F.refused, 1, reason513)],
                expected: "REFUSED frame for connection 1 has a payload of 513 bytes"),
    HostileCase(name: "oversize RESET reason", role: .connect, setup: .open, messages: [F.frame(F.reset, 1, reason600)],
                expected: "RESET frame for connection 1 has a payload of 600 bytes"),
]

@Suite("End to end: forward ends the session on each hostile frame, naming it, without a crash or a hang", .serialized)
struct ForwardMuxHostileTests {
    @Test("A valid HELLO, then one hostile frame: exit status 1, the violation named, no signal, within 20 s", arguments: hostileCases)
    func hostileFrame(_ c: HostileCase) throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "web", "--between", "left", "right", "--pages", "16")
        let target = world.tmp.path + "/target.sock", local = world.tmp.path + "/local.sock"
        var held: [Int32] = []
        defer { held.forEach { close($0) } }
        let forwarder: Process
        switch c.role {
        case .connect:
            // A listener never accepted: connects to it complete (or, with
            // the backlog full, wait) and nothing it receives is read.
            held.append(try UnixSocket.listen(target))
            if c.setup == .opening { held += fillBacklog(target) }
            forwarder = try world.spawnAgent(["forward", "--channel", "web", "--connect", "unix:\(target)"] + world.agentOptions("right"), log: "fwd")
        case .listen:
            forwarder = try world.spawnAgent(["forward", "--channel", "web", "--listen", "unix:\(local)"] + world.agentOptions("left"), log: "fwd")
        }
        let peer = try RawPeer(world: world, domain: c.role == .connect ? "left" : "right")
        defer { withExtendedLifetime(peer) { stopProcess(forwarder) }; withExtendedLifetime(world) {} }
        #expect(peer.send(c.hello ?? F.hello(role: c.role == .connect ? 0 : 1)))
        switch (c.role, c.setup) {
        case (_, .none):
            break
        case (.connect, .open):
            peer.send(F.frame(F.open, 1))
            try #require(peer.waitFor(F.frame(F.opened, 1)), "no OPENED: \(world.log("fwd"))")
        case (.connect, .opening):
            peer.send(F.frame(F.open, 1))
            try #require(world.waitForLog("fwd", "connection 1 connecting to"), "\(world.log("fwd"))")
        case (.listen, _):
            held.append(try UnixSocket.connect(local, retryFor: 20))  // never read
            try #require(peer.waitFor(F.frame(F.open, 1)), "no OPEN: \(world.log("fwd"))")
            if c.setup == .open { peer.send(F.frame(F.opened, 1)) }
        }
        for message in c.messages where !peer.send(message) { break }
        let exited = waitForExit(forwarder, seconds: 20)
        #expect(exited, "the forwarder must end the session, not hang: \(world.log("fwd").suffix(1500))")
        guard exited else { return }
        #expect(forwarder.terminationReason == .exit, "killed by signal \(forwarder.terminationStatus): \(world.log("fwd").suffix(1500))")
        #expect(forwarder.terminationStatus != 0)
        let log = world.log("fwd")
        #expect(log.contains("protocol error") && log.contains(c.expected), "expected '\(c.expected)': \(log.suffix(1500))")
    }
}
