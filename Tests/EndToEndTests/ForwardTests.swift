import Foundation
import Testing

/// A private simulator with domains, registered agent keys and a policy rule,
/// stopped (and its directory removed) at the end of the test.
final class SimWorld {
    let tmp: TemporaryDirectory
    let state: String
    private(set) var hostKey = ""

    init(domains: [String] = ["left", "right"], allow: Bool = true) throws {
        tmp = try TemporaryDirectory()
        state = tmp.path + "/state"
        try chanctl("sim", "start")
        for name in domains {
            try chanctl("domain", "create", name, "--altp2m", "external")
            let key = try Binaries.run(Binaries.guestAgent, ["keygen", "--out", keyPath(name), "--json"])
            try chanctl("keys", "register", name, try #require(key.json?["public_key"] as? String))
        }
        if allow, domains.count >= 2 { try chanctl("policy", "allow", domains[0], domains[1]) }
        hostKey = try #require(try chanctl("keys", "show").json?["public_key"] as? String)
    }

    deinit { _ = try? Binaries.run(Binaries.chanctl, ["sim", "stop", "--state-dir", state]) }

    func keyPath(_ domain: String) -> String { tmp.path + "/\(domain).key" }

    /// Runs chanctl with this world's state directory and --json; expects exit 0 unless told otherwise.
    @discardableResult
    func chanctl(_ arguments: String..., expect status: Int32? = 0) throws -> Binaries.Result {
        let result = try Binaries.run(Binaries.chanctl, arguments + ["--state-dir", state, "--json"])
        if let status {
            #expect(result.status == status, "chanctl \(arguments.joined(separator: " ")): \(result.stdout) \(result.stderr)")
        }
        return result
    }

    /// The agent options for `domain`.
    func agentOptions(_ domain: String) -> [String] {
        ["--domain", domain, "--key", keyPath(domain), "--host-key", hostKey, "--state-dir", state]
    }

    /// Starts `guest-agent` with standard output and error going to files.
    func spawnAgent(_ arguments: [String], log name: String) throws -> Process {
        try spawn(try Binaries.guestAgent, arguments, log: name)
    }

    /// Starts `executable` with standard output and error going to files
    /// (`log(name)` reads the error output).
    func spawn(_ executable: String, _ arguments: [String], log name: String,
               environment: [String: String] = [:]) throws -> Process {
        try spawnLogged(executable, arguments, directory: tmp.path, log: name, environment: environment)
    }

    func log(_ name: String) -> String {
        (try? String(contentsOfFile: tmp.path + "/\(name).err", encoding: .utf8)) ?? ""
    }

    /// Waits until the log of the process started as `name` contains
    /// `text` (true) or `seconds` pass (false).
    func waitForLog(_ name: String, _ text: String, seconds: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if log(name).contains(text) { return true }
            usleep(20_000)
        }
        return log(name).contains(text)
    }
}

/// Starts `executable` with standard input empty and standard output and
/// error going to `directory/NAME.out` and `NAME.err`.
func spawnLogged(_ executable: String, _ arguments: [String], directory: String, log name: String,
                 environment: [String: String] = [:]) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    _ = FileManager.default.createFile(atPath: directory + "/\(name).out", contents: nil)
    _ = FileManager.default.createFile(atPath: directory + "/\(name).err", contents: nil)
    process.standardOutput = FileHandle(forWritingAtPath: directory + "/\(name).out")
    process.standardError = FileHandle(forWritingAtPath: directory + "/\(name).err")
    process.standardInput = FileHandle.nullDevice
    try process.run()
    return process
}

/// Waits until `process` exits (true) or `seconds` pass (false).
func waitForExit(_ process: Process, seconds: Double) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while process.isRunning && Date() < deadline { usleep(2_000) }
    return !process.isRunning
}

/// Kills `process` if it still runs and waits (at most 10 s) for it to go.
func stopProcess(_ process: Process, sourceLocation: SourceLocation = #_sourceLocation) {
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    if !waitForExit(process, seconds: 10) {
        Issue.record("pid \(process.processIdentifier) still runs 10 s after SIGKILL", sourceLocation: sourceLocation)
    }
}

