/// A machine frame number: a 4-KiB page of host memory.
///
/// Only the hypervisor (or the simulator) sees machine frames; guests and dom0
/// name memory by ``GFN``. In the simulator an `MFN` is the index of a frame
/// in its `MachineMemory`.
@frozen
public struct MFN: RawRepresentable, Hashable, Comparable, Strideable, Sendable,
    ExpressibleByIntegerLiteral, CustomStringConvertible
{
    /// The raw frame number.
    public var rawValue: UInt64

    @inlinable
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Creates a machine frame number from its raw value.
    @inlinable
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    @inlinable
    public init(integerLiteral value: UInt64) { self.rawValue = value }

    /// `INVALID_MFN` (all ones): "no frame". A host p2m write of an invalid
    /// MFN removes the mapping (it is how a dropped page propagates).
    public static var invalid: MFN { MFN(rawValue: ~0) }

    /// Whether this is ``invalid``.
    @inlinable
    public var isInvalid: Bool { rawValue == ~0 }

    @inlinable
    public static func < (lhs: MFN, rhs: MFN) -> Bool { lhs.rawValue < rhs.rawValue }

    @inlinable
    public func advanced(by n: Int) -> MFN {
        MFN(rawValue: rawValue &+ UInt64(bitPattern: Int64(n)))
    }

    @inlinable
    public func distance(to other: MFN) -> Int {
        Int(Int64(bitPattern: other.rawValue &- rawValue))
    }

    /// `0x1a2` style, or `INVALID_MFN`.
    public var description: String {
        isInvalid ? "INVALID_MFN" : "0x" + String(rawValue, radix: 16)
    }

    @available(*, unavailable, renamed: "invalid")
    public static var INVALID_MFN: MFN { invalid }
}
