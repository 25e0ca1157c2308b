/// The index of an alternate p2m view (`altp2m_idx`).
///
/// Index 0 is overloaded (spec §2.3): `switch`, `destroy`, `set_visibility`,
/// `get_p2m_idx`, `change_gfn`, VMFUNC and vm_event responses read it as the
/// view-0 *table*, while `set/get_mem_access` and `set/get_suppress_ve` read
/// it as the *host* p2m. The name ``hostOrView0`` keeps that visible.
@frozen
public struct ViewID: RawRepresentable, Hashable, Comparable, Sendable,
    ExpressibleByIntegerLiteral, CustomStringConvertible
{
    /// The raw 16-bit index.
    public var rawValue: UInt16

    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Creates a view index from its raw value.
    @inlinable
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    @inlinable
    public init(integerLiteral value: UInt16) { self.rawValue = value }

    /// Index 0: the view-0 table or the host p2m, depending on the operation.
    public static var hostOrView0: ViewID { ViewID(rawValue: 0) }

    /// `INVALID_ALTP2M` (0xFFFF): a vCPU's index while altp2m is inactive.
    public static var invalid: ViewID { ViewID(rawValue: 0xFFFF) }

    /// Whether this is ``invalid``.
    @inlinable
    public var isInvalid: Bool { rawValue == 0xFFFF }

    @inlinable
    public static func < (lhs: ViewID, rhs: ViewID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { isInvalid ? "INVALID_ALTP2M" : "view \(rawValue)" }

    @available(*, unavailable, renamed: "invalid")
    public static var INVALID_ALTP2M: ViewID { invalid }
}
