/// A guest frame number: a 4-KiB page of a domain's guest-physical address
/// space.
///
/// `GFN` is `Strideable`, so `GFN(0x100)..<GFN(0x200)` is a range you can
/// iterate. Arithmetic wraps, as it does on the hypervisor's `unsigned long`,
/// so ``invalid`` plus one is zero rather than a trap.
@frozen
public struct GFN: RawRepresentable, Hashable, Comparable, Strideable, Sendable,
    ExpressibleByIntegerLiteral, CustomStringConvertible
{
    /// The raw frame number.
    public var rawValue: UInt64

    @inlinable
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Creates a guest frame number from its raw value.
    @inlinable
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    @inlinable
    public init(integerLiteral value: UInt64) { self.rawValue = value }

    /// Creates the frame that holds a guest-physical address.
    @inlinable
    public init(containing address: UInt64) { self.rawValue = address >> 12 }

    /// `INVALID_GFN` (all ones). In altp2m operations it selects a p2m's
    /// default access (set/get_mem_access) or requests a revert (change_gfn).
    public static var invalid: GFN { GFN(rawValue: ~0) }

    /// Whether this is ``invalid``.
    @inlinable
    public var isInvalid: Bool { rawValue == ~0 }

    /// The guest-physical address of byte `offset` of this frame.
    @inlinable
    public func address(offset: UInt64 = 0) -> UInt64 { (rawValue << 12) | (offset & 0xFFF) }

    @inlinable
    public static func < (lhs: GFN, rhs: GFN) -> Bool { lhs.rawValue < rhs.rawValue }

    @inlinable
    public func advanced(by n: Int) -> GFN {
        GFN(rawValue: rawValue &+ UInt64(bitPattern: Int64(n)))
    }

    @inlinable
    public func distance(to other: GFN) -> Int {
        Int(Int64(bitPattern: other.rawValue &- rawValue))
    }

    /// `0x1a2` style, or `INVALID_GFN`.
    public var description: String {
        isInvalid ? "INVALID_GFN" : "0x" + String(rawValue, radix: 16)
    }

    @available(*, unavailable, renamed: "invalid")
    public static var INVALID_GFN: GFN { invalid }
}
