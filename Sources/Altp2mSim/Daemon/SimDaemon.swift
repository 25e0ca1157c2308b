import Altp2m
import LineLog
import Logging
import CPlatform
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The simulator daemon: one ``Altp2mEngine`` served over a Unix socket.
///
/// Everything runs on the thread that calls ``run()``: a `poll` loop accepts
/// connections, reads length-prefixed JSON requests and answers them one at
/// a time, so the engine needs no locks. Requests that change state are
/// journaled (fsync'd) before they are answered, and the journal is replayed
/// when a daemon starts in a state directory a crashed daemon left behind.
/// See docs/SIMULATOR-DAEMON.md for the protocol, the files and the rules.
public final class SimDaemon {
    /// What `sim start` / `sim serve` ask for. `nil` fields take what the
    /// journal recorded (when recovering) or the defaults (Intel with VMFUNC
    /// and #VE, `altp2m=1`, Xen 4.17, 1 GiB of machine memory).
    public struct Configuration: Sendable {
        public var cpu: CPUProfile?
        public var altp2mBootOption: Bool?
        public var xen: XenVersion?
        public var machineFrames: Int?
        public init() {}
    }

    /// The default machine memory: 1 GiB in a sparse file.
    public static let defaultMachineFrames = 262_144
    /// How long a client may take to send a request or read an answer.
    static let clientTimeoutSeconds = 5.0

    let directory: StateDirectory
    let host: HostProfile
    let machineFrames: Int
    let memory: FileMachineMemory
    let engine: Altp2mEngine
    /// The grant-module host over ``engine``: the descriptor store and the
    /// notification ports guests and `chanctl channel` use.
    public let channelHost: EngineChannelHost
    let journal: Journal
    let events: SharedFileMapping
    private let lockFD: Int32
    let startedAt: Double
    /// The daemon's log: lifecycle at info, each changing request at debug,
    /// read-only ones at trace (`chanctl --log-level`).
    let log: Logger

    /// Daemon-side records of guest domains (dom0 has none).
    var domains: [DomainID: DaemonDomain] = [:]
    /// Registered extensions (the grant module), in registration order.
    var extensions: [any SimDaemonExtension] = []
    var connections: [Connection] = []
    /// Who sent the request being answered (SO_PEERCRED), nil between requests.
    var requestPeer: RequestPeer?
    /// Xen's event channels (docs/SIMULATOR.md, "Event channels").
    let eventChannels = XenEventChannels()
    /// The readiness pipe of each event-channel handle held by a connection.
    var eventChannelPipes: [UInt32: ReadinessPipe] = [:]
    /// xenstored (docs/SIMULATOR.md, "xenstore").
    let xenstore = XenStore()
    /// The watch-event readiness pipe of each xenstore connection.
    var xenstorePipes: [UInt32: ReadinessPipe] = [:]
    /// Xen's grant tables with gntalloc and gntdev (docs/SIMULATOR.md, "Grant tables").
    let grantTables = XenGrantTables()
    /// Each guest domain's memory map and balloon driver (docs/SIMULATOR.md, "Domain memory").
    var guestMemory: [DomainID: GuestMemory] = [:]
    private var listener: UnixSocket?
    /// Set by `sim.stop`: leave the loop and power the simulated host off.
    var stopRequested = false
    /// True while the journal is being replayed at start.
    var replaying = false
    /// Records replayed at start, and records appended since.
    var journalRecords = 0

    /// Prepares the state directory, takes its lock, maps memory and
    /// replays the journal. Nothing listens until ``run()``.
    public init(stateDirectory: StateDirectory, configuration: Configuration = Configuration(),
                background: Bool = false, logger: Logger = SimDaemon.defaultLogger()) throws(SimDaemonError) {
        directory = stateDirectory
        var logger = logger
        logger[metadataKey: "pid"] = "\(getpid())"
        log = logger
        if background {
            setsid()
            Self.closeInheritedDescriptors()
        }
        do { try directory.prepare() } catch { throw .stateDirectory(error.description) }

        let lockPath = directory.path + "/daemon.lock"
        lockFD = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lockFD >= 0 else { throw .io(SystemCallError("open \(lockPath)").description) }
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else {
            _ = close(lockFD)
            throw .alreadyRunning(directory.socketPath)
        }

        do {
            journal = try Journal(path: directory.journalPath)
            let contents = try journal.readAll()
            if contents.discardedBytes > 0 {
                log.warning("journal: dropped a torn last record (\(contents.discardedBytes) bytes)")
            }
            let recorded = contents.records.first.flatMap(HostRecord.init(record:))
            let records = recorded == nil ? [] : Array(contents.records.dropFirst())
            let resolved = try HostRecord.resolve(configuration, recorded: recorded)
            host = resolved.host
            machineFrames = resolved.machineFrames

            if recorded == nil {
                // A fresh host: machine memory and event words start zeroed,
                // whatever an earlier run left (the engine expects free frames
                // to be zero).
                unlink(directory.memoryPath)
                unlink(directory.eventsPath)
                Self.removeDomainFiles(directory)
                // Channels of an earlier simulated host are gone with it.
                unlink(directory.grantRegistryPath)
                if !contents.records.isEmpty || contents.discardedBytes > 0 {
                    try journal.replace(with: [])
                }
            }
            memory = try FileMachineMemory(path: directory.memoryPath, frameCount: machineFrames)
            events = try SharedFileMapping(path: directory.eventsPath, size: EventWordLayout.fileSize)
            engine = Altp2mEngine(host: host, memory: memory)
            channelHost = EngineChannelHost(engine: engine)
            startedAt = Self.now()

            if recorded == nil {
                try journal.append(resolved.record)
                journalRecords = 1
            } else {
                try replay(records)
                journalRecords = records.count + 1
            }
        } catch let error as SystemCallError {
            _ = close(lockFD)
            throw .io(error.description)
        } catch let error as SimDaemonError {
            _ = close(lockFD)
            throw error
        } catch {
            _ = close(lockFD)
            throw .io("\(error)")
        }
    }

