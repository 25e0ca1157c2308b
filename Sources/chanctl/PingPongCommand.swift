import Altp2mSim
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `chanctl pingpong`: the whole system in one command. A private simulator,
/// two domains, two agent keys, a policy rule, a channel, two `guest-agent`
/// processes (one echoes, one measures), the latency table, a Unix-socket
/// baseline, and a teardown that leaves nothing behind, even on failure.
struct PingPongCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pingpong",
        abstract: "Run a ping-pong between two guest agents over a secure channel on a private simulator.",
        discussion: """
            Starts a simulator in a fresh temporary state directory (or uses the one \
            --state-dir names, if it is running), creates two domains, generates and \
            registers their agent keys, allows the pair, creates a channel, starts \
            'guest-agent run' (echo) in one domain and 'guest-agent ping' in the other \
            (both found next to this chanctl), prints the round-trip latencies, the set-up \
            time of each stage and a Unix-socket ping-pong of the same size for \
            comparison, then stops the agents and the simulator and removes the \
            temporary files. --keep leaves everything running and prints how to explore it.
            """)

    enum ModeArgument: String, ExpressibleByArgument, CaseIterable { case encrypted, isolated }
    enum SuiteArgument: String, ExpressibleByArgument, CaseIterable { case chachapoly, aesgcm }
    enum WaitArgument: String, ExpressibleByArgument, CaseIterable { case spin, block, adaptive }
    enum BackendArgument: String, ExpressibleByArgument, CaseIterable {
        case sim
        case xenSim = "xen-sim"
    }

    @Option(help: "Number of timed round trips.")
    var count: Int = 10_000

    @Option(help: "Message size in bytes.")
    var size: Int = 64

    @Option(help: "Channel mode: encrypted or isolated.")
    var mode: ModeArgument = .encrypted

    @Option(help: "Cipher suite: chachapoly or aesgcm.")
    var suite: SuiteArgument = .chachapoly

    @Option(help: "How the agents wait: spin, block or adaptive.")
    var wait: WaitArgument = .spin

    @Option(help: "Channel size in pages (2...512).")
    var pages: Int = 8

    @Option(help: ArgumentHelp(
        "The backend: sim (the simulator's own frame sharing and grant module) or xen-sim.",
        discussion: "xen-sim runs the Xen backend's code on both sides: the grant module in this process over XenControl and the simulator's Xen libraries, and the agents with --backend xen-sim, which answer the frame flow of docs/XEN.md before the channel exists."))
    var backend: BackendArgument = .sim

    @Flag(help: "Print one JSON object.")
    var json = false

    @Flag(help: "Leave the simulator, the domains, the channel and the echo agent running, and print how to explore them.")
    var keep = false

    @Option(name: .long, help: ArgumentHelp(
        "Use the simulator running at this state directory instead of a private one.", valueName: "path"))
    var stateDir: String?

    @Option(help: ArgumentHelp("Seconds the measuring agent may take before it is stopped.", visibility: .hidden))
    var timeout: Double?

    func validate() throws {
        guard (1...100_000_000).contains(count) else { throw ValidationError("bad --count \(count): expected 1...100000000") }
        guard (1...(1 << 20)).contains(size) else { throw ValidationError("bad --size \(size): expected 1...1048576 bytes") }
        guard (2...512).contains(pages) else { throw ValidationError("bad --pages \(pages): expected 2...512") }
    }

    func run() throws {
        let run = PingPongRun(self)
        RunSignals.install { run.tearDown() }
        let result: PingPongRun.Outcome
        do {
            result = try run.execute()
        } catch {
            run.tearDown()  // even with --keep: a failed run leaves nothing behind
            throw error
        }
        if keep { run.keepRunning() } else { run.tearDown() }
        if json {
            print(result.json(self).serialized)
        } else {
            print(result.text(self))
            if keep { print("\n" + run.exploreHelp()) }
        }
    }
}

