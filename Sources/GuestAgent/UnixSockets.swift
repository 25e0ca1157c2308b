import AgentServices
#if canImport(Glibc)
import Glibc
#endif

/// The Unix stream sockets `forward` and the `forward-unix` service use:
/// a private listening socket, accepting one connection, connecting.
/// Every socket handed out is close-on-exec; connected ones are non-blocking
/// (the bridge polls them).
enum UnixSockets {
    /// The longest path a socket address holds, terminator included.
    static var maximumPathBytes: Int { ServiceConfig.socketPathCapacity }

    static func errorText() -> String { String(cString: strerror(errno)) }

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

    /// A listening socket at `path`, created 0600; a stale socket file is
    /// replaced, anything else at `path` is refused.
    static func listen(at path: String) throws(AgentFailure) -> Int32 {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw .failure("--listen-unix \(path) exists and is not a socket; remove it or choose another path")
            }
            if unlink(path) != 0 { throw .failure("cannot remove the stale socket \(path): \(errorText())") }
        }
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .failure("cannot create a Unix socket: \(errorText())") }
        // Bound and listening under a temporary name, then renamed: a client
        // that sees PATH can connect at once.
        let temporary = path + ".\(getpid()).tmp"
        let bindPath = temporary.utf8.count < maximumPathBytes ? temporary : path
        var address = address(bindPath)
        let previous = umask(0o177)  // the socket file is created 0600
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let bindErrno = errno
        umask(previous)
        guard bound == 0 else {
            close(fd)
            errno = bindErrno
            throw .failure("cannot bind the Unix socket \(path): \(errorText()); check that the directory exists and is writable")
        }
        chmod(bindPath, 0o600)
        guard Glibc.listen(fd, 4) == 0 else {
            let text = errorText()
            close(fd); unlink(bindPath)
            throw .failure("cannot listen on \(path): \(text)")
        }
        if bindPath != path, rename(bindPath, path) != 0 {
            let text = errorText()
            close(fd); unlink(bindPath)
            throw .failure("cannot create the socket \(path): \(text)")
        }
        return fd
    }

    /// Waits for one connection; nil when `shouldStop` says so first.
    static func acceptOne(_ listener: Int32, path: String, shouldStop: () -> Bool) throws(AgentFailure) -> Int32? {
        while true {
            if shouldStop() { return nil }
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            if poll(&ready, 1, 100) <= 0 { continue }
            let fd = accept(listener, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                return fd
            }
            if errno == EINTR || errno == ECONNABORTED { continue }
            throw .failure("cannot accept a connection on \(path): \(errorText())")
        }
    }
}
