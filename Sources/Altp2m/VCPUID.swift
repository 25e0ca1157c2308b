/// A virtual CPU of a domain, numbered from 0 (`vcpu_id`).
@frozen
public struct VCPUID: RawRepresentable, Hashable, Comparable, Sendable,
    ExpressibleByIntegerLiteral, CustomStringConvertible
{
    /// The raw vCPU number.
    public var rawValue: UInt32

    @inlinable
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Creates a vCPU id from its raw value.
    @inlinable
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    @inlinable
    public init(integerLiteral value: UInt32) { self.rawValue = value }

    @inlinable
    public static func < (lhs: VCPUID, rhs: VCPUID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "v\(rawValue)" }
}
