#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CPlatform

/// A failed system call, with the call's name and `errno`.
public struct SystemCallError: Error, Equatable, CustomStringConvertible {
    /// The call that failed (`connect`, `mmap`, ...).
    public var call: String
    /// The `errno` it left.
    public var errno: Int32

    public init(_ call: String, errno: Int32 = Glibc.errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

/// A connected or listening `AF_UNIX` stream socket that owns its descriptor
/// and closes it when released.
///
/// Reads and writes are blocking with a timeout (`SO_RCVTIMEO` /
/// `SO_SNDTIMEO`), so a stuck peer turns into an error instead of a hang.
/// Writes use `MSG_NOSIGNAL`: a closed peer is `EPIPE`, not `SIGPIPE`.
final class UnixSocket {
    /// The descriptor, or -1 once closed.
    private(set) var fd: Int32

    init(adopting fd: Int32) { self.fd = fd }

    deinit { close() }

    /// Closes the descriptor (idempotent).
    func close() {
        if fd >= 0 {
            _ = Glibc.close(fd)
            fd = -1
        }
    }

    /// Connects to the socket at `path`.
    static func connect(to path: String, timeoutSeconds: Double) throws(SystemCallError) -> UnixSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError("socket") }
        let sock = UnixSocket(adopting: fd)
        try sock.setTimeouts(seconds: timeoutSeconds)
        var address = try makeAddress(path)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else { throw SystemCallError("connect") }
        return sock
    }

    /// Creates a listening socket at `path` with mode 0600, replacing a stale
    /// socket file left by a dead daemon.
    static func listen(at path: String) throws(SystemCallError) -> UnixSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError("socket") }
        let sock = UnixSocket(adopting: fd)
        unlink(path)
        var address = try makeAddress(path)
        // The umask makes the socket 0600 from the moment it exists.
        let oldMask = umask(0o177)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        umask(oldMask)
        guard rc == 0 else { throw SystemCallError("bind") }
        chmod(path, 0o600)
        guard Glibc.listen(fd, 64) == 0 else { throw SystemCallError("listen") }
        return sock
    }

    /// Accepts one connection, or returns nil if none is pending
    /// (the listening socket is polled first) or the call was interrupted.
    func accept(timeoutSeconds: Double) -> UnixSocket? {
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { return nil }
        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
        let sock = UnixSocket(adopting: client)
        do { try sock.setTimeouts(seconds: timeoutSeconds) } catch { return nil }
        return sock
    }

    /// Sets both the receive and the send timeout.
    func setTimeouts(seconds: Double) throws(SystemCallError) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        let size = socklen_t(MemoryLayout<timeval>.size)
        guard setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, size) == 0,
              setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, size) == 0
        else { throw SystemCallError("setsockopt") }
    }

    /// Sends all of `bytes`, attaching `fds` (SCM_RIGHTS) to the first chunk.
    func send(_ bytes: [UInt8], fds: [Int32] = []) throws(SystemCallError) {
        var offset = 0
        var pending = fds
        while offset < bytes.count || !pending.isEmpty {
            let n = bytes.withUnsafeBytes { raw in
                pending.withUnsafeBufferPointer { fdBuf in
                    cplatform_send_with_fds(fd, raw.baseAddress! + offset, raw.count - offset,
                                            fdBuf.baseAddress, Int32(fdBuf.count))
                }
            }
            guard n >= 0 else { throw SystemCallError("sendmsg") }
            offset += n
            pending = []
        }
    }

    /// Receives exactly `count` bytes, collecting any descriptors that arrive
    /// with them into `fds`. Throws `ECONNRESET` at end of stream.
    func receive(count: Int, fds: inout [Int32]) throws(SystemCallError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            var received = [Int32](repeating: -1, count: 8)
            var nfds: Int32 = 0
            let n = buffer.withUnsafeMutableBytes { raw in
                cplatform_recv_with_fds(fd, raw.baseAddress! + offset, count - offset, &received, 8, &nfds)
            }
            fds.append(contentsOf: received.prefix(Int(nfds)))
            if n < 0 {
                let err = errno
                throw SystemCallError("recvmsg", errno: err == EAGAIN || err == EWOULDBLOCK ? ETIMEDOUT : err)
            }
            if n == 0 { throw SystemCallError("recvmsg", errno: ECONNRESET) }
            offset += n
        }
        return buffer
    }

    /// Reads what is available without blocking (the daemon's poll loop).
    /// Returns nil at end of stream; an empty array if nothing was ready.
    func receiveAvailable(maximum: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximum)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, maximum, Int32(MSG_DONTWAIT)) }
        if n > 0 { return Array(buffer.prefix(n)) }
        if n == 0 { return nil }
        let err = errno
        return err == EAGAIN || err == EWOULDBLOCK || err == EINTR ? [] : nil
    }

    /// The peer's process id (SO_PEERCRED), or nil.
    var peerPID: Int32? {
        let pid = cplatform_peer_pid(fd)
        return pid > 0 ? pid : nil
    }

    /// The peer's user id (SO_PEERCRED), or nil.
    var peerUID: UInt32? {
        var uid: UInt32 = 0
        return cplatform_peer_uid(fd, &uid) == 0 ? uid : nil
    }

    private static func makeAddress(_ path: String) throws(SystemCallError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw SystemCallError("socket path too long (\(bytes.count) bytes) \(path)", errno: ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
            raw[bytes.count] = 0
        }
        return address
    }
}
