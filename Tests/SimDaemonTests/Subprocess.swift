import Foundation

/// A child process with pipes, spawned with `posix_spawn` and reaped with
/// `waitpid`.
///
/// Foundation's `Process` can miss a child's exit when several tests spawn
/// at once (its `waitUntilExit` then never returns), so the tests use this
/// instead. Reads poll with deadlines; the output of a child that has exited
/// is drained without waiting for end of file, so a grandchild that kept a
/// copy of the pipe (a daemon) cannot hang a test.
final class Subprocess: @unchecked Sendable {
    // @unchecked: each instance is driven by one test at a time.
    let pid: pid_t
    private var stdinFD: Int32
    let stdoutFD: Int32
    let stderrFD: Int32
    private var status: Int32?

    /// Serializes pipe creation and spawning, so that no other spawn in this
    /// process inherits a pipe end between `pipe` and `FD_CLOEXEC`.
    private static let spawnLock = NSLock()

    init(_ binary: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        var fds: [[Int32]] = []
        var spawned: pid_t = 0
        let rc: Int32 = try Self.spawnLock.withLock {
            for _ in 0..<3 {
                var pair: [Int32] = [-1, -1]
                guard pipe(&pair) == 0 else { throw HarnessError("pipe failed") }
                for fd in pair { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
                fds.append(pair)
            }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_adddup2(&actions, fds[0][0], 0)
            posix_spawn_file_actions_adddup2(&actions, fds[1][1], 1)
            posix_spawn_file_actions_adddup2(&actions, fds[2][1], 2)
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            // Children get a clean signal mask, whatever this thread blocks.
            var none = sigset_t()
            sigemptyset(&none)
            posix_spawnattr_setsigmask(&attributes, &none)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
            let argv: [UnsafeMutablePointer<CChar>?] = ([binary] + arguments).map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            let env = environment ?? ProcessInfo.processInfo.environment
            let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { envp.forEach { free($0) } }
            return posix_spawn(&spawned, binary, &actions, &attributes, argv, envp)
        }
        close(fds[0][0])
        close(fds[1][1])
        close(fds[2][1])
        guard rc == 0 else {
            [fds[0][1], fds[1][0], fds[2][0]].forEach { close($0) }
            throw HarnessError("cannot run \(binary): \(String(cString: strerror(rc)))")
        }
        pid = spawned
        stdinFD = fds[0][1]
        stdoutFD = fds[1][0]
        stderrFD = fds[2][0]
    }

    deinit {
        kill()
        [stdinFD, stdoutFD, stderrFD].forEach { if $0 >= 0 { close($0) } }
    }

    func write(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.write(stdinFD, $0.baseAddress! + offset, bytes.count - offset) }
            guard n > 0 else { throw HarnessError("cannot write to the child: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    /// Closes the child's standard input (once: a second close could hit a
    /// descriptor another thread has been given since).
    func closeInput() {
        if stdinFD >= 0 { close(stdinFD) }
        stdinFD = -1
    }

    /// Reaps the child if it exited; returns its raw wait status.
    func poll() -> Int32? {
        if let status { return status }
        var raw: Int32 = 0
        if waitpid(pid, &raw, WNOHANG) == pid { status = raw }
        return status
    }

    /// Waits for the child to exit (killing it after `timeoutSeconds`) and
    /// returns its raw wait status.
    @discardableResult
    func wait(timeoutSeconds: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while poll() == nil {
            if Date() > deadline {
                kill()
                break
            }
            usleep(2_000)
        }
        return status ?? -1
    }

    /// SIGKILL by pid, then reap.
    func kill() {
        guard poll() == nil else { return }
        Foundation.kill(pid, SIGKILL)
        var raw: Int32 = 0
        if waitpid(pid, &raw, 0) == pid { status = raw }
    }

    var exitCode: Int32? { status.flatMap { $0 & 0x7F == 0 ? ($0 >> 8) & 0xFF : nil } }
    var terminatingSignal: Int32? { status.flatMap { $0 & 0x7F != 0 ? $0 & 0x7F : nil } }

    /// Runs to completion, collecting standard output and error.
    static func run(_ binary: String, _ arguments: [String], environment: [String: String]? = nil,
                    timeoutSeconds: Double = 30) throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try Subprocess(binary, arguments, environment: environment)
        child.closeInput()
        var out: [UInt8] = []
        var err: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            let exited = child.poll() != nil
            var pfds = [pollfd(fd: child.stdoutFD, events: Int16(POLLIN), revents: 0),
                        pollfd(fd: child.stderrFD, events: Int16(POLLIN), revents: 0)]
            _ = Foundation.poll(&pfds, 2, exited ? 0 : 20)
            var progressed = false
            for (index, pfd) in pfds.enumerated() where pfd.revents != 0 {
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = Foundation.read(pfd.fd, &chunk, chunk.count)
                if n > 0 {
                    progressed = true
                    if index == 0 { out += chunk[..<n] } else { err += chunk[..<n] }
                }
            }
            if exited && !progressed { break }
            if Date() > deadline {
                child.kill()
                throw HarnessError("chanctl \(arguments.joined(separator: " ")) did not finish in \(timeoutSeconds) s")
            }
        }
        return (child.exitCode ?? 128 + (child.terminatingSignal ?? 0), String(decoding: out, as: UTF8.self),
                String(decoding: err, as: UTF8.self))
    }
}
