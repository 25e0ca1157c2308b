/// A Xen domain identifier (`domid_t`).
///
/// Domain ids are 16-bit. Values from `0x7FF0` up are reserved pseudo-ids; the
/// only one altp2m callers use is ``selfDomain`` (`DOMID_SELF`), which the
/// hypervisor resolves to the calling domain.
@frozen
public struct DomainID: RawRepresentable, Hashable, Comparable, Sendable,
    ExpressibleByIntegerLiteral, CustomStringConvertible
{
    /// The raw `domid_t` value.
    public var rawValue: UInt16

    /// Creates a domain id from its raw `domid_t` value.
    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    @inlinable
    public init(integerLiteral value: UInt16) { self.rawValue = value }

    /// The control domain, dom0.
    public static var controlDomain: DomainID { DomainID(rawValue: 0) }

    /// `DOMID_SELF` (0x7FF0): "the domain making this call".
    public static var selfDomain: DomainID { DomainID(rawValue: 0x7FF0) }

    /// `DOMID_SELF` under the name the project's other modules use.
    public static var self_: DomainID { selfDomain }

    /// The first reserved pseudo-id (`DOMID_FIRST_RESERVED`); no real domain
    /// has an id at or above it.
    public static var firstReserved: DomainID { DomainID(rawValue: 0x7FF0) }

    /// Whether this is a pseudo-id (`DOMID_SELF` and friends) rather than a
    /// domain that can exist.
    @inlinable
    public var isReserved: Bool { rawValue >= 0x7FF0 }

    @inlinable
    public static func < (lhs: DomainID, rhs: DomainID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        self == .selfDomain ? "DOMID_SELF" : "d\(rawValue)"
    }

    @available(*, unavailable, renamed: "selfDomain")
    public static var DOMID_SELF: DomainID { selfDomain }
}
