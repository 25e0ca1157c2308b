#if canImport(Glibc)
import Glibc
#endif

/// Where `forward` listens or connects: `unix:PATH`, `tcp:[HOST:]PORT`
/// (HOST defaults to 127.0.0.1, loopback; an IPv6 literal goes in
/// brackets) or `stdio` (standard input and output are one connection).
enum ForwardAddress: Equatable, CustomStringConvertible {
    case unix(String)
    case tcp(host: String, port: UInt16)
    case stdio

    static let expectedForm = "expected unix:PATH, tcp:[HOST:]PORT (e.g. tcp:8080, tcp:127.0.0.1:8080, tcp:[::1]:8080) or stdio"

    init(parsing text: String) throws(AgentFailure) {
        if text == "stdio" { self = .stdio; return }
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty, path.utf8.count < UnixSockets.maximumPathBytes else {
                throw .usage("bad address '\(text)': the socket path must be 1...\(UnixSockets.maximumPathBytes - 1) bytes")
            }
            self = .unix(path)
            return
        }
        guard text.hasPrefix("tcp:") else { throw .usage("bad address '\(text)': \(Self.expectedForm)") }
        var rest = Substring(text.dropFirst(4))
        var host = "127.0.0.1"
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
                throw .usage("bad address '\(text)': an IPv6 host goes in brackets followed by :PORT; \(Self.expectedForm)")
            }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(close, offsetBy: 2)...]
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            rest = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty, let port = UInt16(rest), port > 0 else {
            throw .usage("bad address '\(text)': the port must be 1...65535 and the host not empty; \(Self.expectedForm)")
        }
        self = .tcp(host: host, port: port)
    }

    var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
        case .stdio: "stdio"
        }
    }

    /// A listening socket (close-on-exec); nil for stdio.
    func listen() throws(AgentFailure) -> Int32? {
        switch self {
        case .unix(let path): return try UnixSockets.listen(at: path)
        case .tcp(let host, let port): return try TCPSockets.listen(host: host, port: port)
        case .stdio: return nil
        }
    }
}
