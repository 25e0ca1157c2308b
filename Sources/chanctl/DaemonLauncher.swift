import Altp2mSim
#if canImport(Glibc)
import Glibc
#endif

/// Starts and stops the background simulator daemon: `sim start` re-executes
/// this binary as `chanctl sim serve --background` with its standard error
/// in STATE/daemon.log, and returns once the daemon answers.
enum DaemonLauncher {
    /// How long `start` waits for the daemon to answer, and `stop` for it to exit.
    static let timeoutSeconds = 15.0

    static func start(_ directory: StateDirectory, serveArguments: [String]) throws(CommandFailure) -> JSONValue {
        do { try directory.prepare() } catch { throw .failure(error.description) }
        if let client = try? SimClient(stateDirectory: directory, timeoutSeconds: 2),
           let status = try? client.call("sim.status") {
            throw .failure("a simulator is already running at \(directory.socketPath) (pid \(renderScalar(status["pid"] ?? .null))); run: chanctl sim stop")
        }

        let executable = "/proc/self/exe"
        let arguments = ["chanctl", "sim", "serve", "--background", "--state-dir", directory.path] + serveArguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, directory.logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)

        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, &argv, environ)
        guard rc == 0 else {
            throw .failure("cannot start the simulator daemon: \(String(cString: strerror(rc)))")
        }

        let deadline = monotonicSeconds() + timeoutSeconds
        while monotonicSeconds() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                throw .failure("the simulator daemon exited at start: \(lastLine(of: directory.logPath)) (log: \(directory.logPath))")
            }
            if let client = try? SimClient(stateDirectory: directory, timeoutSeconds: 2),
               var status = try? client.call("sim.status").object {
                status["ok"] = true
                status["socket"] = .string(directory.socketPath)
                status["state_dir"] = .string(directory.path)
                return .object(status)
            }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        var ignored: Int32 = 0
        waitpid(pid, &ignored, 0)
        throw .failure("the simulator daemon did not answer within \(Int(timeoutSeconds)) s; see \(directory.logPath)")
    }

    static func stop(_ directory: StateDirectory) throws(CommandFailure) -> JSONValue {
        let client: SimClient
        do {
            client = try SimClient(stateDirectory: directory, timeoutSeconds: timeoutSeconds)
        } catch {
            throw CommandFailure(error)
        }
        let response: JSONValue
        do { response = try client.call("sim.stop") } catch { throw CommandFailure(error) }
        // The daemon closes every connection as it exits: wait for the end of
        // stream (a zombie left to a non-reaping init would fool a pid check).
        _ = try? client.call("sim.status")
        client.close()
        return response
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The last non-empty line of a log file, for error messages.
    static func lastLine(of path: String) -> String {
        guard let file = fopen(path, "r") else { return "no log" }
        defer { fclose(file) }
        var last = ""
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .trimmingCharacters(in: "\n\r ")
            if !line.isEmpty { last = line }
        }
        return last.isEmpty ? "no message" : last
    }
}
