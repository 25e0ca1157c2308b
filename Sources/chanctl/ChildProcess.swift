import Altp2mSim
#if canImport(Glibc)
import Glibc
#endif

/// Child processes of the commands that orchestrate a whole run (`pingpong`,
/// `bench`): started with posix_spawn, waited for with a deadline, and
/// always reaped, so a failed run leaves nothing behind.
enum ChildProcess {
    /// Starts `binary` with standard input from /dev/null and its output in files.
    static func spawn(_ binary: String, _ arguments: [String], stdout: String, stderr: String) throws(CommandFailure) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv0 = NSStringPath(binary).lastComponent
        var argv: [UnsafeMutablePointer<CChar>?] = ([argv0] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, binary, &actions, nil, &argv, environ)
        guard rc == 0 else { throw .failure("cannot start \(binary): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Waits for `pid`; its exit status (128+signal when killed), or nil after `seconds`.
    @discardableResult
    static func waitFor(_ pid: pid_t, seconds: Double) -> Int32? {
        let deadline = DaemonLauncher.monotonicSeconds() + seconds
        var delay: UInt32 = 200
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                let signal = status & 0x7f
                return signal == 0 ? (status >> 8) & 0xff : 128 + signal
            }
            if r < 0 {
                // Not our child (a simulator this run did not start): gone when kill(0) fails.
                if kill(pid, 0) != 0 { return 0 }
            }
            if DaemonLauncher.monotonicSeconds() >= deadline { return nil }
            usleep(delay)
            delay = min(delay * 2, 20_000)
        }
    }

    /// SIGTERM, then SIGKILL for whoever is still there after two seconds.
    static func stop(_ pids: [pid_t]) {
        for pid in pids { kill(pid, SIGTERM) }
        for pid in pids where waitFor(pid, seconds: 2) == nil {
            kill(pid, SIGKILL)
            _ = waitFor(pid, seconds: 5)
        }
    }

    /// Runs a child to completion (`timeout` seconds at most) and parses the
    /// JSON object it prints; a failure or a refusal becomes a `CommandFailure`
    /// that names `what` and quotes the child's error.
    static func runJSON(_ binary: String, _ arguments: [String], scratch: String, what: String,
                        timeout: Double = 30) throws(CommandFailure) -> JSONValue {
        let out = scratch + "/child.out"
        let err = scratch + "/child.err"
        let pid = try spawn(binary, arguments, stdout: out, stderr: err)
        let status = waitFor(pid, seconds: timeout)
        if status == nil { kill(pid, SIGKILL); _ = waitFor(pid, seconds: 5) }
        let text = readFile(out).trimmingCharacters(in: " \n\r\t")
        let parsed = try? JSONValue.parse(text)
        guard status == 0, let parsed else {
            let message = parsed?["error"]?.string ?? readFile(err).trimmingCharacters(in: " \n\r\t")
            throw .failure("\(what) failed (\(status.map { "exit \($0)" } ?? "timed out")): \(message.isEmpty ? text : message)")
        }
        return parsed
    }

    /// This executable's path (children of chanctl are chanctl or its siblings).
    static func ownExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A fresh private directory under $TMPDIR (or /tmp).
    static func makeTemporaryDirectory(_ prefix: String) throws(CommandFailure) -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw .failure("cannot create a temporary directory in \(base): \(String(cString: strerror(errno))); set TMPDIR") }
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The last `n` lines of a log, for error messages.
    static func lastLines(_ text: String, _ n: Int = 8) -> String {
        text.split(separator: "\n").suffix(n).joined(separator: "\n")
    }
}

/// A simulator for one orchestrated run: a private daemon in the run's
/// temporary directory (stopped and removed at the end), or the one already
/// answering at an explicit state directory (left running).
final class RunSimulator {
    let workDir: String
    private(set) var stateDir = ""
    private(set) var ownsSimulator = false
    private(set) var daemonPID: pid_t = 0
    private let explicitStateDir: String?
    private let chanctl = ChildProcess.ownExecutable()

    init(workDir: String, explicitStateDir: String?) {
        self.workDir = workDir
        self.explicitStateDir = explicitStateDir
    }

    /// Uses the running simulator at the explicit state directory, or starts a private one.
    func start(serveArguments: [String] = []) throws(CommandFailure) {
        if let explicit = explicitStateDir, Self.answers(explicit) {
            stateDir = explicit
            return
        }
        stateDir = explicitStateDir ?? workDir + "/state"
        let started = try DaemonLauncher.start(StateDirectory.resolve(explicit: stateDir), serveArguments: serveArguments)
        ownsSimulator = true
        daemonPID = pid_t(started["pid"]?.int64 ?? 0)
    }

    /// Runs `chanctl ARGS --state-dir S --json`; a refusal becomes the run's failure.
    func chanctlJSON(_ arguments: [String], timeout: Double = 30) throws(CommandFailure) -> JSONValue {
        try ChildProcess.runJSON(chanctl, arguments + ["--state-dir", stateDir, "--json"], scratch: workDir,
                                 what: "chanctl \(arguments.prefix(2).joined(separator: " "))", timeout: timeout)
    }

    /// Stops a simulator this run started (SIGKILL if it does not stop) and
    /// removes its private state directory.
    func stop() {
        guard ownsSimulator else { return }
        ownsSimulator = false
        if (try? DaemonLauncher.stop(StateDirectory.resolve(explicit: stateDir))) == nil, daemonPID > 0 {
            kill(daemonPID, SIGKILL)
        }
        if daemonPID > 0, ChildProcess.waitFor(daemonPID, seconds: 10) == nil {
            kill(daemonPID, SIGKILL)
            _ = ChildProcess.waitFor(daemonPID, seconds: 5)
        }
        if explicitStateDir == nil { removeTree(stateDir) }
    }

    private static func answers(_ directory: String) -> Bool {
        guard let client = try? SimClient(stateDirectory: StateDirectory.resolve(explicit: directory), timeoutSeconds: 2) else { return false }
        return (try? client.call("sim.status")) != nil
    }
}
