import Foundation
import Testing

/// A simulated host driven through the Xen backend (`--backend xen-sim`):
/// the grant module runs in each chanctl process over XenControl and the
/// simulator's Xen libraries, and the agents answer the frame flow, so they
/// run before a channel is created (as on Xen).
final class XenSimWorld {
    let tmp: TemporaryDirectory
    let state: String
    private(set) var hostKey = ""
    private var started: [Process] = []

    init(domains: [String]) throws {
        tmp = try TemporaryDirectory()
        state = tmp.path + "/state"
        try run("sim", "start", backend: false)
        for name in domains {
            try run("domain", "create", name, "--altp2m", "external", backend: false)
            let key = try Binaries.run(Binaries.guestAgent, ["keygen", "--out", keyPath(name), "--json"])
            try chanctl("keys", "register", name, try #require(key.json?["public_key"] as? String))
        }
        hostKey = try #require(try chanctl("keys", "show").json?["public_key"] as? String)
    }

    deinit {
        for process in started where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for process in started { _ = waitForExit(process, seconds: 10) }
        _ = try? Binaries.run(Binaries.chanctl, ["sim", "stop", "--state-dir", state])
    }

    func keyPath(_ domain: String) -> String { tmp.path + "/\(domain).key" }

    /// Where this world's grant module keeps its state (and `grant.lock`).
    var grantDirectory: String { state + "/grant-xen-sim" }

    /// chanctl with this world's state directory, --json and --backend xen-sim.
    @discardableResult
    func chanctl(_ arguments: String..., expect status: Int32? = 0) throws -> Binaries.Result {
        try run(arguments, backend: true, expect: status)
    }

    @discardableResult
    private func run(_ arguments: String..., backend: Bool) throws -> Binaries.Result {
        try run(arguments, backend: backend, expect: 0)
    }

    private func run(_ arguments: [String], backend: Bool, expect status: Int32?,
                     sourceLocation: SourceLocation = #_sourceLocation) throws -> Binaries.Result {
        let result = try Binaries.run(Binaries.chanctl, arguments + ["--state-dir", state, "--json"]
                                      + (backend ? ["--backend", "xen-sim"] : []), timeout: 120)
        if let status {
            #expect(result.status == status, "chanctl \(arguments.joined(separator: " ")): \(result.stdout) \(result.stderr)",
                    sourceLocation: sourceLocation)
        }
        return result
    }

