/// The simulator's wire format: each message is a 4-byte little-endian length
/// followed by that many bytes of UTF-8 JSON (one object). Requests and
/// responses alternate on a connection; a response may carry descriptors
/// (SCM_RIGHTS) attached to its first bytes.
enum WireFrame {
    /// The largest message either side accepts (a `domain list` of many
    /// domains, a `monitor events` batch). Larger lengths close the connection.
    static let maximumLength = 16 << 20

    /// Frames `value` for sending.
    static func encode(_ value: JSONValue) -> [UInt8] {
        let body = value.bytes
        let n = UInt32(body.count)
        return [UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), UInt8((n >> 16) & 0xFF), UInt8(n >> 24)] + body
    }

    /// Reads the length prefix at the start of `bytes`, if complete.
    static func length(prefix bytes: ArraySlice<UInt8>) -> Int? {
        guard bytes.count >= 4 else { return nil }
        let i = bytes.startIndex
        return Int(bytes[i]) | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 24
    }

    /// Sends one message and reads one message back (a blocking exchange with
    /// the socket's timeouts). Descriptors that arrive are returned with it.
    static func exchange(_ request: JSONValue, on socket: UnixSocket) throws(WireError) -> (JSONValue, [Int32]) {
        do {
            try socket.send(encode(request))
        } catch {
            throw .io(error)
        }
        return try receive(on: socket)
    }

    /// Reads one message.
    static func receive(on socket: UnixSocket) throws(WireError) -> (JSONValue, [Int32]) {
        var fds: [Int32] = []
        do {
            let header = try socket.receive(count: 4, fds: &fds)
            guard let length = length(prefix: header[...]), length <= maximumLength else {
                closeAll(fds)
                throw WireError.malformed("message length exceeds \(maximumLength) bytes")
            }
            let body = try socket.receive(count: length, fds: &fds)
            do {
                return (try JSONValue.parse(body), fds)
            } catch {
                closeAll(fds)
                throw WireError.malformed(error.description)
            }
        } catch let error as SystemCallError {
            closeAll(fds)
            throw .io(error)
        } catch let error as WireError {
            throw error
        } catch {
            closeAll(fds)
            throw .malformed("\(error)")
        }
    }

    static func closeAll(_ fds: [Int32]) {
        for fd in fds where fd >= 0 { _ = systemClose(fd) }
    }
}

/// A failed exchange with the daemon.
enum WireError: Error, CustomStringConvertible {
    case io(SystemCallError)
    case malformed(String)

    var description: String {
        switch self {
        case .io(let e): "\(e)"
        case .malformed(let why): "malformed message from the simulator: \(why)"
        }
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func systemClose(_ fd: Int32) -> Int32 { Glibc.close(fd) }
#elseif canImport(Musl)
import Musl
@inline(__always) func systemClose(_ fd: Int32) -> Int32 { Musl.close(fd) }
#endif
