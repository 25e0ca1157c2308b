/// A p2m access type (`p2m_access_t` / `xenmem_access_t`): which accesses an
/// entry allows, and what Xen does on the first violation.
///
/// The raw value is the hypervisor-internal `p2m_access_t` number (0–10, with
/// `r_pw` = 10). ``default`` has no internal number (it is resolved to a p2m's
/// default before anything is stored) and uses 11, which is also its public
/// number from Xen 4.20 on. The *public ABI* number differs between Xen
/// versions (`XENMEM_access_default` is 10 on 4.17 and 11 on ≥4.20), so never
/// send `rawValue` to a hypervisor: use ``abiValue(for:)`` and
/// ``init(abiValue:for:)``.
///
/// The CLI spellings (`n r w rw x rx wx rwx rx2rw n2rwx default r_pw`) are the
/// `description` and parse with ``init(_:)``.
@frozen
public struct MemAccess: RawRepresentable, Hashable, Sendable, LosslessStringConvertible {
    /// The internal `p2m_access_t` number (see the type's documentation).
    public let rawValue: UInt8

    /// Creates an access type from its internal number; `nil` above 11.
    @inlinable
    public init?(rawValue: UInt8) {
        guard rawValue <= 11 else { return nil }
        self.rawValue = rawValue
    }

    @inlinable
    init(unchecked rawValue: UInt8) { self.rawValue = rawValue }

    /// `n`: no access.
    public static var none: MemAccess { MemAccess(unchecked: 0) }
    /// `r`: read only.
    public static var read: MemAccess { MemAccess(unchecked: 1) }
    /// `w`: write only. An EPT misconfiguration on Intel hardware (``isHardwareUnsafe``).
    public static var write: MemAccess { MemAccess(unchecked: 2) }
    /// `rw`: read and write, no execute.
    public static var readWrite: MemAccess { MemAccess(unchecked: 3) }
    /// `x`: execute only.
    public static var execute: MemAccess { MemAccess(unchecked: 4) }
    /// `rx`: read and execute.
    public static var readExecute: MemAccess { MemAccess(unchecked: 5) }
    /// `wx`: write and execute. An EPT misconfiguration on Intel hardware (``isHardwareUnsafe``).
    public static var writeExecute: MemAccess { MemAccess(unchecked: 6) }
    /// `rwx`: full access.
    public static var readWriteExecute: MemAccess { MemAccess(unchecked: 7) }
    /// `rx2rw`: behaves as `rx`; the first write fault silently turns the
    /// entry into `rw` (no event) and the write is retried.
    public static var readExecuteToReadWrite: MemAccess { MemAccess(unchecked: 8) }
    /// `n2rwx`: behaves as `n`; the first access turns the entry into `rwx`
    /// and sends an event without pausing the vCPU.
    public static var noneToReadWriteExecute: MemAccess { MemAccess(unchecked: 9) }
    /// `r_pw` (Xen ≥4.20): like `r`, but CPU page-walk writes (A/D bits) are
    /// allowed on CPUs with EPT paging-write.
    public static var readPageWalkWrite: MemAccess { MemAccess(unchecked: 10) }
    /// `default`: "use the default". In altp2m operations this always means
    /// the **host** p2m's `default_access`. It is never stored in an entry.
    public static var `default`: MemAccess { MemAccess(unchecked: 11) }

    /// Every access type, in internal-number order.
    public static let allCases: [MemAccess] = (0...11).map { MemAccess(unchecked: $0) }

    /// Whether this is a concrete permission (everything but ``default``).
    @inlinable
    public var isConcrete: Bool { rawValue != 11 }

    // MARK: Permissions

    /// Whether an access of `kind` is allowed without a violation: the table
    /// of spec §4.2.
    ///
    /// `rx2rw` and `n2rwx` answer for their *current* behaviour (`rx` and
    /// `n`); the conversion happens in the violation handler. ``default`` is
    /// not a permission and permits nothing: resolve it to a p2m's default
    /// first.
    @inlinable
    public func permits(_ kind: AccessKind) -> Bool {
        permissionBits & UInt8(truncatingIfNeeded: kind.bit) != 0
    }

