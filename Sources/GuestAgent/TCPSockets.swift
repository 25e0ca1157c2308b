#if canImport(Glibc)
import Glibc
#endif

/// TCP sockets for `forward`: numeric hosts (IPv4, or IPv6 literals) and
/// names resolved by getaddrinfo. Listening sockets have SO_REUSEADDR, so a
/// restarted forwarder binds at once. Connections are made by
/// ``PendingConnect``, which never blocks.
enum TCPSockets {
    private static func resolve<T>(_ host: String, _ port: UInt16, passive: Bool,
                                   _ body: (UnsafePointer<addrinfo>) -> T?) throws(AgentFailure) -> T {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw .failure("cannot resolve '\(host)': \(String(cString: gai_strerror(status))); give an IP address or a name this host resolves")
        }
        defer { freeaddrinfo(list) }
        var entry: UnsafeMutablePointer<addrinfo>? = first
        var lastError = ECONNREFUSED
        while let info = entry {
            if let result = body(info) { return result }
            lastError = errno
            entry = info.pointee.ai_next
        }
        errno = lastError
        throw .failure("")
    }

    static func listen(host: String, port: UInt16) throws(AgentFailure) -> Int32 {
        do {
            return try resolve(host, port, passive: true) { info -> Int32? in
                let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                guard fd >= 0 else { return nil }
                var one: Int32 = 1
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0, Glibc.listen(fd, 128) == 0 else {
                    let code = errno; close(fd); errno = code
                    return nil
                }
                return fd
            }
        } catch where error.description.isEmpty {
            throw .failure("cannot listen on tcp:\(host):\(port): \(UnixSockets.errorText()); choose a free port or a local address")
        }
    }

    /// Every address `host` resolves to, for a ``PendingConnect`` to try in
    /// order. A numeric host is converted at once; a name is looked up with
    /// getaddrinfo, which waits for the resolver (the forwarder's thread
    /// with it): give an IP address where that matters.
    static func addresses(host: String, port: UInt16) throws(AgentFailure) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>? = nil
        // Numeric first: AI_NUMERICHOST never asks the resolver.
        hints.ai_flags |= AI_NUMERICHOST
        var status = getaddrinfo(host, String(port), &hints, &list)
        hints.ai_flags &= ~AI_NUMERICHOST
        if status != 0 { status = getaddrinfo(host, String(port), &hints, &list) }
        guard status == 0, let first = list else {
            throw .failure("cannot resolve '\(host)': \(String(cString: gai_strerror(status))); give an IP address or a name this host resolves")
        }
        defer { freeaddrinfo(list) }
        var found: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            let bytes = UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(info.pointee.ai_addrlen))
            found.append(SocketAddress(family: info.pointee.ai_family, bytes: Array(bytes)))
            entry = info.pointee.ai_next
        }
        return found
    }
}
