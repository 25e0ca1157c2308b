/// An error number returned by the hypervisor (`xen/include/public/errno.h`).
///
/// The raw value is the positive number, as libxenctrl leaves it in `errno`;
/// the hypercall itself returns ``code`` (the negative value). Named values use
/// descriptive names, with the C spelling as an unavailable alias that offers
/// a fix-it, and `~=` lets you match them in a `catch`:
///
/// ```swift
/// do { try hypervisor.destroyView(domain, view: 1) }
/// catch XenErrno.busy { /* a vCPU still runs on the view */ }
/// ```
@frozen
public struct XenErrno: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The positive error number.
    public let rawValue: Int32

    /// Creates an error from its positive number.
    @inlinable
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Creates an error from a negative hypercall return code; `nil` for 0 or
    /// a positive value.
    @inlinable
    public init?(code: Int32) {
        guard code < 0, code != .min else { return nil }
        self.rawValue = -code
    }

    /// The hypercall return code: the negated number (`EBUSY` is -16).
    @inlinable
    public var code: Int32 { -rawValue }

    /// `EPERM` (1): the caller is not allowed to do this.
    public static var notPermitted: XenErrno { XenErrno(rawValue: 1) }
    /// `ENOENT` (2): no such entry.
    public static var noEntry: XenErrno { XenErrno(rawValue: 2) }
    /// `ESRCH` (3): no such domain, or no such p2m entry.
    public static var notFound: XenErrno { XenErrno(rawValue: 3) }
    /// `ENXIO` (6): no such device or address (`guest_remove_page` of a
    /// frame the domain does not own, such as a grant mapping).
    public static var noDeviceOrAddress: XenErrno { XenErrno(rawValue: 6) }
    /// `E2BIG` (7): too many (for example, xenstore watches over the quota).
    public static var tooBig: XenErrno { XenErrno(rawValue: 7) }
    /// `EAGAIN` (11): try again (for example, the page is paged out).
    public static var tryAgain: XenErrno { XenErrno(rawValue: 11) }
    /// `ENOMEM` (12): out of memory.
    public static var noMemory: XenErrno { XenErrno(rawValue: 12) }
    /// `EACCES` (13): permission denied (xenstore's node permissions).
    public static var accessDenied: XenErrno { XenErrno(rawValue: 13) }
    /// `EFAULT` (14): a buffer could not be copied.
    public static var badAddress: XenErrno { XenErrno(rawValue: 14) }
    /// `EBUSY` (16): in use.
    public static var busy: XenErrno { XenErrno(rawValue: 16) }
    /// `EEXIST` (17): already exists or already set.
    public static var exists: XenErrno { XenErrno(rawValue: 17) }
    /// `ENODEV` (19): no such device (for example, no vm_event ring).
    public static var noDevice: XenErrno { XenErrno(rawValue: 19) }
    /// `EINVAL` (22): an invalid argument.
    public static var invalid: XenErrno { XenErrno(rawValue: 22) }
    /// `EILSEQ` (84): an entry that may not be removed this way (for example
    /// a directly mapped MMIO frame in `p2m_remove_entry`).
    public static var illegalSequence: XenErrno { XenErrno(rawValue: 84) }
    /// `ENOSPC` (28): no space left.
    public static var noSpace: XenErrno { XenErrno(rawValue: 28) }
    /// `ERANGE` (34): a value out of range.
    public static var outOfRange: XenErrno { XenErrno(rawValue: 34) }
    /// `EOPNOTSUPP` (95): not supported here (or altp2m not active).
    public static var notSupported: XenErrno { XenErrno(rawValue: 95) }
    /// `ENOTCONN` (107): the event channel is not bound by this handle (the
    /// Linux evtchn driver's answer for another process's port).
    public static var notConnected: XenErrno { XenErrno(rawValue: 107) }

    /// The C name, such as `"EBUSY"`; `"E<number>"` for numbers this type does not name.
    public var name: String { Self.table[rawValue]?.name ?? "E\(rawValue)" }

    /// `"EBUSY (-16): device or resource busy"`.
    public var description: String {
        let text = Self.table[rawValue]?.text ?? "unknown error"
        return "\(name) (\(code)): \(text)"
    }

    private static let table: [Int32: (name: String, text: String)] = [
        1: ("EPERM", "operation not permitted"),
        2: ("ENOENT", "no such entry"),
        3: ("ESRCH", "no such domain or entry"),
        6: ("ENXIO", "no such device or address"),
        7: ("E2BIG", "argument list too long"),
        11: ("EAGAIN", "try again"),
        12: ("ENOMEM", "out of memory"),
        13: ("EACCES", "permission denied"),
        14: ("EFAULT", "bad address"),
        16: ("EBUSY", "device or resource busy"),
        17: ("EEXIST", "already exists"),
        19: ("ENODEV", "no such device"),
        22: ("EINVAL", "invalid argument"),
        28: ("ENOSPC", "no space left"),
        34: ("ERANGE", "result out of range"),
        84: ("EILSEQ", "illegal byte sequence"),
        95: ("EOPNOTSUPP", "operation not supported"),
        107: ("ENOTCONN", "not connected"),
    ]

    /// Matches an error against a named value in a `catch` or `switch`.
    @inlinable
    public static func ~= (lhs: XenErrno, rhs: any Error) -> Bool {
        (rhs as? XenErrno) == lhs
    }

    @available(*, unavailable, renamed: "notPermitted")
    public static var EPERM: XenErrno { notPermitted }
    @available(*, unavailable, renamed: "noEntry")
    public static var ENOENT: XenErrno { noEntry }
    @available(*, unavailable, renamed: "notFound")
    public static var ESRCH: XenErrno { notFound }
    @available(*, unavailable, renamed: "tooBig")
    public static var E2BIG: XenErrno { tooBig }
    @available(*, unavailable, renamed: "accessDenied")
    public static var EACCES: XenErrno { accessDenied }
    @available(*, unavailable, renamed: "notConnected")
    public static var ENOTCONN: XenErrno { notConnected }
    @available(*, unavailable, renamed: "tryAgain")
    public static var EAGAIN: XenErrno { tryAgain }
    @available(*, unavailable, renamed: "noMemory")
    public static var ENOMEM: XenErrno { noMemory }
    @available(*, unavailable, renamed: "badAddress")
    public static var EFAULT: XenErrno { badAddress }
    @available(*, unavailable, renamed: "busy")
    public static var EBUSY: XenErrno { busy }
    @available(*, unavailable, renamed: "exists")
    public static var EEXIST: XenErrno { exists }
    @available(*, unavailable, renamed: "noDevice")
    public static var ENODEV: XenErrno { noDevice }
    @available(*, unavailable, renamed: "invalid")
    public static var EINVAL: XenErrno { invalid }
    @available(*, unavailable, renamed: "noSpace")
    public static var ENOSPC: XenErrno { noSpace }
    @available(*, unavailable, renamed: "outOfRange")
    public static var ERANGE: XenErrno { outOfRange }
    @available(*, unavailable, renamed: "notSupported")
    public static var EOPNOTSUPP: XenErrno { notSupported }
}