/// One `pingpong` run: what it started, so that teardown can undo exactly that.
final class PingPongRun: @unchecked Sendable {
    // @unchecked: used by the command's thread; the signal handler only reads
    // the pids and paths (set before the children exist).
    let command: PingPongCommand
    let chanctl: String
    let guestAgent: String
    /// A private directory for keys and logs (removed at teardown).
    private(set) var workDir: String?
    /// The simulator: private, or the running one --state-dir names.
    private(set) var simulator: RunSimulator?
    private var stateDir: String { simulator?.stateDir ?? "" }
    private(set) var agentPIDs: [pid_t] = []
    private(set) var domains: [String] = []
    private(set) var channelName = ""
    private(set) var hostKey = ""
    private var tornDown = false

    struct Outcome {
        var ping: JSONValue
        var stages: [(String, Double)]
        var unixSocket: [UInt64]
        var ownSimulator: Bool

        func json(_ c: PingPongCommand) -> JSONValue {
            var setup: [String: JSONValue] = [:]
            for (name, ms) in stages { setup[name] = .double((ms * 1000).rounded() / 1000) }
            var object: [String: JSONValue] = [
                "ok": true, "count": .int(Int64(c.count)), "size": .int(Int64(c.size)),
                "mode": .string(c.mode.rawValue), "suite": .string(c.suite.rawValue), "wait": .string(c.wait.rawValue),
                "setup_ms": .object(setup),
                "unix_socket_p50_ns": .uint(percentile(unixSocket, 50)),
                "unix_socket_p99_ns": .uint(percentile(unixSocket, 99)),
            ]
            for key in ["p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns", "min_ns", "mean_ns"] {
                if let value = ping[key] { object[key] = value }
            }
            return .object(object)
        }

        func text(_ c: PingPongCommand) -> String {
            var lines: [String] = []
            lines.append("chanctl pingpong: \(c.count) round trips of \(c.size) bytes, \(c.mode.rawValue) \(c.suite.rawValue), wait \(c.wait.rawValue)")
            lines.append("")
            lines.append("set-up" + (ownSimulator ? "" : " (existing simulator)"))
            let width = stages.map(\.0.count).max() ?? 0
            var total = 0.0
            for (name, ms) in stages {
                total += ms
                lines.append("  " + name.replacingUnderscores + String(repeating: " ", count: width - name.count + 2) + formatMilliseconds(ms))
            }
            lines.append("  total" + String(repeating: " ", count: width - 5 + 2) + formatMilliseconds(total))
            lines.append("")
            lines.append("round trip   secure channel   unix socket")
            let rows: [(String, String, Double)] = [("p50", "p50_ns", 50), ("p90", "p90_ns", 90), ("p99", "p99_ns", 99),
                                                    ("p99.9", "p999_ns", 99.9), ("max", "max_ns", 100)]
            for (label, key, p) in rows {
                let channel = ping[key]?.uint64.map(formatNanoseconds) ?? "-"
                let socket = formatNanoseconds(percentile(unixSocket, p))
                lines.append("  " + pad(label, 11) + pad(channel, 17) + socket)
            }
            if let p50 = ping["p50_ns"]?.uint64, p50 > 0 {
                let ratio = Double(percentile(unixSocket, 50)) / Double(p50)
                lines.append("")
                lines.append("median round trip: Unix socket / secure channel = \(format(ratio)) (same size and count, in this run)")
            }
            return lines.joined(separator: "\n")
        }
    }

    init(_ command: PingPongCommand) {
        self.command = command
        chanctl = ChildProcess.ownExecutable()
        guestAgent = NSStringPath(chanctl).directory + "/guest-agent"
    }

    // MARK: Running

