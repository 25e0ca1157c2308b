/// A breach of the ring protocol by the peer: an index or frame that no
/// well-behaved peer can produce. The channel must be closed; nothing read
/// after a violation is trusted.
public struct RingViolation: Error, Equatable, Sendable, CustomStringConvertible {
    /// What was wrong, naming the field and the values seen.
    public let reason: String

    public init(_ reason: String) {
        self.reason = reason
    }

    public var description: String { "ring protocol violation: \(reason)" }
}
