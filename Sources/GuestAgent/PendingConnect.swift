#if canImport(Glibc)
import Glibc
#endif

/// A connection the forwarder's connecting side is making for the peer's
/// OPEN, without ever blocking: the forwarder has one thread, so a connect
/// that waited (a TCP address that drops SYNs waits minutes, a Unix socket
/// whose backlog is full waits until the service accepts) would stop every
/// other connection over the channel.
///
/// The socket is non-blocking from the start. TCP: `connect(2)` says
/// EINPROGRESS, the poll loop waits for POLLOUT and `SO_ERROR` gives the
/// outcome; a refused address moves on to the next one the host name
/// resolved to. Unix: a full backlog says EAGAIN and the connect is tried
/// again on later turns. Past the deadline it fails, naming the address.
final class PendingConnect {
    enum Step {
        case connected(Int32)
        case waiting
        case failed(String)
    }

    let address: ForwardAddress
    let deadline: ContinuousClock.Instant
    /// The socket of the attempt under way (-1 between attempts).
    private(set) var fd: Int32 = -1
    /// True while a TCP connect is in progress (wait for POLLOUT); false
    /// while a Unix connect waits for room in the backlog (retry).
    private(set) var awaitsWritable = false
    private var candidates: [SocketAddress]
    private var lastError = "no address to connect to"
    private let timeoutText: String

    init(_ address: ForwardAddress, timeout: Duration) throws(AgentFailure) {
        self.address = address
        deadline = .now + timeout
        timeoutText = "\(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18) s"
        switch address {
        case .unix(let path): candidates = [SocketAddress(unixPath: path)]
        case .tcp(let host, let port): candidates = try TCPSockets.addresses(host: host, port: port)
        case .stdio: throw .failure("stdio cannot be connected to")
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Starts the first attempt.
    func start() -> Step { next() }

    /// Moves the attempt on; called each turn while it waits.
    func advance() -> Step {
        guard fd >= 0, awaitsWritable else {
            // Between attempts, or a Unix socket whose backlog was full:
            // (try) again.
            return next()
        }
        var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&ready, 1, 0) > 0 else {
            return ContinuousClock.now >= deadline ? timedOut() : .waiting
        }
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
        if code == 0 { return handOver() }
        lastError = String(cString: strerror(code))
        close(fd); fd = -1
        candidates.removeFirst()
        return next()
    }

    /// Tries the candidates in order until one connects, one is under way,
    /// or none is left.
    private func next() -> Step {
        while let candidate = candidates.first {
            if ContinuousClock.now >= deadline { return timedOut() }
            if let step = attempt(candidate) { return step }
            if fd >= 0 { return .waiting }
        }
        return .failed("cannot connect to \(address): \(lastError); start the service listening there first")
    }

    /// One connect on `candidate`: a step when it ended (connected, or no
    /// socket could be made), nil to go on (under way with `fd` open, or
    /// refused and dropped from the candidates with `fd` closed).
    private func attempt(_ candidate: SocketAddress) -> Step? {
        if fd < 0 {
            fd = socket(candidate.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { return .failed("cannot create a socket for \(address): \(UnixSockets.errorText())") }
        }
        let result = candidate.bytes.withUnsafeBytes {
            Glibc.connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
        }
        if result == 0 || errno == EISCONN { return handOver() }
        switch errno {
        case EINPROGRESS, EALREADY, EINTR:
            // TCP: under way; POLLOUT tells when it ends.
            awaitsWritable = true
        case EAGAIN:
            // Unix: the listener's backlog is full; nothing to poll for.
            awaitsWritable = false
        default:
            lastError = UnixSockets.errorText()
            close(fd); fd = -1
            candidates.removeFirst()
        }
        return nil
    }

    private func handOver() -> Step {
        let connected = fd
        fd = -1
        if case .tcp = address {
            var one: Int32 = 1
            setsockopt(connected, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        return .connected(connected)
    }

    private func timedOut() -> Step {
        if fd >= 0 { close(fd); fd = -1 }
        return .failed("cannot connect to \(address): not connected within \(timeoutText) (--connect-timeout); the service there does not accept, or the address drops connection attempts")
    }
}

/// A socket address as bytes (`sockaddr_in`, `sockaddr_in6` or
/// `sockaddr_un`) with its family, kept for a later connect.
struct SocketAddress {
    var family: Int32
    var bytes: [UInt8]

    init(family: Int32, bytes: [UInt8]) { self.family = family; self.bytes = bytes }

    init(unixPath path: String) {
        var address = UnixSockets.address(path)
        family = AF_UNIX
        bytes = withUnsafeBytes(of: &address) { Array($0) }
    }
}
