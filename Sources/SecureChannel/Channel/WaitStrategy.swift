/// How a channel waits for its peer when a ring is empty (or full).
public enum WaitStrategy: Sendable, Equatable, CustomStringConvertible {
    /// Poll shared memory without ever sleeping: the lowest latency, one busy
    /// core per waiting side. No system call on the data path.
    case spin
    /// Announce "waiting" in the control page and sleep until the peer wakes
    /// this side (futex in the simulator, event channel on Xen). Costs a
    /// wake-up (tens of microseconds across cores) per message.
    case block
    /// Spin for the given time, then block. With 5-20 us of spinning almost
    /// every round trip of a busy channel stays on the fast path.
    case adaptive(spinFor: Duration)

    public var description: String {
        switch self {
        case .spin: return "spin"
        case .block: return "block"
        case let .adaptive(d): return "adaptive(\(d))"
        }
    }

    /// The default adaptive budget (see docs/BENCHMARKS.md for why 20 us).
    public static let adaptive: WaitStrategy = .adaptive(spinFor: .microseconds(20))

    var spinNanoseconds: UInt64 {
        switch self {
        case .spin: return .max
        case .block: return 0
        case let .adaptive(d):
            let (s, a) = d.components
            return s < 0 ? 0 : UInt64(s) * 1_000_000_000 + UInt64(a / 1_000_000_000)
        }
    }
}
