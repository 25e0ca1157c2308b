#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Who asked for a grant operation: a user id, its user name and a process
/// id. In the simulator daemon these come from the client's socket
/// (SO_PEERCRED); in `chanctl` itself (Xen) they are the process's own.
public struct AuditActor: Sendable, Equatable {
    /// The invoking user id.
    public let uid: UInt32
    /// The user name of ``uid`` from the password database, or the number
    /// when it has no entry.
    public let user: String
    /// The invoking process id.
    public let pid: Int32

    /// An actor with the user name looked up for `uid`.
    public init(uid: UInt32, pid: Int32) {
        self.init(uid: uid, user: Self.userName(uid), pid: pid)
    }

    public init(uid: UInt32, user: String, pid: Int32) {
        self.uid = uid
        self.user = user
        self.pid = pid
    }

    /// This process: its real user id and process id.
    public static var currentProcess: AuditActor { AuditActor(uid: UInt32(getuid()), pid: getpid()) }

    /// The name of `uid` (getpwuid_r), or its number as text.
    static func userName(_ uid: UInt32) -> String {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        let status = buffer.withUnsafeMutableBufferPointer { bytes in
            getpwuid_r(uid_t(uid), &entry, bytes.baseAddress!, bytes.count, &result)
        }
        guard status == 0, result != nil, let name = entry.pw_name else { return String(uid) }
        return String(cString: name)
    }
}
