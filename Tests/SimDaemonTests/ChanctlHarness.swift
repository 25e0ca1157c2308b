import Altp2mSim
import Foundation
import Testing

/// Runs the built `chanctl` binary against a private simulator.
///
/// The binary is looked up next to the test bundle (`.build/<config>/` or
/// any `--scratch-path`), or taken from `$CHANCTL_PATH`. Each harness owns a
/// fresh 0700 state directory; ``stop()`` (called by ``withSimulator``, even
/// when a test fails) stops the daemon, kills any guest process still running
/// and removes the directory.
final class ChanctlHarness: @unchecked Sendable {
    // @unchecked: used from one test at a time; guests are tracked under a lock.
    let stateDir: String
    let binary: String
    private let lock = NSLock()
    private var guests: [GuestProcess] = []
    /// `--backend` for the commands the Xen backend also answers (see
    /// ``backendArguments(for:)``); nil for the simulator's own requests.
    var backend: String?

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        /// stdout parsed as one JSON object (nil if it is not).
        var json: JSONValue? { try? JSONValue.parse(stdout.trimmingCharacters(in: .whitespacesAndNewlines)) }
        subscript(key: String) -> JSONValue? { json?[key] }
    }

    init() throws {
        binary = try Self.locateChanctl()
        var template = Array((NSTemporaryDirectory() + "/sdt-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw HarnessError("mkdtemp failed") }
        stateDir = String(cString: made)
    }

    static func locateChanctl() throws -> String {
        if let path = ProcessInfo.processInfo.environment["CHANCTL_PATH"], FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        // The test runner lives in .build/<triple>/<config>/ (or under a
        // scratch path); chanctl is built into the same directory.
        let executable = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                             ?? CommandLine.arguments[0])
        var directory = executable.deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = directory.appendingPathComponent("chanctl").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        throw HarnessError("chanctl not found next to \(executable.path); build it first (swift build) or set CHANCTL_PATH")
    }

    /// Runs `chanctl ARGS --state-dir DIR [--json]` and waits (at most 30 s).
    @discardableResult
    func run(_ arguments: [String], json: Bool = true, stateDir explicit: String? = nil,
             environment: [String: String]? = nil) -> Result {
        var full = arguments + ["--state-dir", explicit ?? stateDir] + backendArguments(for: arguments)
        if json { full.append("--json") }
        return Self.execute(binary, full, environment: environment)
    }

    /// `--backend B` for `altp2m` commands (but `raw`, which builds
    /// hypercall buffers by hand) and `domain list/get-param/set-param`
    /// made as dom0; nothing for the rest, which only the simulator answers.
    func backendArguments(for arguments: [String]) -> [String] {
        guard let backend, arguments.count >= 2,
              !arguments.contains("--as-guest"), !arguments.contains("--as-guest-user") else { return [] }
        switch (arguments[0], arguments[1]) {
        case ("altp2m", "raw"): return []
        case ("altp2m", _), ("domain", "list"), ("domain", "get-param"), ("domain", "set-param"):
            return ["--backend", backend]
        default: return []
        }
    }

    static func execute(_ binary: String, _ arguments: [String], environment: [String: String]? = nil) -> Result {
        do {
            let (status, out, err) = try Subprocess.run(binary, arguments, environment: environment)
            return Result(status: status, stdout: out, stderr: err)
        } catch {
            return Result(status: -1, stdout: "", stderr: "\(error)")
        }
    }

    /// Runs a command that must succeed and returns its JSON.
    @discardableResult
    func ok(_ arguments: String..., sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue {
        ok(arguments, sourceLocation: sourceLocation)
    }

    @discardableResult
    func ok(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue {
        let result = run(arguments)
        #expect(result.status == 0, "chanctl \(arguments.joined(separator: " ")): \(result.stdout) \(result.stderr)",
                sourceLocation: sourceLocation)
        #expect(result["ok"]?.bool == true, "chanctl \(arguments.joined(separator: " ")): \(result.stdout)",
                sourceLocation: sourceLocation)
        return result.json ?? .null
    }

    /// Runs a command that must fail with a hypervisor error (exit 3).
    func xenError(_ errno: String, _ code: Int64, _ arguments: String...,
                  sourceLocation: SourceLocation = #_sourceLocation) {
        let result = run(arguments)
        #expect(result.status == 3, "chanctl \(arguments.joined(separator: " ")) exit \(result.status): \(result.stdout)",
                sourceLocation: sourceLocation)
        #expect(result["errno"]?.string == errno, "chanctl \(arguments.joined(separator: " ")): \(result.stdout)",
                sourceLocation: sourceLocation)
        #expect(result["code"]?.int64 == code, sourceLocation: sourceLocation)
        #expect(result["ok"]?.bool == false, sourceLocation: sourceLocation)
    }

    /// Starts the daemon (`sim start` plus `extra` options).
    func start(_ extra: String...) throws {
        let result = run(["sim", "start"] + extra)
        guard result.status == 0 else { throw HarnessError("sim start failed: \(result.stdout) \(result.stderr)") }
    }

    /// Spawns a `chanctl sim guest-probe` process.
    func guest(_ domain: String, vcpu: Int = 0, enforcement: String = "software") throws -> GuestProcess {
        let guest = try GuestProcess(binary: binary, arguments: ["sim", "guest-probe", domain, "--vcpu", String(vcpu),
                                                                 "--enforcement", enforcement, "--state-dir", stateDir])
        lock.withLock { guests.append(guest) }
        return guest
    }

    /// Stops the daemon and every guest process, and removes the state directory.
    func stop() {
        for guest in lock.withLock({ guests }) { guest.kill() }
        if FileManager.default.fileExists(atPath: stateDir + "/sim.sock") {
            let result = run(["sim", "stop"])
            if result.status != 0, let text = try? String(contentsOfFile: stateDir + "/daemon.pid", encoding: .utf8),
               let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                Foundation.kill(pid, SIGKILL)
            }
        }
        try? FileManager.default.removeItem(atPath: stateDir)
    }

    /// The daemon's pid from its pid file.
    var daemonPID: Int32? {
        guard let text = try? String(contentsOfFile: stateDir + "/daemon.pid", encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// Runs `body` with a started simulator and always stops it.
func withSimulator(_ options: String..., body: (ChanctlHarness) throws -> Void) throws {
    try withSimulator(backend: nil, options, body: body)
}

/// The same, with `backend` for the commands the Xen backend answers too.
func withSimulator(backend: String?, _ options: String..., body: (ChanctlHarness) throws -> Void) throws {
    try withSimulator(backend: backend, options, body: body)
}

private func withSimulator(backend: String?, _ options: [String], body: (ChanctlHarness) throws -> Void) throws {
    let sim = try ChanctlHarness()
    sim.backend = backend
    defer { sim.stop() }
    let result = sim.run(["sim", "start"] + options)
    guard result.status == 0 else { throw HarnessError("sim start failed: \(result.stdout) \(result.stderr)") }
    try body(sim)
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A `chanctl sim guest-probe` child: commands go to its standard input, one
/// JSON answer per line comes back (read with a timeout).
final class GuestProcess: @unchecked Sendable {
    // @unchecked: driven by one test at a time.
    private let child: Subprocess
    private var buffer: [UInt8] = []
    /// The first line the guest printed (its attach result).
    private(set) var hello: JSONValue = .null

    init(binary: String, arguments: [String]) throws {
        child = try Subprocess(binary, arguments)
        hello = try readLine(timeoutSeconds: 15)
        guard hello["ok"]?.bool == true else { throw HarnessError("guest did not attach: \(hello.serialized)") }
    }

    var pid: Int32 { child.pid }

    /// Sends a command and returns the guest's JSON answer.
    @discardableResult
    func send(_ command: String, timeoutSeconds: Double = 15) throws -> JSONValue {
        try post(command)
        return try readLine(timeoutSeconds: timeoutSeconds)
    }

    /// Sends a command without waiting for the answer (see ``answer(timeoutSeconds:)``).
    func post(_ command: String) throws {
        try child.write(command + "\n")
    }

    /// Reads the answer to a ``post(_:)``.
    func answer(timeoutSeconds: Double = 15) throws -> JSONValue {
        try readLine(timeoutSeconds: timeoutSeconds)
    }

    /// Sends a command after which the guest is expected to die; returns its
    /// exit code and the signal that ended it, if any.
    func sendExpectingDeath(_ command: String) -> (exitCode: Int32?, signal: Int32?) {
        try? post(command)
        child.wait(timeoutSeconds: 15)
        return (child.exitCode, child.terminatingSignal)
    }

    private func readLine(timeoutSeconds: Double) throws -> JSONValue {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                let line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                return try JSONValue.parse(line)
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw HarnessError("guest process did not answer in \(timeoutSeconds) s") }
            var pfd = pollfd(fd: child.stdoutFD, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(min(remaining, 1) * 1000)) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = Foundation.read(child.stdoutFD, &chunk, chunk.count)
            guard n > 0 else { throw HarnessError("guest process closed its output") }
            buffer += chunk[..<n]
        }
    }

    /// Kills the process (SIGKILL, by its pid) if it still runs.
    func kill() { child.kill() }
}