    func execute() throws(CommandFailure) -> Outcome {
        guard access(guestAgent, X_OK) == 0 else {
            throw .failure("guest-agent not found at \(guestAgent); build it next to chanctl: swift build --product guest-agent (or make release)")
        }
        let work = try ChildProcess.makeTemporaryDirectory("chanctl-pingpong")
        workDir = work
        var stages: [(String, Double)] = []

        // 1. The simulator.
        var t = now()
        let simulator = RunSimulator(workDir: work, explicitStateDir: command.stateDir)
        self.simulator = simulator
        try simulator.start()
        stages.append(("simulator_start", elapsed(t)))

        // 2. Two domains (unique names, so an existing simulator is fine).
        t = now()
        let tag = "pp\(getpid())"
        let (ping, echo) = ("\(tag)-ping", "\(tag)-echo")
        for name in [ping, echo] {
            _ = try chanctlJSON(["domain", "create", name, "--altp2m", "external", "--vcpus", "2", "--memory-mib", "16"])
            domains.append(name)
        }
        stages.append(("domains", elapsed(t)))

        // 3. Keys and policy.
        t = now()
        hostKey = try chanctlJSON(["keys", "show"])["public_key"]?.string ?? ""
        guard hostKey.count == 64 else { throw .failure("chanctl keys show printed no public_key") }
        for name in [ping, echo] {
            let made = try run(guestAgent, ["keygen", "--out", keyPath(name), "--json"], what: "guest-agent keygen")
            guard let publicKey = made["public_key"]?.string else { throw .failure("guest-agent keygen printed no public_key") }
            _ = try chanctlJSON(["keys", "register", name, publicKey])
        }
        _ = try chanctlJSON(["policy", "allow", ping, echo, "--max-pages", String(max(command.pages, 64)),
                             "--modes", command.mode == .isolated ? "encrypted,isolated" : "encrypted"])
        stages.append(("keys_and_policy", elapsed(t)))

        // 4. The channel, and 5. the agents: echo first, then the measuring
        //    one. On xen-sim the agents answer the frame flow, so they run
        //    before the channel is created (as on Xen).
        channelName = "\(tag)-channel"
        let createChannel = { () throws(CommandFailure) in
            let t = self.now()
            _ = try self.chanctlJSON(["channel", "create", self.channelName, "--between", ping, echo,
                                      "--pages", String(self.command.pages), "--suite", self.command.suite.rawValue,
                                      "--mode", self.command.mode.rawValue])
            stages.append(("channel", self.elapsed(t)))
        }
        if command.backend == .sim { try createChannel() }
        t = now()
        let echoPID = try spawn(guestAgent, agentArguments("run", echo), stdout: work + "/echo.out", stderr: work + "/echo.log")
        agentPIDs.append(echoPID)
        let pingArguments = agentArguments("ping", ping) + ["--channel", channelName, "--count", String(command.count),
                                                          "--size", String(command.size), "--json", "--timeout", "20"]
        let pingPID = try spawn(guestAgent, pingArguments, stdout: work + "/ping.out", stderr: work + "/ping.log")
        agentPIDs.append(pingPID)
        if command.backend == .xenSim { try createChannel() }
        let limit = command.timeout ?? (60 + Double(command.count) / 1000)
        let status = ChildProcess.waitFor(pingPID, seconds: limit)
        agentPIDs.removeAll { $0 == pingPID }
        let output = readFile(work + "/ping.out")
        guard status == 0, let result = try? JSONValue.parse(output.trimmingCharacters(in: " \n\r\t")),
              result["ok"]?.bool == true else {
            let why = status == nil ? "did not finish within \(Int(limit)) s" : "exited with status \(status!)"
            let log = ChildProcess.lastLines(readFile(work + "/ping.log") + readFile(work + "/echo.log"))
            let error = (try? JSONValue.parse(output.trimmingCharacters(in: " \n\r\t")))?["error"]?.string ?? ""
            throw .failure("the ping agent \(why)\(error.isEmpty ? "" : ": " + error)\(log.isEmpty ? "" : "\nagent log:\n" + log)")
        }
        let agentsMs = elapsed(t)
        let open = Double(result["open_ns"]?.uint64 ?? 0) / 1e6
        let first = Double(result["first_round_trip_ns"]?.uint64 ?? 0) / 1e6
        stages.append(("handshake", open))
        stages.append(("first_round_trip", first))
        _ = agentsMs

        // 6. The baseline, with the agents' cores free again.
        if !command.keep { stopAgents() }
        let unix = UnixSocketPingPong.run(count: command.count, size: command.size)
        return Outcome(ping: result, stages: stages, unixSocket: unix, ownSimulator: simulator.ownsSimulator)
    }

