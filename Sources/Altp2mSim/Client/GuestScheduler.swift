import Altp2m
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The guest operations at which a thread may be moved.
public enum GuestOperation: String, Sendable, CaseIterable {
    case vmfunc, read, write, pointer, notify, wait
}

/// What the guest kernel's scheduler does to a guest process's threads, for
/// tests: called at each schedule point (a guest operation that may move
/// the thread), on the calling OS thread, before the operation runs. It may
/// migrate the thread (``GuestThread/migrate(to:)``), preempt it (run other
/// guest threads' operations now, on the same vCPU), or leave it.
public protocol GuestScheduler: AnyObject {
    func schedulePoint(_ thread: GuestThread, _ operation: GuestOperation)
}

/// A scheduler that calls a closure at each schedule point.
public final class CallbackGuestScheduler: GuestScheduler {
    private let body: (GuestThread, GuestOperation) -> Void

    public init(_ body: @escaping (GuestThread, GuestOperation) -> Void) {
        self.body = body
    }

    public func schedulePoint(_ thread: GuestThread, _ operation: GuestOperation) {
        body(thread, operation)
    }
}

/// Deterministic schedule points: a script of steps, each taken at the next
/// schedule point of the named thread with the named operation (steps are
/// taken in order; a point that does not match the first step passes).
public final class ScriptedGuestScheduler: GuestScheduler {
    /// What happens to the thread at a step.
    public enum Action {
        /// The thread moves to another vCPU.
        case migrate(to: VCPUID)
        /// Another thread is put on this thread's vCPU and runs `body`
        /// before this thread's operation: a preemption.
        case preempt(by: GuestThread, run: (GuestThread) -> Void)
    }

    /// One step of the script.
    public struct Step {
        public let thread: String
        public let operation: GuestOperation
        public let action: Action

        public init(_ thread: String, at operation: GuestOperation, _ action: Action) {
            self.thread = thread
            self.operation = operation
            self.action = action
        }
    }

    private var steps: [Step]
    /// Failures of the script (a migration to a vCPU the process does not run).
    public private(set) var problems: [String] = []

    public init(_ steps: [Step]) {
        self.steps = steps
    }

    /// Steps not yet taken.
    public var remaining: Int { steps.count }

    public func schedulePoint(_ thread: GuestThread, _ operation: GuestOperation) {
        guard let next = steps.first, next.thread == thread.name, next.operation == operation else { return }
        steps.removeFirst()
        switch next.action {
        case .migrate(let vcpu):
            do { try thread.migrate(to: vcpu) } catch { problems.append(error.description) }
        case .preempt(let other, let body):
            do { try other.migrate(to: thread.vcpu) } catch { problems.append(error.description) }
            body(other)
        }
    }
}

/// Seeded random schedule points for soak tests: at each point, with
/// probability `rate`, the thread migrates to a vCPU drawn from its
/// process's (unless it is pinned, as Linux would not move it), with
/// probability `rate` it yields the OS CPU (so threads sharing a vCPU
/// interleave), and, when a `preemption` is given, with probability `rate`
/// another guest thread runs on the thread's vCPU first: the closure gets
/// the preempted thread and runs the intruder's operations. The same seed
/// gives the same draws in the same order (their assignment to OS threads
/// follows the OS).
public final class RandomGuestScheduler: GuestScheduler, @unchecked Sendable {
    // @unchecked: the state is behind a mutex.
    private struct State {
        var random: UInt64
        var migrations = 0
        var refusedMigrations = 0
        var preemptions = 0
        var points = 0
        /// OS threads running a preemption now: their own schedule points
        /// pass (the intruder is not preempted in turn).
        var preempting: Set<UInt> = []
    }

    private let state: Mutex<State>
    private let threshold: UInt64
    private let preemption: ((GuestThread) -> Void)?
    private let yields: Bool

    /// - Parameters:
    ///   - seed: the generator's seed.
    ///   - rate: 0...1, the chance of a migration (and of a yield, and of a
    ///     preemption) per point.
    ///   - yields: whether to yield the OS CPU at all (a soak on a loaded
    ///     machine, where each yield gives a whole time slice away, may
    ///     leave it out: the migrations and preemptions do not need it).
    ///   - preemption: what another thread does on the preempted thread's
    ///     vCPU; nil for no preemptions.
    public init(seed: UInt64, rate: Double, yields: Bool = true, preemption: ((GuestThread) -> Void)? = nil) {
        state = Mutex(State(random: seed))
        threshold = UInt64(max(0, min(1, rate)) * Double(UInt64.max >> 11)) << 11
        self.yields = yields
        self.preemption = preemption
    }

    /// Migrations made so far.
    public var migrations: Int { state.withLock { $0.migrations } }
    /// Migrations drawn for a pinned thread, which stayed where it was.
    public var refusedMigrations: Int { state.withLock { $0.refusedMigrations } }
    /// Preemptions run so far.
    public var preemptions: Int { state.withLock { $0.preemptions } }
    /// Schedule points seen so far.
    public var points: Int { state.withLock { $0.points } }

    public func schedulePoint(_ thread: GuestThread, _ operation: GuestOperation) {
        let vcpus = thread.guest.vcpus
        let caller = UInt(pthread_self())
        let pinned = thread.pinnedVCPU != nil
        let draw: (target: VCPUID?, yield: Bool, preempt: Bool)? = state.withLock { s in
            guard !s.preempting.contains(caller) else { return nil }
            s.points += 1
            let move = Self.next(&s.random) < threshold
            let pick = Int(Self.next(&s.random) % UInt64(max(vcpus.count, 1)))
            let yield = Self.next(&s.random) < threshold
            let preempt = preemption != nil && Self.next(&s.random) < threshold
            if preempt {
                s.preemptions += 1
                s.preempting.insert(caller)
            }
            guard move, !vcpus.isEmpty, vcpus[pick] != thread.vcpu else { return (nil, yield, preempt) }
            if pinned {
                s.refusedMigrations += 1
                return (nil, yield, preempt)
            }
            s.migrations += 1
            return (vcpus[pick], yield, preempt)
        }
        guard let draw else { return }
        if let target = draw.target { try? thread.migrate(to: target) }
        if draw.preempt, let preemption {
            preemption(thread)
            _ = state.withLock { $0.preempting.remove(caller) }
        }
        if draw.yield, yields { sched_yield() }
    }

    /// SplitMix64: small, fast, and the same everywhere.
    private static func next(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
