#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import Synchronization

/// How a guest thread enters and leaves a view so that its accesses in
/// between happen in that view, although the view belongs to the vCPU and
/// Linux may preempt or migrate the thread at any instruction.
///
/// Two hazards, and the rule that removes each (docs/XEN.md, "Threads,
/// vCPUs and views"):
/// - **Migration.** A thread moved to another vCPU between its `VMFUNC`
///   and its access makes the access in that vCPU's view. So a thread is
///   pinned to the vCPU it runs on (`sched_setaffinity` with one CPU)
///   before its first switch, once; Linux never migrates it after that.
/// - **Preemption.** Another thread run on the same vCPU in the middle of
///   a visit could switch the vCPU's view, and the first thread would
///   resume in it. So a thread claims its vCPU's slot in the guest-wide
///   ``ViewClaimTable`` before it switches and clears it after it is back
///   in view 0: at most one visit is open per vCPU. A thread that finds the
///   slot taken was scheduled in the middle of another thread's visit; it
///   yields until that visit ends (the owner, pinned to this vCPU, runs
///   again), or takes the slot over when the owner's process is gone.
///
/// With an access outside the channel view and `access_required` set, Xen
/// crashes the domain (`p2m_mem_access_check`), so either hazard is fatal.
/// The claim costs an uncontended compare-and-exchange and a store per
/// visit: no system call, no allocation, and no waiting unless a visit was
/// preempted half-way.
public final class ViewSwitching: @unchecked Sendable {
    // @unchecked: the table is shared memory used through atomics; the
    // hardware's per-thread state is the calling thread's own.
    private let hardware: any XenGuestHardware
    private let table: ViewClaimTable
    /// Slot takeovers from threads whose process was gone.
    private let takeovers = Atomic<Int>(0)
    /// Switches that found their vCPU's slot taken and waited.
    private let waits = Atomic<Int>(0)

    /// Maps the guest's claim table through `hardware`.
    /// - Throws: the `errno` of mapping the table.
    public init(hardware: any XenGuestHardware) throws(XenErrno) {
        self.hardware = hardware
        table = try hardware.viewClaims()
    }

    /// Why a switch into a view did not happen.
    public enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        /// The processor refused `VMFUNC` (#UD): the view is not active
        /// and visible, or VMFUNC is not enabled on this vCPU.
        case vmfuncRefused(view: UInt16)
        /// The thread could not be pinned to its vCPU.
        case notPinned(XenErrno)
        /// The vCPU's number is past the claim table.
        case vcpuOutOfRange(Int)

        public var description: String {
            switch self {
            case .vmfuncRefused(let view):
                "VMFUNC into view \(view) was refused (#UD): the view is not visible or VMFUNC is not enabled on this vCPU"
            case .notPinned(let errno):
                "the thread could not be pinned to its vCPU (sched_setaffinity: \(errno)); a thread that switches views must not migrate"
            case .vcpuOutOfRange(let vcpu):
                "vCPU \(vcpu) is past the \(ViewClaimTable.capacity) slots of the view claim table"
            }
        }
    }

    /// Switches the calling thread's vCPU into `view` for a visit: pins the
    /// thread at its first switch, claims the vCPU, then `VMFUNC`.
    /// Entering while already in a visit (another view) keeps the claim.
    public func enter(_ view: UInt16) throws(Refusal) {
        _ = try enter(view, waiting: true)
    }

    /// ``enter(_:)`` that does not wait: false, with nothing switched, when
    /// another thread's visit on this vCPU is open (its owner was preempted
    /// inside it). For a caller that has other work, and for the
    /// simulator's preemptions, where the intruder runs in the preempted
    /// thread's place and cannot wait for it.
    public func tryEnter(_ view: UInt16) throws(Refusal) -> Bool {
        try enter(view, waiting: false)
    }

    private func enter(_ view: UInt16, waiting: Bool) throws(Refusal) -> Bool {
        let vcpu: Int
        if let pinned = hardware.pinnedVCPU() {
            vcpu = pinned
        } else {
            do { vcpu = try hardware.pinCallingThread() } catch { throw .notPinned(error) }
        }
        guard vcpu >= 0, vcpu < table.slots else { throw .vcpuOutOfRange(vcpu) }
        let word = table.word(vcpu)
        let me = hardware.threadIdentity()
        var claimed = word.pointee.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged
        if !claimed, word.pointee.load(ordering: .relaxed) != me {
            guard waiting else { return false }
            claimContended(word, me: me)
            claimed = true
        }
        guard hardware.vmfunc(view) else {
            // A visit this call opened ends here; one already open goes on.
            if claimed { word.pointee.store(0, ordering: .releasing) }
            throw .vmfuncRefused(view: view)
        }
        return true
    }

    /// Returns the calling thread's vCPU to view 0 and ends its visit.
    /// - Returns: false when `VMFUNC` was refused (view 0 always exists, so
    ///   only when VMFUNC is not enabled on the vCPU at all).
    @discardableResult
    public func leave() -> Bool {
        let switched = hardware.vmfunc(0)
        if let vcpu = hardware.pinnedVCPU(), vcpu >= 0, vcpu < table.slots {
            let word = table.word(vcpu)
            let me = hardware.threadIdentity()
            // Only the owner clears: a leave without an enter (or after a
            // takeover) must not end another thread's visit.
            _ = word.pointee.compareExchange(expected: me, desired: 0, ordering: .releasing)
        }
        return switched
    }

    /// The slow path: the slot is another thread's, which was preempted
    /// inside its visit on this vCPU. Yield until it is free; take it over
    /// when its owner's process is gone (killed inside a visit).
    private func claimContended(_ word: UnsafeMutablePointer<Atomic<UInt64>>, me: UInt64) {
        waits.add(1, ordering: .relaxed)
        var rounds = 0
        while true {
            let holder = word.pointee.load(ordering: .relaxed)
            if holder == 0 || holder == me {
                if word.pointee.compareExchange(expected: holder, desired: me, ordering: .acquiring).exchanged { return }
                continue
            }
            rounds += 1
            if rounds % 256 == 0, !hardware.threadMayLive(holder),
               word.pointee.compareExchange(expected: holder, desired: me, ordering: .acquiring).exchanged {
                takeovers.add(1, ordering: .relaxed)
                return
            }
            sched_yield()
        }
    }

    /// Visits that waited for another thread's visit on their vCPU to end.
    public var contendedClaims: Int { waits.load(ordering: .relaxed) }
    /// Slots taken over from a process that was gone.
    public var slotTakeovers: Int { takeovers.load(ordering: .relaxed) }
}
