import Altp2m
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A thread of a guest process, as the simulator runs it: at every moment
/// it is on one of the domain's vCPUs, and each guest operation it makes
/// acts on that vCPU, with that vCPU's current view.
///
/// On hardware the current view (the EPTP index `VMFUNC` sets) belongs to
/// the vCPU, not to the thread: Linux may preempt a thread and run another
/// on the same vCPU, or migrate it to another vCPU, between any two
/// instructions. A thread that entered a view with `VMFUNC` and then moved
/// makes its next access in the view of the vCPU it is on now. The guest's
/// ``SimGuest/scheduler`` decides such moves at the schedule points (each
/// operation below, and `SimGuestPlatform`'s `enterView`, `notify` and
/// `wait`); without one, a thread stays where it was put.
///
/// Use a thread from one OS thread at a time (hand it to the OS thread that
/// runs it); a scheduler may run another guest thread's operations on that
/// OS thread (a preemption).
public final class GuestThread: @unchecked Sendable {
    // @unchecked: used by one OS thread at a time, as documented; the
    // shared state it reaches (vCPU pages, tables) is atomics.
    /// A name for scripts and logs.
    public let name: String
    /// The guest process this thread belongs to; it must outlive the thread.
    public unowned let guest: SimGuest
    /// The vCPU the thread is on now, as an index (read on every operation,
    /// so without a dynamic exclusivity check).
    @exclusivity(unchecked) var vcpuIndex: Int
    /// The vCPU the thread is pinned to, as an index, or -1.
    @exclusivity(unchecked) var pinnedIndex: Int = -1
    /// A number that names this thread among every guest thread of every
    /// process on this machine while it lives: the process id in the high
    /// half, a serial in the low half (what `gettid` gives a guest thread).
    public let identity: UInt64

    private static let serials = Atomic<UInt32>(0)

    init(name: String, guest: SimGuest, vcpu: VCPUID) {
        self.name = name
        self.guest = guest
        self.vcpuIndex = Int(vcpu.rawValue)
        let serial = Self.serials.add(1, ordering: .relaxed).newValue
        identity = UInt64(UInt32(bitPattern: getpid())) << 32 | UInt64(serial)
    }

    /// The vCPU the thread is on now.
    public var vcpu: VCPUID { VCPUID(UInt32(vcpuIndex)) }

    /// The vCPU the thread is pinned to (``pin(to:)``), or nil.
    public var pinnedVCPU: VCPUID? { pinnedIndex < 0 ? nil : VCPUID(UInt32(pinnedIndex)) }

    /// Moves the thread to `vcpu` (the scheduler's migration). The vCPU
    /// keeps its own view: the thread's next access is in `vcpu`'s view.
    /// - Throws: ``SimGuestError/simulator(_:)`` when the process did not
    ///   attach for `vcpu` (attach with it in `vcpus:`), or the thread is
    ///   pinned to another vCPU: Linux never migrates a thread whose
    ///   affinity is one CPU (`sched_setaffinity`).
    public func migrate(to vcpu: VCPUID) throws(SimGuestError) {
        guard guest.vcpus.contains(vcpu) else {
            throw .simulator(.badArgument("thread \(name) cannot run on vCPU \(vcpu.rawValue): the process attached for vCPUs \(guest.vcpus.map(\.rawValue)); attach with it in vcpus:"))
        }
        guard pinnedIndex < 0 || pinnedIndex == Int(vcpu.rawValue) else {
            throw .simulator(.badArgument("thread \(name) is pinned to vCPU \(pinnedIndex) (its affinity is that one CPU): the kernel does not move it to vCPU \(vcpu.rawValue)"))
        }
        vcpuIndex = Int(vcpu.rawValue)
    }

    /// Pins the thread to `vcpu`, as `sched_setaffinity` with that one CPU
    /// does: it moves there now and no scheduler migrates it again.
    /// - Throws: ``SimGuestError/simulator(_:)`` for a vCPU the process did
    ///   not attach for.
    public func pin(to vcpu: VCPUID) throws(SimGuestError) {
        pinnedIndex = -1
        try migrate(to: vcpu)
        pinnedIndex = Int(vcpu.rawValue)
    }

    /// `VMFUNC` leaf 0 on the vCPU the thread is on (after the schedule point).
    public func vmfunc(_ index: UInt32, eax: UInt32 = 0) -> VMFUNCOutcome {
        guest.vmfunc(index, eax: eax, thread: self)
    }

    /// The view of the vCPU the thread is on; nil while altp2m is inactive.
    public var currentView: ViewID? { guest.currentView(vcpu: vcpuIndex) }

    /// Reads `count` bytes through the view of the vCPU the thread is on.
    public func read(gfn: GFN, offset: Int = 0, count: Int) throws(GuestMemoryFault) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var fault: GuestMemoryFault?
        bytes.withUnsafeMutableBytes { buffer in
            do throws(GuestMemoryFault) { try guest.read(gfn: gfn, offset: offset, into: buffer, thread: self) } catch {
                fault = error
            }
        }
        if let fault { throw fault }
        return bytes
    }

    /// Writes `bytes` through the view of the vCPU the thread is on.
    public func write(gfn: GFN, offset: Int = 0, bytes: [UInt8]) throws(GuestMemoryFault) {
        var fault: GuestMemoryFault?
        bytes.withUnsafeBytes { buffer in
            do throws(GuestMemoryFault) { try guest.write(gfn: gfn, offset: offset, from: buffer, thread: self) } catch {
                fault = error
            }
        }
        if let fault { throw fault }
    }
}
