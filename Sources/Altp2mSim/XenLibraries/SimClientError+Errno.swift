import Altp2m

extension SimClientError {
    /// The `errno` a C library would leave for this failure: the
    /// hypervisor's own number, else the nearest one (a refusal by the
    /// daemon's permission checks is `EPERM`, a malformed argument
    /// `EINVAL`, a lost or absent daemon `EIO`/`ENOENT` as libxencall and
    /// libxenstore report a missing device or a broken socket).
    public var errno: XenErrno {
        switch self {
        case .hypervisor(let errno, _): errno
        case .refused: .notPermitted
        case .badArgument: .invalid
        case .notRunning: .noEntry
        case .stateDirectory: .accessDenied
        case .connection: XenErrno(rawValue: 5) // EIO
        }
    }
}

/// Runs a simulator call, turning its failure into the C library's errno.
@inline(__always)
func asErrno<R>(_ body: () throws(SimClientError) -> R) throws(XenErrno) -> R {
    do { return try body() } catch { throw error.errno }
}