    private func agentArguments(_ sub: String, _ domain: String) -> [String] {
        [sub, "--domain", domain, "--key", keyPath(domain), "--host-key", hostKey, "--state-dir", stateDir,
         "--wait", command.wait.rawValue, "--backend", command.backend.rawValue]
    }

    private func keyPath(_ domain: String) -> String { (workDir ?? "/tmp") + "/\(domain).key" }

    // MARK: Teardown

    /// Kills the agents, stops (or cleans) the simulator, removes the files.
    func tearDown() {
        if tornDown { return }
        tornDown = true
        stopAgents()
        if let simulator, simulator.ownsSimulator {
            simulator.stop()
        } else if !stateDir.isEmpty {
            if !channelName.isEmpty { _ = try? chanctlJSON(["channel", "destroy", channelName]) }
            for name in domains { _ = try? chanctlJSON(["domain", "destroy", name]) }
        }
        if let workDir { removeTree(workDir) }
    }

    func stopAgents() {
        ChildProcess.stop(agentPIDs)
        agentPIDs = []
    }

    /// --keep: nothing is stopped; the echo agent keeps serving.
    func keepRunning() { tornDown = true }

    func exploreHelp() -> String {
        let s = "--state-dir \(stateDir)"
        let (ping, echo) = (domains.first ?? "", domains.last ?? "")
        return """
            Left running (--keep):
              simulator       \(stateDir) (daemon pid \(simulator?.daemonPID ?? 0))
              domains         \(domains.joined(separator: ", "))
              channel         \(channelName)
              echo agent      pid \(agentPIDs.map(String.init).joined(separator: " ")) (guest-agent run in \(echo))
              keys and logs   \(workDir ?? "")

            Explore:
              chanctl sim status \(s)
              chanctl domain list \(s)
              chanctl channel list \(s)
              chanctl channel show \(channelName) \(s)

            A channel serves one session; the echo agent picks up every new channel:
              chanctl channel create more --between \(ping) \(echo) --pages 8 \(s)
              \(guestAgent) ping --domain \(ping) --key \(keyPath(ping)) --host-key \(hostKey) \(s) --channel more --count 1000 --size 64
              tail \(workDir ?? "")/echo.log

            Clean up:
              kill \(agentPIDs.map(String.init).joined(separator: " ")); chanctl sim stop \(s); rm -rf \(workDir ?? "")
            """
    }

    // MARK: Processes

    /// Runs chanctl against the simulator; grant commands (keys, policy,
    /// channel) with this run's backend.
    private func chanctlJSON(_ arguments: [String]) throws(CommandFailure) -> JSONValue {
        guard let simulator else { throw .failure("no simulator") }
        let grant = ["keys", "policy", "channel"].contains(arguments.first ?? "")
        return try simulator.chanctlJSON(arguments + (grant ? ["--backend", command.backend.rawValue] : []))
    }

    private func run(_ binary: String, _ arguments: [String], what: String) throws(CommandFailure) -> JSONValue {
        try ChildProcess.runJSON(binary, arguments, scratch: workDir ?? "/tmp", what: what)
    }

    private func spawn(_ binary: String, _ arguments: [String], stdout: String, stderr: String) throws(CommandFailure) -> pid_t {
        try ChildProcess.spawn(binary, arguments, stdout: stdout, stderr: stderr)
    }