    /// The names of the channels the grant module has registered.
    func channelNames() throws -> Set<String> {
        let list = try chanctl("channel", "list")
        return Set((list.json?["channels"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String })
    }

    /// Waits until `condition` holds (true) or `seconds` pass (false).
    func waitUntil(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    /// Starts `guest-agent run` in `domain`: it answers the frame flow and
    /// serves every channel published for the domain.
    @discardableResult
    func startAgent(_ domain: String) throws -> Process {
        try spawn(try Binaries.guestAgent, ["run", "--wait", "block"] + agentOptions(domain), log: "run-\(domain)")
    }

    func agentOptions(_ domain: String) -> [String] {
        ["--domain", domain, "--key", keyPath(domain), "--host-key", hostKey, "--state-dir", state, "--backend", "xen-sim"]
    }

    /// `chanctl domain watch --backend xen-sim`, logging to `log(name)`.
    func startWatcher(log name: String = "watch", environment: [String: String] = [:]) throws -> Process {
        try spawn(try Binaries.chanctl, ["domain", "watch", "--backend", "xen-sim", "--state-dir", state], log: name,
                  environment: environment)
    }

    /// Starts `executable`, standard output and error to files; killed at the end.
    func spawn(_ executable: String, _ arguments: [String], log name: String,
               environment: [String: String] = [:]) throws -> Process {
        let process = try spawnLogged(executable, arguments, directory: tmp.path, log: name, environment: environment)
        started.append(process)
        return process
    }

    func log(_ name: String) -> String {
        (try? String(contentsOfFile: tmp.path + "/\(name).err", encoding: .utf8)) ?? ""
    }

    /// The audit log's records of `action` for `channel`.
    func auditRecords(_ action: String, channel: String) throws -> [[String: Any]] {
        let shown = try chanctl("audit", "show")
        let records = shown.json?["records"] as? [[String: Any]] ?? []
        return records.filter { $0["action"] as? String == action && $0["channel"] as? String == channel }
    }
}

/// Holds `grant.lock` of a grant state directory as another chanctl would
/// (an exclusive flock), until `release` or the end of its life.
/// (`@unchecked`: a test hands it to one other thread, which releases it
/// while the test's own thread waits for a chanctl.)
final class GrantLockHolder: @unchecked Sendable {
    private var fd: Int32

    init(directory: String) throws {
        fd = open(directory + "/grant.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw BinaryError("cannot take \(directory)/grant.lock: \(String(cString: strerror(errno)))")
        }
    }

    func release() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    deinit { release() }
}

/// `chanctl domain watch` through the built binaries on `--backend xen-sim`:
/// the dom0 service that tears down a dead domain's channels on Xen.
@Suite("End to end: chanctl domain watch tears down dead domains' channels (xen-sim)", .serialized, .timeLimit(.minutes(4)))
struct DomainWatchTests {
    /// A world with the channel `probe` between left and right: `run` in
    /// right, a long `ping` in left, both in the middle of round trips.
    func probeWorld() throws -> (XenSimWorld, Process) {
        let world = try XenSimWorld(domains: ["left", "right"])
        try world.chanctl("policy", "allow", "left", "right")
        try world.startAgent("right")
        let ping = try world.spawn(try Binaries.guestAgent, ["ping", "--channel", "probe", "--count", "100000000", "--size", "64",
                                                             "--wait", "block", "--timeout", "30"] + world.agentOptions("left"),
                                   log: "ping")
        try world.chanctl("channel", "create", "probe", "--between", "left", "right", "--pages", "4")
        #expect(world.waitUntil(seconds: 20) { world.log("run-right").contains("channel open") },
                "the channel never opened: \(world.log("run-right")) \(world.log("ping"))")
        return (world, ping)
    }

    @Test("a crash with the watcher running: within 5 s the channel is gone, the surviving ping sees its peer die, the audit log has channel.teardown and the watcher logged it; READY=1, WATCHDOG=1, and SIGTERM gives STOPPING=1 and exit 0")
    func crashWhileWatching() throws {
        let (world, ping) = try probeWorld()
        let listener = try NotifyListener(path: world.tmp.path + "/notify.sock")
        let watcher = try world.startWatcher(environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "1000000"])
        let ready = try #require(listener.await("READY=1", seconds: 20), "no READY=1: \(world.log("watch"))")
        #expect(ready.last?.contains("STATUS=watching @releaseDomain") == true, "\(ready)")
        #expect(try world.channelNames() == ["probe"], "nothing is alive is torn down at start: \(world.log("watch"))")
        #expect(ping.isRunning, "\(world.log("ping"))")

        try world.chanctl("domain", "crash", "right")
        let crashed = Date()
        let gone = try world.waitUntil(seconds: 5) { try world.channelNames().isEmpty }
        let took = Date().timeIntervalSince(crashed)
        print("domain watch: channel gone \(String(format: "%.3f", took)) s after the crash")
        #expect(gone, "the channel is still registered 5 s after the crash: \(world.log("watch"))")
        #expect(waitForExit(ping, seconds: 10), "ping must end when its peer dies: \(world.log("ping"))")
        #expect(ping.terminationStatus == 1)
        #expect(world.log("ping").contains("died"), "ping names the dead peer: \(world.log("ping"))")
        let teardown = try world.auditRecords("channel.teardown", channel: "probe")
        #expect(teardown.count == 1, "\(teardown)")
        #expect((teardown.first?["details"] as? [String: String])?["reason"] == "responder died", "\(teardown)")
        #expect(teardown.first?["outcome"] as? String == "ok", "\(teardown)")
        let lines = world.log("watch").split(separator: "\n").filter { $0.contains("tore down channel probe") }
        #expect(lines.count == 1 && lines[0].contains("right (d2) is shut down (crash)"), "\(world.log("watch"))")

        // Keep-alives came while it ran (every 500 ms).
        #expect(listener.await("WATCHDOG=1", seconds: 3) != nil, "no WATCHDOG=1: \(world.log("watch"))")
        kill(watcher.processIdentifier, SIGTERM)
        #expect(listener.await("STOPPING=1", seconds: 5) != nil, "no STOPPING=1 after SIGTERM: \(world.log("watch"))")
        #expect(waitForExit(watcher, seconds: 10) && watcher.terminationStatus == 0, "\(world.log("watch"))")
    }

    @Test("the control: a crash with no watcher leaves the channel registered; a watcher started afterwards sweeps it away before it says READY=1")
    func crashWhileNotWatching() throws {
        let (world, ping) = try probeWorld()
        try world.chanctl("domain", "crash", "right")
        // Nobody in this process tree but the watcher tears it down on xen-sim.
        usleep(2_000_000)
        #expect(try world.channelNames() == ["probe"], "without a watcher the channel stays registered")
        #expect(try world.auditRecords("channel.teardown", channel: "probe").isEmpty)

        let listener = try NotifyListener(path: world.tmp.path + "/notify.sock")
        let started = Date()
        let watcher = try world.startWatcher(environment: ["NOTIFY_SOCKET": listener.path])
        #expect(listener.await("READY=1", seconds: 20) != nil, "no READY=1: \(world.log("watch"))")
        print("domain watch: start-up sweep and READY=1 in \(String(format: "%.3f", Date().timeIntervalSince(started))) s")
        // Ready comes after the first sweep: the channel is gone already.
        #expect(try world.channelNames().isEmpty, "READY=1 before the start-up sweep: \(world.log("watch"))")
        let log = world.log("watch")
        let teardown = try #require(log.range(of: "tore down channel probe"), "\(log)")
        let watching = try #require(log.range(of: "watching @releaseDomain"), "\(log)")
        #expect(log[teardown].contains("probe") && log.contains("cause=start"), "swept at start: \(log)")
        #expect(watching.lowerBound < teardown.lowerBound, "the watch is registered before the sweep, so no death falls in between: \(log)")
        #expect(try world.auditRecords("channel.teardown", channel: "probe").count == 1)
        #expect(waitForExit(ping, seconds: 10), "\(world.log("ping"))")
        kill(watcher.processIdentifier, SIGTERM)
        #expect(waitForExit(watcher, seconds: 10) && watcher.terminationStatus == 0, "\(world.log("watch"))")
    }

