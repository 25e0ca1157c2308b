#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A pipe the daemon keeps level-triggered for a client: one byte in it
/// while the client has something to read (delivered event-channel ports,
/// xenstore watch events), none otherwise. The client gets the read end
/// (SCM_RIGHTS) to `poll`; it must not read it.
struct ReadinessPipe {
    let read: Int32
    let write: Int32

    /// A non-blocking, close-on-exec pipe, or nil.
    static func make() -> ReadinessPipe? {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return nil }
        for fd in ends {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return ReadinessPipe(read: ends[0], write: ends[1])
    }

    /// Empties the pipe, then puts one byte in it if `readable`.
    func set(readable: Bool) {
        var sink = [UInt8](repeating: 0, count: 64)
        while sink.withUnsafeMutableBytes({ Glibc.read(read, $0.baseAddress, $0.count) }) > 0 {}
        if readable {
            var one: UInt8 = 1
            _ = Glibc.write(write, &one, 1)
        }
    }

    func close() {
        _ = systemClose(read)
        _ = systemClose(write)
    }
}