    // MARK: Time

    func now() -> Double { DaemonLauncher.monotonicSeconds() }
    private func elapsed(_ since: Double) -> Double { (now() - since) * 1000 }
}

/// Removes a directory tree (no symlinks followed).
func removeTree(_ path: String) {
    guard !path.isEmpty, path != "/" else { return }
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        if let dir = opendir(path) {
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for name in names { removeTree(path + "/" + name) }
        }
        rmdir(path)
    } else {
        unlink(path)
    }
}

func readFile(_ path: String) -> String {
    guard let file = fopen(path, "r") else { return "" }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Path helpers without Foundation.
struct NSStringPath {
    let path: String
    init(_ path: String) { self.path = path }
    var directory: String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
    var lastComponent: String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}

extension String {
    var replacingUnderscores: String { String(map { $0 == "_" ? " " : $0 }) }
}

// MARK: Formatting

func percentile(_ sorted: [UInt64], _ p: Double) -> UInt64 {
    guard !sorted.isEmpty else { return 0 }
    if p >= 100 { return sorted[sorted.count - 1] }
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

func formatNanoseconds(_ ns: UInt64) -> String {
    if ns < 1_000 { return "\(ns) ns" }
    if ns < 1_000_000 { return format(Double(ns) / 1e3) + " us" }
    if ns < 1_000_000_000 { return format(Double(ns) / 1e6) + " ms" }
    return format(Double(ns) / 1e9) + " s"
}

func formatMilliseconds(_ ms: Double) -> String {
    ms < 1 ? format(ms * 1000) + " us" : ms < 1000 ? format(ms) + " ms" : format(ms / 1000) + " s"
}

/// Three significant digits at most.
func format(_ value: Double) -> String {
    let digits = value >= 100 ? 0 : value >= 10 ? 1 : 2
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    var text = String((value * scale).rounded() / scale)
    if digits == 0, text.hasSuffix(".0") { text.removeLast(2) }
    return text
}

private func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
}

// MARK: Unix-socket baseline

/// The same ping-pong over a Unix stream socket pair: an echo thread and the
/// measuring thread, no fork. Returns the sorted round trips in nanoseconds.
enum UnixSocketPingPong {
    final class Echo {
        let fd: Int32
        let size: Int
        init(fd: Int32, size: Int) { self.fd = fd; self.size = size }
    }

    static func run(count: Int, size: Int) -> [UInt64] {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { return [] }
        defer { close(fds[0]) }
        let echo = Unmanaged.passRetained(Echo(fd: fds[1], size: size))
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { context in
            let echo = Unmanaged<Echo>.fromOpaque(context!).takeRetainedValue()
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: echo.size, alignment: 16)
            defer { buffer.deallocate(); close(echo.fd) }
            while readFully(echo.fd, buffer, echo.size), writeFully(echo.fd, buffer, echo.size) {}
            return nil
        }, echo.toOpaque())
        guard started == 0 else { echo.release(); close(fds[1]); return [] }
        let message = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { message.deallocate() }
        memset(message, 0x5a, size)
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        for i in -1..<count {
            let start = monotonicNanoseconds()
            guard writeFully(fds[0], message, size), readFully(fds[0], message, size) else { break }
            if i >= 0 { samples.append(monotonicNanoseconds() - start) }  // the first one warms up
        }
        shutdown(fds[0], Int32(SHUT_WR))
        pthread_join(thread, nil)
        return samples.sorted()
    }

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

private func readFully(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Bool {
    var done = 0
    while done < count {
        let n = read(fd, buffer + done, count - done)
        if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return false }
    }
    return true
}

private func writeFully(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Bool {
    var done = 0
    while done < count {
        let n = write(fd, buffer + done, count - done)
        if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return false }
    }
    return true
}