    deinit {
        _ = close(lockFD)
    }

    /// Serves requests until `sim.stop`, SIGTERM or SIGINT. `sim.stop` powers
    /// the simulated host off (the state directory's files are removed); a
    /// signal leaves them, so a new daemon recovers the same host.
    /// `whenListening` runs once the socket accepts clients, before the
    /// first request is served (`chanctl sim serve` tells a service manager).
    public func run(whenListening: () -> Void = {}) throws(SimDaemonError) {
        let socket: UnixSocket
        do { socket = try UnixSocket.listen(at: directory.socketPath) } catch { throw .io(error.description) }
        listener = socket
        writePIDFile()
        installSignalHandlers()
        log.info("serving \(host) with \(machineFrames) frames at \(directory.socketPath) (pid \(getpid()))")
        whenListening()

        while !stopRequested && DaemonSignals.received.load(ordering: .relaxed) == 0 {
            pollOnce(timeoutMilliseconds: 250)
        }

        // No new clients; state is gone before any client sees the end of
        // its connection (that is how `sim stop` knows the daemon finished).
        socket.close()
        unlink(directory.socketPath)
        unlink(directory.pidPath)
        if stopRequested {
            powerOff()
            log.info("stopped; state discarded")
        } else {
            log.info("terminated by signal; state kept for recovery")
        }
        for connection in connections { connection.socket.close() }
        connections.removeAll()
    }

    // MARK: Poll loop

    private func pollOnce(timeoutMilliseconds: Int32) {
        guard let listener else { return }
        var fds = [pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)]
        for connection in connections {
            fds.append(pollfd(fd: connection.socket.fd, events: Int16(POLLIN), revents: 0))
        }
        let ready = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        guard ready > 0 else { return }