    @Test("two domains die while a sweep waits for the grant state another chanctl holds: both are torn down, and a channel create that meets the sweep waits and succeeds")
    func coalescedDeathsAndLockCollision() throws {
        let world = try XenSimWorld(domains: ["a", "b", "c", "d"])
        try world.chanctl("policy", "allow", "a", "b")
        try world.chanctl("policy", "allow", "c", "d")
        try world.chanctl("policy", "allow", "a", "c")
        for domain in ["a", "b", "c", "d"] { try world.startAgent(domain) }
        try world.chanctl("channel", "create", "ab", "--between", "a", "b", "--pages", "4")
        try world.chanctl("channel", "create", "cd", "--between", "c", "d", "--pages", "4")
        let watcher = try world.startWatcher()
        #expect(world.waitUntil(seconds: 20) { world.log("watch").contains("watching @releaseDomain") }, "\(world.log("watch"))")
        usleep(300_000)

        // Another chanctl holds the grant state: the sweep the first crash
        // starts waits for it, and the second crash's event queues behind.
        let holder = try GrantLockHolder(directory: world.grantDirectory)
        try world.chanctl("domain", "crash", "b")
        try world.chanctl("domain", "crash", "d")
        // A create that meets the busy state waits too, rather than failing.
        let create = try world.spawn(try Binaries.chanctl, ["channel", "create", "ac", "--between", "a", "c", "--pages", "4",
                                                            "--state-dir", world.state, "--backend", "xen-sim", "--json"],
                                     log: "create")
        usleep(1_500_000)
        #expect(create.isRunning, "channel create must wait for the lock, not fail at once: \(world.log("create"))")
        let busy = try world.chanctl("channel", "list", "--lock-wait", "0", expect: 1)
        #expect((busy.stdout + busy.stderr).contains("another process is using the grant state"), "\(busy.stdout) \(busy.stderr)")
        holder.release()

        #expect(waitForExit(create, seconds: 60), "\(world.log("create"))")
        #expect(create.terminationStatus == 0, "channel create after the wait: \(world.log("create"))")
        let settled = try world.waitUntil(seconds: 10) { try world.channelNames() == ["ac"] }
        #expect(settled, "ab and cd torn down, ac created: \(world.log("watch")) \(world.log("create"))")
        let log = world.log("watch")
        #expect(log.contains("tore down channel ab") && log.contains("b (d2) is shut down (crash)"), "\(log)")
        #expect(log.contains("tore down channel cd") && log.contains("d (d4) is shut down (crash)"), "\(log)")
        #expect(try world.auditRecords("channel.teardown", channel: "ab").count == 1)
        #expect(try world.auditRecords("channel.teardown", channel: "cd").count == 1)
        #expect(try world.auditRecords("channel.create", channel: "ac").first?["outcome"] as? String == "ok")
        kill(watcher.processIdentifier, SIGTERM)
        #expect(waitForExit(watcher, seconds: 10) && watcher.terminationStatus == 0, "\(log)")
    }

    @Test("grant commands wait for grant.lock up to --lock-wait: one released in time goes through; past it the error names the lock and the fix; --backend sim refuses domain watch (exit 2)")
    func lockWait() throws {
        let world = try XenSimWorld(domains: ["left"])
        let holder = try GrantLockHolder(directory: world.grantDirectory)
        var start = Date()
        let refused = try world.chanctl("channel", "list", "--lock-wait", "1", expect: 1)
        let waited = Date().timeIntervalSince(start)
        #expect(waited >= 0.9 && waited < 10, "--lock-wait 1 waits a second: \(waited) s")
        let said = refused.stdout + refused.stderr
        #expect(said.contains("another process is using the grant state") && said.contains("waited 1 s") && said.contains("fuser"),
                "\(said)")

        let release = Thread { usleep(1_000_000); holder.release() }
        start = Date()
        release.start()
        try world.chanctl("channel", "list")
        let took = Date().timeIntervalSince(start)
        #expect(took >= 0.9 && took < 10, "the list waited for the holder, then ran: \(took) s")

        let sim = try Binaries.run(Binaries.chanctl, ["domain", "watch", "--state-dir", world.state])
        #expect(sim.status == 2 && sim.stderr.contains("simulator daemon tears down"), "\(sim.stdout) \(sim.stderr)")
    }
}