/// Unix stream socket helpers for the tests.
enum UnixSocket {
    static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    static func listen(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0, Glibc.listen(fd, 4) == 0 else { throw BinaryError("cannot listen on \(path): errno \(errno)") }
        return fd
    }

    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = address(path)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, connected == 0 else { let code = errno; if fd >= 0 { close(fd) }; throw BinaryError("cannot connect to \(path): errno \(code)") }
        return fd
    }

    /// Accepts one connection, waiting at most `seconds`; -1 if none came.
    static func accept(_ listener: Int32, within seconds: Double) -> Int32 {
        var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, Int32(seconds * 1000)) > 0 else { return -1 }
        return Glibc.accept(listener, nil, nil)
    }

    /// Connects, retrying while the listener is between bind and listen.
    static func connect(_ path: String, retryFor seconds: Double) throws -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            do { return try connect(path) } catch {
                if Date() >= deadline { throw error }
                usleep(10_000)
            }
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Reads until end of file (or `stop` says the bytes so far are enough),
    /// for at most `seconds`: a peer that never closes ends the read with
    /// what came, which the caller's comparison then reports.
    static func read(_ fd: Int32, within seconds: Double = 120, until stop: ([UInt8]) -> Bool = { _ in false }) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(seconds)
        while !stop(out) {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { break }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, Int32(min(remaining, 1) * 1000)) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return out
    }
}

/// sha256sum of a file.
func sha256(ofFile path: String) throws -> String {
    let result = try Binaries.run("/usr/bin/sha256sum", [path], timeout: 300)
    return String(result.stdout.split(separator: " ").first ?? "")
}