        if fds[0].revents & Int16(POLLIN) != 0,
           let client = listener.accept(timeoutSeconds: Self.clientTimeoutSeconds) {
            connections.append(Connection(socket: client))
        }
        // Connections accepted above are not in `fds`; they are polled next time.
        var closed: [ObjectIdentifier] = []
        for (index, pfd) in fds.enumerated().dropFirst() where pfd.revents != 0 {
            let connection = connections[index - 1]
            if !serve(connection) { closed.append(ObjectIdentifier(connection)) }
            if stopRequested { break }
        }
        if !closed.isEmpty {
            for connection in connections where closed.contains(ObjectIdentifier(connection)) {
                connectionClosed(connection)
            }
            connections.removeAll { closed.contains(ObjectIdentifier($0)) }
        }
    }

    /// Reads what a connection sent and answers every complete request.
    /// Returns false when the connection is finished.
    private func serve(_ connection: Connection) -> Bool {
        guard let bytes = connection.socket.receiveAvailable(maximum: 65536) else { return false }
        connection.input += bytes
        return answerBuffered(connection)
    }

    /// Answers every complete request in the connection's input buffer and
    /// keeps an incomplete one for later. Returns false when the connection
    /// is finished (a frame over the size limit, or its answer undeliverable).
    func answerBuffered(_ connection: Connection, limit: Int = .max) -> Bool {
        var answered = 0
        while answered < limit, let length = WireFrame.length(prefix: connection.input[...]) {
            guard length <= WireFrame.maximumLength else { return false }
            guard connection.input.count >= 4 + length else { break }
            let body = connection.input[4..<(4 + length)]
            connection.input.removeFirst(4 + length)
            let reply: Reply
            do {
                let request = try JSONValue.parse(body)
                reply = handle(request, from: connection)
            } catch {
                reply = Reply(error: .refused("malformed request: \(error)"))
            }
            do {
                try connection.socket.send(WireFrame.encode(reply.body), fds: reply.fds)
            } catch {
                reply.closeDescriptors()
                return false
            }
            reply.closeDescriptors()
            answered += 1
            if stopRequested { return true }
        }
        return true
    }

    // MARK: Files

    private func writePIDFile() {
        let fd = open(directory.pidPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let text = Array("\(getpid())\n".utf8)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        _ = close(fd)
    }

    /// `sim stop`: the simulated host powers off and its state goes away.
    private func powerOff() {
        for domain in domains.values { domain.removeFiles() }
        Self.removeDomainFiles(directory)
        unlink(directory.journalPath)
        unlink(directory.grantRegistryPath)
        unlink(directory.memoryPath)
        unlink(directory.eventsPath)
    }

    /// Removes tokens and control files left in `domains/`.
    static func removeDomainFiles(_ directory: StateDirectory) {
        guard let dir = opendir(directory.domainsPath) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasSuffix(".token") || name.hasSuffix(".control") || name.hasSuffix(".vcpu") {
                unlink(directory.domainsPath + "/" + name)
            }
        }
    }

    private func installSignalHandlers() {
        // The spawning thread's mask is inherited (test runners block most
        // signals): the daemon must receive SIGTERM and SIGINT.
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
        signal(SIGPIPE, SIG_IGN)
        signal(SIGTERM) { _ in DaemonSignals.received.store(1, ordering: .relaxed) }
        signal(SIGINT) { _ in DaemonSignals.received.store(1, ordering: .relaxed) }
    }

    /// A background daemon keeps only standard input, output and error: a
    /// descriptor inherited from whoever ran `sim start` (a pipe its caller
    /// reads to the end, say) must not stay open for the daemon's lifetime.
    static func closeInheritedDescriptors() {
        guard let dir = opendir("/proc/self/fd") else { return }
        let own = dirfd(dir)
        var inherited: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let fd = Int32(name), fd > 2, fd != own { inherited.append(fd) }
        }
        closedir(dir)
        for fd in inherited { _ = close(fd) }
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// One line per event on standard error (STATE/daemon.log for a
    /// background daemon, the journal under systemd) at `level`, through
    /// ``LineLogHandler`` whatever the process bootstrapped.
    public static func defaultLogger(level: Logger.Level = .info) -> Logger {
        var logger = Logger(label: "altp2m-sim", factory: { LineLogHandler(label: $0) })
        logger.logLevel = level
        return logger
    }
}

/// Set from signal handlers (only an atomic store happens there).
enum DaemonSignals {
    static let received = Atomic<Int32>(0)
}

/// One client connection and what the daemon knows about it.
final class Connection {
    let socket: UnixSocket
    var input: [UInt8] = []
    /// The domain a guest process attached as (`guest.attach`), until it
    /// detaches or its connection closes: then the process has left its
    /// domain, which keeps running (docs/SIMULATOR-DAEMON.md, "Guest processes").
    var attachedDomain: DomainID?
    /// The vCPUs the attached process runs its threads on (`vcpu`, `vcpus`).
    var attachedVCPUs: [Int] = []
    /// The windows the attached process mapped (`guest.window`): the grant
    /// module is told of them when the process goes.
    var mappedWindows: [GuestWindowMapping] = []
    /// The libxenevtchn handle this connection opened (`evtchn.open`).
    var eventChannelHandle: UInt32?
    /// This connection's xenstored connection (opened by its first `xs.*`).
    var xenstoreConnection: UInt32?
    /// This connection's gntalloc and gntdev handles (opened by its first
    /// `gntshr.*` / `gnttab.*`).
    var gntallocHandle: UInt32?
    var gntdevHandle: UInt32?
    /// The peer's process id (SO_PEERCRED), for the log.
    let peerPID: Int32?
    /// The peer's user id (SO_PEERCRED), for the grant module's audit log.
    let peerUID: UInt32?

    init(socket: UnixSocket) {
        self.socket = socket
        peerPID = socket.peerPID
        peerUID = socket.peerUID
    }
}

/// Why the daemon cannot start or run.
public enum SimDaemonError: Error, CustomStringConvertible {
    case stateDirectory(String)
    case alreadyRunning(String)
    case profileMismatch(String)
    case io(String)

    public var description: String {
        switch self {
        case .stateDirectory(let message): message
        case .alreadyRunning(let socket): "a simulator already runs at \(socket); run: chanctl sim stop"
        case .profileMismatch(let message): message
        case .io(let message): "simulator I/O failed: \(message)"
        }
    }
}
