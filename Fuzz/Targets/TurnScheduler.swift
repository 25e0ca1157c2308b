import Altp2m
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Two threads that take turns, one running at a time, switching only at
/// the schedule points the fuzzer's bytes choose: every VMFUNC an endpoint
/// makes (each ring operation and each poll of a wait is bracketed by one)
/// and every wait. A run is therefore the same interleaving every time for
/// the same input, which coverage-guided fuzzing needs, while both endpoints
/// still block, spin and time out as they do between two vCPUs.
///
/// At each point the fuzzer may also act on the window as a hostile third
/// party with write access (`WindowAttack`).
final class TurnScheduler: @unchecked Sendable {
    // @unchecked: every field is touched only by the thread holding the
    // turn; the semaphores order one turn's writes before the next's reads.
    /// What each side does (`SessionSide` reads its own).
    var scripts: [FuzzInput]
    /// Where the turn passes and what the hostile writer does.
    private var schedule: FuzzInput
    let window: FuzzWindow
    private let turns = [DispatchSemaphore(value: 0), DispatchSemaphore(value: 0)]
    private let done = DispatchSemaphore(value: 0)
    private var finished = [false, false]
    /// Schedule points so far, and since the schedule ran out.
    private(set) var points = 0
    private var pointsAfterInput = 0
    /// Whether the fuzzer wrote into the window.
    private(set) var attacked = false
    /// Set once the run is wound up (see `point`).
    private(set) var revoked = false

    /// After the schedule is used up the threads alternate at every point; if
    /// they are still at it this many points later (both waiting for each
    /// other, say), the host revokes the channel, as the grant module does
    /// on teardown, so every wait ends with `peerDied`.
    static let pointsBeforeRevoke = 1000

    init(scripts: [FuzzInput], schedule: FuzzInput, window: FuzzWindow) {
        self.scripts = scripts
        self.schedule = schedule
        self.window = window
    }

    /// Runs `body(0)` and `body(1)` on two threads in turns, thread 0 first;
    /// returns when both have returned.
    func run(_ body: @escaping @Sendable (Int) -> Void) {
        for me in 0..<2 {
            let thread = FuzzThread { [self] in
                turns[me].wait()
                body(me)
                finish(me)
            }
            thread.start()
        }
        turns[0].signal()
        done.wait()
        done.wait()
    }

    /// A schedule point of thread `me`.
    func point(_ me: Int) {
        points += 1
        let decision: UInt8
        if schedule.isExhausted {
            pointsAfterInput += 1
            if pointsAfterInput >= Self.pointsBeforeRevoke, !revoked { revoke() }
            decision = 0x80
        } else {
            decision = schedule.byte()
        }
        // The top values of the low seven bits are attacks, the rest not,
        // so zeros and plain switches (0x80) never write.
        let low = decision & 0x7F
        if low >= 0x80 - WindowAttack.count {
            attacked = true
            WindowAttack(rawValue: low - (0x80 - WindowAttack.count))!.apply(to: window, &schedule)
        }
        if decision & 0x80 != 0 { pass(from: me) }
    }

    /// The host's teardown flag in the control page (what `checkPeerAlive` reads).
    private func revoke() {
        revoked = true
        let closed = window.control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.closed)
        closed.pointee.store(1, ordering: .releasing)
    }

    private func pass(from me: Int) {
        let other = 1 - me
        guard !finished[other] else { return }
        turns[other].signal()
        turns[me].wait()
    }

    private func finish(_ me: Int) {
        finished[me] = true
        if !finished[1 - me] { turns[1 - me].signal() }
        done.signal()
    }
}

/// A thread with a stack large enough for an endpoint's handshake.
final class FuzzThread: @unchecked Sendable {
    private let body: () -> Void

    init(_ body: @escaping () -> Void) { self.body = body }

    func start() {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, 4 << 20)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { raw in
            let me = Unmanaged<FuzzThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, context)
        pthread_attr_destroy(&attributes)
        precondition(result == 0, "pthread_create failed (\(result))")
    }
}

/// What a third party with write access to the window can do between two
/// operations of the endpoints.
enum WindowAttack: UInt8, CaseIterable {
    case writeByte, writeWord, writeDoubleWord, moveProducerIndex, moveConsumerIndex
    case replayBytes, setClosedBits, setWaitingBits, bumpLiveness, flipRingBit, copyHeader, hostRevoke

    static let count = UInt8(allCases.count)

    func apply(to window: FuzzWindow, _ input: inout FuzzInput) {
        let size = window.byteCount
        let rings = window.geometry.isOneWay ? 1 : 2
        let ring = Int(input.byte()) % rings
        let ringBase = window.geometry.ringOffsets[ring]
        let ringMask = window.geometry.ringSize - 1
        switch self {
        case .writeByte:
            window.write([input.byte()][...], at: Int(input.u16()) % size)
        case .writeWord:
            window.write(withUnsafeBytes(of: input.u32()) { Array($0) }[...], at: (Int(input.u16()) % size) & ~3)
        case .writeDoubleWord:
            window.write(withUnsafeBytes(of: input.u64()) { Array($0) }[...], at: (Int(input.u16()) % size) & ~7)
        case .moveProducerIndex, .moveConsumerIndex:
            let index = window.index(self == .moveProducerIndex ? .producer : .consumer, ring: ring)
            let choice = input.byte()
            let current = index.pointee.load(ordering: .relaxed)
            let moved = choice & 1 == 0 ? current &+ UInt64(input.byte()) * 16 &- 128 * 16 : input.u64()
            index.pointee.store(moved, ordering: .relaxed)
        case .replayBytes:
            let from = Int(input.u16()) & ringMask & ~15, to = Int(input.u16()) & ringMask & ~15
            let count = min(16 * (1 + Int(input.byte() % 16)), window.geometry.ringSize - max(from, to))
            (window.base + ringBase + to).copyMemory(from: window.base + ringBase + from, byteCount: count)
        case .setClosedBits, .setWaitingBits, .bumpLiveness:
            let side = input.bool() ? ControlPage.Offset.initiatorState : ControlPage.Offset.responderState
            let field = self == .setClosedBits ? ControlPage.SideField.closed
                : self == .setWaitingBits ? ControlPage.SideField.waiting : ControlPage.SideField.liveness
            window.write([input.byte() & 3][...], at: side + field)
        case .flipRingBit:
            let offset = ringBase + (Int(input.u16()) & ringMask)
            window.base.storeBytes(of: window.base.load(fromByteOffset: offset, as: UInt8.self) ^ (1 << (input.byte() & 7)),
                                   toByteOffset: offset, as: UInt8.self)
        case .copyHeader:
            let from = Int(input.u16()) & ringMask & ~15, to = Int(input.u16()) & ringMask & ~15
            (window.base + ringBase + to).copyMemory(from: window.base + ringBase + from, byteCount: 16)
        case .hostRevoke:
            window.write([1, 0, 0, 0][...], at: ControlPage.Offset.hostState + ControlPage.HostField.closed)
        }
    }
}
