import Foundation
import Testing

/// A Unix datagram socket standing for the service manager's notification
/// socket: what a process sends to `$NOTIFY_SOCKET`, one message per datagram.
final class NotifyListener {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw BinaryError("socket: \(String(cString: strerror(errno)))") }
        var address = UnixSocket.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw BinaryError("bind \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    /// The next datagram, or nil when none comes within `seconds`.
    func next(seconds: Double) -> String? {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, Int32(seconds * 1000)) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
    }

    /// Datagrams until one contains the line `line` (returned with those
    /// before it), or nil when it does not come within `seconds`.
    func await(_ line: String, seconds: Double) -> [String]? {
        let deadline = Date().addingTimeInterval(seconds)
        var seen: [String] = []
        while Date() < deadline {
            guard let message = next(seconds: max(0.01, deadline.timeIntervalSinceNow)) else { break }
            seen.append(message)
            if message.split(separator: "\n").contains(Substring(line)) { return seen }
        }
        return nil
    }
}

/// The service manager's notifications through the built binaries: the
/// sd_notify datagrams of `guest-agent run` and `chanctl sim serve`.
@Suite("End to end: readiness and watchdog notifications to a service manager", .serialized, .timeLimit(.minutes(2)))
struct NotifyEndToEndTests {
    @Test("guest-agent run: READY=1 only once the published channel is open, WATCHDOG=1 every half of WATCHDOG_USEC, STOPPING=1 on SIGTERM")
    func agentReadiness() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "orders", "--between", "left", "right", "--pages", "4")
        let listener = try NotifyListener(path: world.tmp.path + "/notify.sock")
        let agent = try world.spawn(try Binaries.guestAgent, ["run", "--wait", "block"] + world.agentOptions("right"), log: "run",
                                    environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"])
        defer { stopProcess(agent) }

        // The peer has not opened its end: the agent is up, the channel is
        // not, so no READY=1; the keep-alives come every 200 ms meanwhile.
        var early: [String] = []
        let until = Date().addingTimeInterval(1.5)
        while Date() < until, let message = listener.next(seconds: until.timeIntervalSinceNow) { early.append(message) }
        #expect(!early.contains { $0.contains("READY=1") }, "READY=1 before the channel was open: \(early) \(world.log("run"))")
        let keepAlives = early.filter { $0 == "WATCHDOG=1" }.count
        #expect((4...10).contains(keepAlives), "expected a WATCHDOG=1 every 200 ms for 1.5 s, got \(keepAlives): \(early)")
        #expect(agent.isRunning, "\(world.log("run"))")

        // The peer opens the channel for a short ping: its session may end
        // before the serving loop looks, and readiness still comes (the
        // channel was opened; it is being opened again for the next session).
        let ping = try world.spawnAgent(["ping", "--channel", "orders", "--count", "20", "--size", "64"] + world.agentOptions("left"), log: "ping")
        defer { stopProcess(ping) }
        let messages = try #require(listener.await("READY=1", seconds: 20), "no READY=1 after the peer opened: \(world.log("run"))")
        let ready = try #require(messages.last)
        #expect(ready.contains("STATUS=serving 1 channel(s)"), "\(ready)")
        #expect(world.log("run").contains("orders"), "the channel was served before READY=1: \(world.log("run"))")
        #expect(waitForExit(ping, seconds: 30) && ping.terminationStatus == 0, "\(world.log("ping"))")

        kill(agent.processIdentifier, SIGTERM)
        #expect(listener.await("STOPPING=1", seconds: 5) != nil, "no STOPPING=1 after SIGTERM: \(world.log("run"))")
        #expect(waitForExit(agent, seconds: 10) && agent.terminationStatus == 0, "\(world.log("run"))")
    }

    @Test("chanctl sim serve: READY=1 once its socket accepts clients; the daemon sim start puts in the background tells nothing")
    func simulatorReadiness() throws {
        let tmp = try TemporaryDirectory()
        let listener = try NotifyListener(path: tmp.path + "/notify.sock")
        let state = tmp.path + "/state"
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: try Binaries.chanctl)
        daemon.arguments = ["sim", "serve", "--state-dir", state]
        daemon.environment = ProcessInfo.processInfo.environment.merging(["NOTIFY_SOCKET": listener.path]) { $1 }
        daemon.standardOutput = FileHandle.nullDevice
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
        defer { stopProcess(daemon) }
        let messages = try #require(listener.await("READY=1", seconds: 20), "no READY=1 from chanctl sim serve")
        #expect(messages.last?.contains("STATUS=serving at \(state)/sim.sock") == true, "\(messages)")
        // Ready means clients are served: the first request right after it works.
        let status = try Binaries.run(Binaries.chanctl, ["sim", "status", "--state-dir", state, "--json"])
        #expect(status.status == 0, "\(status.stdout) \(status.stderr)")
        kill(daemon.processIdentifier, SIGTERM)
        #expect(waitForExit(daemon, seconds: 10))

        // sim start from a process that has NOTIFY_SOCKET: its background
        // daemon does not claim that process's readiness.
        let other = tmp.path + "/other"
        let start = try Binaries.run(Binaries.chanctl, ["sim", "start", "--state-dir", other], environment: ["NOTIFY_SOCKET": listener.path])
        #expect(start.status == 0, "\(start.stderr)")
        defer { _ = try? Binaries.run(Binaries.chanctl, ["sim", "stop", "--state-dir", other]) }
        #expect(listener.next(seconds: 0.5) == nil, "the background daemon sent a notification")
    }

    @Test("guest-agent run with no channel published: READY=1 at once; a malformed NOTIFY_SOCKET exits 1 naming it")
    func agentReadyWithoutChannels() throws {
        let world = try SimWorld()
        let listener = try NotifyListener(path: world.tmp.path + "/notify.sock")
        let agent = try world.spawn(try Binaries.guestAgent, ["run"] + world.agentOptions("right"), log: "run",
                                    environment: ["NOTIFY_SOCKET": listener.path])
        defer { stopProcess(agent) }
        let messages = try #require(listener.await("READY=1", seconds: 10), "\(world.log("run"))")
        #expect(messages.last?.contains("STATUS=serving 0 channel(s)") == true, "\(messages)")
        #expect(!messages.contains("WATCHDOG=1"), "no WATCHDOG_USEC, no keep-alives: \(messages)")

        let bad = try Binaries.run(Binaries.guestAgent, ["run"] + world.agentOptions("left"), environment: ["NOTIFY_SOCKET": "relative.sock"])
        #expect(bad.status == 1, "\(bad.stderr)")
        #expect(bad.stderr.contains("NOTIFY_SOCKET=relative.sock"), "\(bad.stderr)")
    }
}