@Suite("End to end: guest-agent forward, a 256 MiB cat, a peer killed with kill -9", .serialized)
struct ForwardEndToEndTests {
    @Test("guest-agent forward carries an HTTP-like request and response byte for byte between two Unix sockets")
    func forwardHTTP() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "web", "--between", "left", "right", "--pages", "8")
        let serverPath = world.tmp.path + "/server.sock"
        let clientPath = world.tmp.path + "/client.sock"

        // The "web server": answers one request, then closes.
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        let response = Array("HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
        let listener = try UnixSocket.listen(serverPath)
        nonisolated(unsafe) var request: [UInt8] = []
        let served = DispatchSemaphore(value: 0)
        Thread {
            defer { served.signal() }
            let connection = UnixSocket.accept(listener, within: 30)   // never blocks for ever
            guard connection >= 0 else { return }
            request = UnixSocket.read(connection) { $0.count >= 4 && Array($0.suffix(4)) == Array("\r\n\r\n".utf8) }
            _ = UnixSocket.writeAll(connection, response)
            close(connection)
        }.start()
        defer { close(listener) }

        let server = try world.spawnAgent(["forward", "--channel", "web", "--connect-unix", serverPath] + world.agentOptions("right"),
                                          log: "fwd-server")
        defer { stopProcess(server) }
        let client = try world.spawnAgent(["forward", "--channel", "web", "--listen-unix", clientPath] + world.agentOptions("left"),
                                          log: "fwd-client")
        defer { stopProcess(client) }

        let deadline = Date().addingTimeInterval(20)
        while access(clientPath, F_OK) != 0 && Date() < deadline && client.isRunning { usleep(10_000) }
        let attributes = try FileManager.default.attributesOfItem(atPath: clientPath)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(attributes[.type] as? FileAttributeType == .typeSocket)

        let started = Date()
        let fd = try UnixSocket.connect(clientPath, retryFor: 5)
        #expect(UnixSocket.writeAll(fd, Array("GET /hello HTTP/1.0\r\n\r\n".utf8)))
        let answer = UnixSocket.read(fd)
        close(fd)
        let elapsed = Date().timeIntervalSince(started)
        #expect(served.wait(timeout: .now() + 10) == .success)
        #expect(String(decoding: request, as: UTF8.self) == "GET /hello HTTP/1.0\r\n\r\n")
        #expect(answer.count == response.count, "\(answer.count) of \(response.count) bytes; \(world.log("fwd-client")) \(world.log("fwd-server"))")
        #expect(answer == response, "the response must arrive byte for byte")
        print("forward: HTTP round trip of \(response.count) bytes in \(String(format: "%.3f", elapsed)) s")

        // The listening end serves until a signal; it closes the channel and
        // the connecting end ends too. Both exit 0; the socket file goes away.
        kill(client.processIdentifier, SIGTERM)
        #expect(waitForExit(client, seconds: 10), "forward --listen-unix must end on SIGTERM: \(world.log("fwd-client"))")
        #expect(waitForExit(server, seconds: 10), "forward --connect-unix must end when the peer closes: \(world.log("fwd-server"))")
        #expect(client.terminationStatus == 0, "\(world.log("fwd-client"))")
        #expect(server.terminationStatus == 0, "\(world.log("fwd-server"))")
        #expect(access(clientPath, F_OK) != 0, "the listening socket file must be removed")
    }

    @Test("guest-agent forward: usage errors are named; a missing --connect-unix socket refuses the connection, naming the path")
    func forwardErrors() throws {
        let neither = try Binaries.run(Binaries.guestAgent, ["forward", "--channel", "c", "--domain", "a", "--key", "k",
                                                             "--host-key", Binaries.someHostKey])
        #expect(neither.status == 2)
        #expect(neither.stderr.contains("--listen-unix") && neither.stderr.contains("--connect-unix"), "\(neither.stderr)")

        let world = try SimWorld()
        try world.chanctl("channel", "create", "web", "--between", "left", "right", "--pages", "4")
        let missing = world.tmp.path + "/nobody.sock"
        let listen = try world.spawnAgent(["forward", "--channel", "web", "--listen-unix", world.tmp.path + "/l.sock"] + world.agentOptions("left"),
                                          log: "listen")
        defer { stopProcess(listen) }
        let connect = try world.spawnAgent(["forward", "--channel", "web", "--connect-unix", missing] + world.agentOptions("right"), log: "connect")
        defer { stopProcess(connect) }
        // The connection is refused (closed at once) and the reason logged
        // on both ends; the forwarders carry on.
        let fd = try UnixSocket.connect(world.tmp.path + "/l.sock", retryFor: 20)
        defer { close(fd) }
        #expect(UnixSocket.read(fd, within: 20).isEmpty)
        #expect(world.waitForLog("listen", "refused by the peer"), "\(world.log("listen"))")
        let said = world.log("listen")
        #expect(said.contains(missing) && said.contains("cannot connect"), "\(said)")
        #expect(listen.isRunning && connect.isRunning, "\(world.log("connect"))")
    }

    @Test("guest-agent cat: 256 MiB through an echo agent and back, SHA-256 equal")
    func cat256MiB() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "bulk", "--between", "left", "right", "--pages", "64")
        let echo = try world.spawnAgent(["run", "--wait", "block"] + world.agentOptions("right"), log: "echo")
        defer { stopProcess(echo) }

        // 256 MiB of generated bytes, written in 4 MiB blocks that all differ.
        let input = world.tmp.path + "/input", output = world.tmp.path + "/output"
        _ = FileManager.default.createFile(atPath: input, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: input))
        var block = [UInt8](repeating: 0, count: 4 << 20)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<64 {
            block.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for i in words.indices {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17
                    words[i] = state
                }
            }
            try handle.write(contentsOf: block)
        }
        try handle.close()

        let started = Date()
        let cat = try Binaries.run("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \(input) > \(output)", try Binaries.guestAgent, "cat",
                                               "--channel", "bulk", "--timeout", "30"] + world.agentOptions("left"), timeout: 900)
        let seconds = Date().timeIntervalSince(started)
        print("cat: 256 MiB round trip in \(String(format: "%.1f", seconds)) s (\(String(format: "%.1f", 512 / seconds)) MiB/s both ways)")
        #expect(cat.status == 0, "\(cat.stderr) \(world.log("echo"))")
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? NSNumber)?.intValue ?? -1
        #expect(size == 256 << 20)
        #expect(try sha256(ofFile: input) == sha256(ofFile: output))
    }

    @Test("kill -9 of the echo agent: ping reports peerDied within a second, exits 1; the channel stays until domain crash")
    func peerKilled() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "probe", "--between", "left", "right", "--pages", "4")
        let echo = try world.spawnAgent(["run", "--wait", "block"] + world.agentOptions("right"), log: "echo")
        defer { stopProcess(echo) }
        let ping = try world.spawnAgent(["ping", "--channel", "probe", "--count", "10000000", "--size", "64", "--wait", "block",
                                         "--timeout", "30"] + world.agentOptions("left"), log: "ping")
        defer { stopProcess(ping) }

        // Running: the channel is open and round trips go on.
        let deadline = Date().addingTimeInterval(20)
        while !world.log("echo").contains("channel open") && Date() < deadline && ping.isRunning { usleep(20_000) }
        usleep(500_000)
        #expect(ping.isRunning, "ping must still be running: \(world.log("ping"))")

        kill(echo.processIdentifier, SIGKILL)
        let killed = Date()
        let exited = waitForExit(ping, seconds: 10)
        let noticed = Date().timeIntervalSince(killed)
        print("kill -9: ping noticed after \(String(format: "%.3f", noticed)) s: \(world.log("ping"))")
        #expect(exited)
        #expect(noticed < 1.0, "ping must notice the dead peer within a second (took \(noticed) s)")
        #expect(ping.terminationStatus == 1)
        let message = world.log("ping")
        #expect(message.contains("the peer is gone") && message.contains("agent process went away"), "\(message)")

        // The process died, not its domain: the channel stays for a restarted agent.
        let list = try world.chanctl("channel", "list")
        let channels = list.json?["channels"] as? [[String: Any]] ?? []
        #expect(channels.contains { $0["name"] as? String == "probe" }, "\(list.stdout)")
        #expect(try world.chanctl("channel", "show", "probe").status == 0)
        // Crashing the domain is explicit, and that tears the channel down.
        _ = try world.chanctl("domain", "crash", "right")
        let after = try world.chanctl("channel", "list")
        let left = after.json?["channels"] as? [[String: Any]] ?? []
        #expect(!left.contains { $0["name"] as? String == "probe" }, "\(after.stdout)")
        let show = try world.chanctl("channel", "show", "probe", expect: nil)
        #expect(show.status != 0, "channel show of a torn-down channel: \(show.stdout)")
    }

    @Test("guest-agent forward: a peer forwarder killed with kill -9 ends the other one with peerDied")
    func forwardPeerKilled() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "web", "--between", "left", "right", "--pages", "4")
        let serverPath = world.tmp.path + "/server.sock"
        let clientPath = world.tmp.path + "/client.sock"
        let listener = try UnixSocket.listen(serverPath)
        defer { close(listener) }
        let server = try world.spawnAgent(["forward", "--channel", "web", "--connect-unix", serverPath] + world.agentOptions("right"),
                                          log: "fwd-server")
        defer { stopProcess(server) }
        let client = try world.spawnAgent(["forward", "--channel", "web", "--listen-unix", clientPath] + world.agentOptions("left"),
                                          log: "fwd-client")
        defer { stopProcess(client) }
        let deadline = Date().addingTimeInterval(20)
        while access(clientPath, F_OK) != 0 && Date() < deadline && client.isRunning { usleep(10_000) }
        let fd = try UnixSocket.connect(clientPath, retryFor: 5)
        defer { close(fd) }
        // The connect side is connected (the server sees it), so both ends are bridging.
        let accepted = UnixSocket.accept(listener, within: 20)
        defer { if accepted >= 0 { close(accepted) } }
        try #require(accepted >= 0, "the server-side forwarder never connected: \(world.log("fwd-server"))")
        #expect(UnixSocket.writeAll(fd, Array("hello".utf8)))
        #expect(UnixSocket.read(accepted) { $0.count >= 5 } == Array("hello".utf8))

        kill(server.processIdentifier, SIGKILL)
        let killed = Date()
        #expect(waitForExit(client, seconds: 10))
        let noticed = Date().timeIntervalSince(killed)
        #expect(noticed < 1.0, "took \(noticed) s")
        #expect(client.terminationStatus == 1)
        #expect(world.log("fwd-client").contains("peerDied"), "\(world.log("fwd-client"))")
    }
}
