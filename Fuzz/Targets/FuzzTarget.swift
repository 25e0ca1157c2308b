/// A broken oracle: the code under test did something the target says it
/// never may (delivered a forged message, accepted an unsigned envelope...).
/// The libFuzzer driver aborts on it, so the input is kept as a crash; the
/// regression test reports it as a failure.
package struct OracleViolation: Error, CustomStringConvertible {
    package var description: String

    package init(_ description: String) { self.description = description }
}

/// One fuzz target: a name, the function libFuzzer calls per input, and
/// genuine inputs to start the corpus from.
package struct FuzzTarget: Sendable {
    package var name: String
    /// What the target feeds, in a line (for `securechannel-fuzz list`).
    package var summary: String
    package var run: @Sendable ([UInt8]) throws(OracleViolation) -> Void
    /// Seed inputs built by running the real code (valid envelopes, genuine
    /// handshake messages, whole benign sessions), written into
    /// Fuzz/corpus/NAME/ by `securechannel-fuzz seeds`.
    package var seeds: @Sendable () -> [[UInt8]]

    /// Every target, in the order `make fuzz` runs them.
    package static let all: [FuzzTarget] = [
        RingTarget.target, SessionTarget.target, DescriptorTarget.target, NoiseTarget.target,
        DaemonTarget.target, ServicesTarget.target, AgentConfigTarget.target, PolicyTarget.target,
        MuxFramesTarget.target,
    ]

    package static func named(_ name: String) -> FuzzTarget? {
        all.first { $0.name == name }
    }
}