    /// The EPT read/write/execute bits (1, 2, 4) this access type programs:
    /// the permissions a #VE exit qualification reports in bits 3–5.
    @inlinable
    public var permissionBits: UInt8 {
        switch rawValue {
        case 0...7: rawValue          // n..rwx are a bitmask r=1 w=2 x=4
        case 8: 5                     // rx2rw starts as rx
        case 9: 0                     // n2rwx starts as n
        case 10: 1                    // r_pw is r for guest accesses
        default: 0                    // default is not a permission
        }
    }

    /// `w` and `wx`: EPT misconfigurations on Intel hardware (spec §8 note).
    /// Xen writes them anyway; on real hardware they probably crash the
    /// domain. The simulator applies the §4.2 table and lets callers warn.
    @inlinable
    public var isHardwareUnsafe: Bool { rawValue == 2 || rawValue == 6 }

    // MARK: ABI

    /// The `xenmem_access_t` number of this access type in `version`'s
    /// public ABI, or `nil` if that version has no such value (`r_pw` before 4.20).
    public func abiValue(for version: XenVersion) -> UInt16? {
        switch rawValue {
        case 0...9: return UInt16(rawValue)
        case 10: return version.hasReadPageWalkWrite ? 10 : nil
        default: return version.accessDefaultABIValue
        }
    }

    /// Decodes a `xenmem_access_t` number of `version`'s public ABI; `nil`
    /// for values above `XENMEM_access_default` (the hypervisor answers
    /// those with `EINVAL`).
    public init?(abiValue: UInt16, for version: XenVersion) {
        switch abiValue {
        case 0...9: self.init(unchecked: UInt8(abiValue))
        case 10: self.init(unchecked: version.hasReadPageWalkWrite ? 10 : 11)
        case 11 where version.hasReadPageWalkWrite: self.init(unchecked: 11)
        default: return nil
        }
    }

    // MARK: Names

    /// The CLI spelling: `n r w rw x rx wx rwx rx2rw n2rwx r_pw default`.
    public var description: String { Self.names[Int(rawValue)] }

    /// Parses a CLI spelling (see ``description``).
    public init?(_ description: String) {
        guard let index = Self.names.firstIndex(of: description) else { return nil }
        self.init(unchecked: UInt8(index))
    }

    private static let names = ["n", "r", "w", "rw", "x", "rx", "wx", "rwx", "rx2rw", "n2rwx", "r_pw", "default"]

    @available(*, unavailable, renamed: "none")
    public static var XENMEM_access_n: MemAccess { .none }
    @available(*, unavailable, renamed: "read")
    public static var XENMEM_access_r: MemAccess { .read }
    @available(*, unavailable, renamed: "write")
    public static var XENMEM_access_w: MemAccess { .write }
    @available(*, unavailable, renamed: "readWrite")
    public static var XENMEM_access_rw: MemAccess { .readWrite }
    @available(*, unavailable, renamed: "execute")
    public static var XENMEM_access_x: MemAccess { .execute }
    @available(*, unavailable, renamed: "readExecute")
    public static var XENMEM_access_rx: MemAccess { .readExecute }
    @available(*, unavailable, renamed: "writeExecute")
    public static var XENMEM_access_wx: MemAccess { .writeExecute }
    @available(*, unavailable, renamed: "readWriteExecute")
    public static var XENMEM_access_rwx: MemAccess { .readWriteExecute }
    @available(*, unavailable, renamed: "readExecuteToReadWrite")
    public static var XENMEM_access_rx2rw: MemAccess { .readExecuteToReadWrite }
    @available(*, unavailable, renamed: "noneToReadWriteExecute")
    public static var XENMEM_access_n2rwx: MemAccess { .noneToReadWriteExecute }
    @available(*, unavailable, renamed: "readPageWalkWrite")
    public static var XENMEM_access_r_pw: MemAccess { .readPageWalkWrite }
    @available(*, unavailable, renamed: "default")
    public static var XENMEM_access_default: MemAccess { .default }
}
