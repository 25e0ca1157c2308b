#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Serving a byte stream in process, the way the poll loop serves a client:
/// the fuzzer's way into the daemon's framing, JSON and request handling
/// without a listening socket.
extension SimDaemon {
    /// Treats `bytes` as everything one client connection sent before it
    /// closed: answers each complete frame in turn (at most `limit`), then
    /// runs what a closed connection runs (an attached guest process leaves
    /// its domain, which keeps running). The answers are read and
    /// discarded. Returns false if the daemon was asked to stop.
    package func serveClosedConnection(_ bytes: [UInt8], limit: Int = 32) -> Bool {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else { return true }
        // Room for every answer: the client end is drained only at the end.
        var size: Int32 = 4 << 20
        _ = setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(pair[1], SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        let client = pair[1]
        defer { _ = systemClose(client) }
        let connection = Connection(socket: UnixSocket(adopting: pair[0]))
        // An answer that still did not fit fails instead of blocking.
        try? connection.socket.setTimeouts(seconds: 1)
        connection.input = bytes
        _ = answerBuffered(connection, limit: limit)
        connectionClosed(connection)
        connection.socket.close()
        var sink = [UInt8](repeating: 0, count: 65536)
        while sink.withUnsafeMutableBytes({ recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
        return !stopRequested
    }

    /// The token of the guest domain with the lowest id, if there is one.
    package var firstGuestToken: String? {
        domains.values.min { $0.id.rawValue < $1.id.rawValue }?.token
    }
}
