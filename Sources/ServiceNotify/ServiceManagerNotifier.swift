#if canImport(Glibc)
import Glibc
#endif

/// The service manager's notification protocol (systemd's sd_notify), spoken
/// directly: one datagram of `NAME=VALUE` lines per notification, sent over a
/// Unix datagram socket to the address in `$NOTIFY_SOCKET` (a path, or an
/// abstract address when it starts with `@`). No libsystemd.
///
/// Used by `guest-agent run` (`READY=1` once its channels are open,
/// `WATCHDOG=1` every half of `$WATCHDOG_USEC`, `STOPPING=1`) and `chanctl sim
/// serve` (`READY=1` once its socket listens), so both can run as
/// `Type=notify` units.
package final class ServiceManagerNotifier {
    /// The datagram socket (close-on-exec, unconnected).
    private let fd: Int32
    private var address: sockaddr_un
    private let addressLength: socklen_t
    /// Half of `$WATCHDOG_USEC` when the manager expects keep-alives from
    /// this process, else nil.
    package let watchdogInterval: Duration?
    /// The socket's address as given, for messages.
    package let socketName: String

    /// The notifier the environment asks for: nil when `$NOTIFY_SOCKET` is
    /// unset or empty (not started by a service manager, or by one that
    /// expects no notifications).
    /// - Throws: ``ServiceNotifyError`` when the variables are malformed or no
    ///   socket can be made; the message names the variable and the fix.
    package static func fromEnvironment() throws(ServiceNotifyError) -> ServiceManagerNotifier? {
        guard let name = variable("NOTIFY_SOCKET"), !name.isEmpty else { return nil }
        return try ServiceManagerNotifier(socket: name, watchdogMicroseconds: variable("WATCHDOG_USEC"),
                                          watchdogPID: variable("WATCHDOG_PID"))
    }

    /// A notifier for the socket `name` (`/path` or `@abstract`), with the
    /// watchdog variables' values (nil when unset).
    package init(socket name: String, watchdogMicroseconds: String? = nil, watchdogPID: String? = nil) throws(ServiceNotifyError) {
        socketName = name
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard name.hasPrefix("/") || name.hasPrefix("@"), bytes.count >= 2, bytes.count < capacity else {
            throw .badVariable("NOTIFY_SOCKET=\(name): expected an absolute socket path or @ and an abstract name, shorter than \(capacity) bytes; unset it when not run by a service manager")
        }
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: bytes) }
        self.address = address
        // A path's address includes its terminating zero; an abstract one does not.
        addressLength = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes[0] == 0 ? 0 : 1))

        var interval: Duration? = nil
        if let watchdogMicroseconds, !watchdogMicroseconds.isEmpty {
            guard let microseconds = UInt64(watchdogMicroseconds), microseconds > 0 else {
                throw .badVariable("WATCHDOG_USEC=\(watchdogMicroseconds): expected a positive number of microseconds; set WatchdogSec= in the unit rather than the variable")
            }
            // Keep-alives are for this process only when the manager named it
            // (WATCHDOG_PID) or named no process.
            let forUs = watchdogPID.flatMap { $0.isEmpty ? nil : Int32($0) }.map { $0 == getpid() } ?? true
            if forUs { interval = .microseconds(Int64(clamping: microseconds / 2)) }
        }
        watchdogInterval = interval

        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socket("cannot make a Unix datagram socket: \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    /// Sends one notification: `lines` joined by newlines (`READY=1`,
    /// `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`).
    /// - Throws: ``ServiceNotifyError/send(_:)`` naming the socket and the
    ///   error (the manager is gone, or the socket is not its).
    package func notify(_ lines: [String]) throws(ServiceNotifyError) {
        let message = Array(lines.joined(separator: "\n").utf8)
        let sent = message.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), sockaddrPointer, addressLength)
                }
            }
        }
        guard sent == message.count else {
            let reason = sent < 0 ? String(cString: strerror(errno)) : "only \(sent) of \(message.count) bytes sent"
            throw .send("cannot notify the service manager at NOTIFY_SOCKET=\(socketName): \(reason); is the manager still running, and is the variable its socket?")
        }
    }

    private static func variable(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}

/// Why the service manager could not be told.
package enum ServiceNotifyError: Error, CustomStringConvertible {
    /// `$NOTIFY_SOCKET` or `$WATCHDOG_USEC` does not have the expected form.
    case badVariable(String)
    /// No socket could be made.
    case socket(String)
    /// A notification did not go out.
    case send(String)

    package var description: String {
        switch self {
        case .badVariable(let message), .socket(let message), .send(let message): message
        }
    }
}
