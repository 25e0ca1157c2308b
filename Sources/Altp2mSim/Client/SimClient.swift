import Altp2m
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A connection to a running simulator daemon (`chanctl sim serve`).
///
/// Requests and responses are JSON objects (docs/SIMULATOR-DAEMON.md lists
/// every operation). Without a token the connection acts as the control
/// domain; ``init(stateDirectory:token:guestUser:timeoutSeconds:)`` with a
/// domain's token makes every request a hypercall from inside that domain.
public final class SimClient {
    /// The state directory whose daemon this talks to.
    public let stateDirectory: StateDirectory
    /// The domain token presented with every request, if acting as a guest.
    public let token: String?
    /// Whether guest requests come from guest user mode (CPL 3).
    public let guestUser: Bool
    let socket: UnixSocket

    /// Connects to the daemon of `stateDirectory`.
    /// - Throws: ``SimClientError/notRunning(socketPath:reason:)`` when no daemon
    ///   answers there, or ``SimClientError/stateDirectory(_:)``.
    public init(stateDirectory: StateDirectory, token: String? = nil, guestUser: Bool = false,
                timeoutSeconds: Double = 10) throws(SimClientError) {
        self.stateDirectory = stateDirectory
        self.token = token
        self.guestUser = guestUser
        var info = stat()
        if lstat(stateDirectory.path, &info) != 0 {
            throw .notRunning(socketPath: stateDirectory.socketPath, reason: "no state directory")
        }
        do { try stateDirectory.checkExisting() } catch { throw .stateDirectory(error) }
        do {
            socket = try UnixSocket.connect(to: stateDirectory.socketPath, timeoutSeconds: timeoutSeconds)
        } catch {
            throw .notRunning(socketPath: stateDirectory.socketPath, reason: error.description)
        }
    }

    /// Sends one request and returns the daemon's answer, which is either
    /// `{"ok":true,...}` or an error object. Hypervisor errors come back as
    /// ``SimClientError/hypervisor(_:message:)``, other refusals as
    /// ``SimClientError/refused(_:)``.
    /// - Parameters:
    ///   - op: the operation (`"domain.create"`, `"altp2m.set-access"`, ...).
    ///   - arguments: its arguments.
    public func call(_ op: String, _ arguments: [String: JSONValue] = [:]) throws(SimClientError) -> JSONValue {
        let (response, fds) = try exchange(op, arguments)
        WireFrame.closeAll(fds)
        return response
    }

    /// Like ``call(_:_:)``, also returning descriptors the daemon attached
    /// (the caller owns them).
    func exchange(_ op: String, _ arguments: [String: JSONValue]) throws(SimClientError) -> (JSONValue, [Int32]) {
        var request = arguments
        request["op"] = .string(op)
        if let token {
            request["token"] = .string(token)
            if guestUser { request["guest_user"] = .bool(true) }
        }
        let response: JSONValue
        let fds: [Int32]
        do {
            (response, fds) = try WireFrame.exchange(.object(request), on: socket)
        } catch {
            throw .connection(error.description)
        }
        if response["ok"]?.bool == true { return (response, fds) }
        WireFrame.closeAll(fds)
        throw SimClientError(response: response)
    }

    /// Closes the connection. A guest process that attached and closes without
    /// ``SimGuest/detach()`` is treated as crashed.
    public func close() { socket.close() }
}

/// Why a simulator request failed.
public enum SimClientError: Error, CustomStringConvertible {
    /// No daemon answers at the state directory's socket.
    case notRunning(socketPath: String, reason: String)
    /// The state directory is not safe to use.
    case stateDirectory(StateDirectoryError)
    /// The hypervisor (the engine) returned an error number.
    case hypervisor(XenErrno, message: String)
    /// The daemon refused the request for another reason (unknown domain
    /// name, bad argument, bad token, ...); the message names the fix.
    case refused(String)
    /// The request itself was wrong (an access type this Xen release lacks,
    /// a bad value): the CLI treats it as bad usage.
    case badArgument(String)
    /// The connection broke or the answer was malformed.
    case connection(String)

    init(response: JSONValue) {
        if let code = response["code"]?.int64, let errno = XenErrno(code: Int32(truncatingIfNeeded: code)) {
            self = .hypervisor(errno, message: response["message"]?.string ?? errno.description)
        } else if response["usage"]?.bool == true {
            self = .badArgument(response["error"]?.string ?? "bad argument")
        } else {
            self = .refused(response["error"]?.string ?? "request refused")
        }
    }

    public var description: String {
        switch self {
        case .notRunning(let path, _):
            "no simulator at \(path); run: chanctl sim start"
        case .stateDirectory(let error): error.description
        case .hypervisor(let errno, let message): "\(errno.name) (\(errno.code)): \(message)"
        case .refused(let message), .badArgument(let message): message
        case .connection(let message): "lost the simulator connection: \(message)"
        }
    }

    /// The JSON error object `chanctl --json` prints.
    public var json: JSONValue {
        switch self {
        case .hypervisor(let errno, let message):
            ["ok": false, "errno": .string(errno.name), "code": .int(Int64(errno.code)), "message": .string(message)]
        default:
            ["ok": false, "error": .string(description)]
        }
    }
}
