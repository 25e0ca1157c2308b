import Altp2m

/// What a guest agent reaches below the Xen libraries: the `VMFUNC`
/// instruction and the guest-physical address space (`/dev/mem`).
public protocol XenGuestHardware: AnyObject {
    /// `VMFUNC` leaf 0 with `ecx = view`. On hardware a refused switch
    /// raises #UD, which Linux delivers as `SIGILL`; an implementation that
    /// can observe the refusal returns `false`.
    func vmfunc(_ view: UInt16) -> Bool
    /// Maps `pageCount` guest-physical pages from `firstGFN` (`mmap` of
    /// `/dev/mem`). On hardware every access is translated by the vCPU's
    /// current view; `view` names the view whose frames the mapping is for,
    /// which an implementation without a second-level MMU maps directly.
    func mapPhysical(firstGFN: UInt64, pageCount: Int, view: UInt16) throws(XenErrno) -> UnsafeMutableRawPointer
    /// `munmap` of a mapping from ``mapPhysical(firstGFN:pageCount:view:)``.
    func unmapPhysical(_ base: UnsafeMutableRawPointer, pageCount: Int)
    /// The guest frame number behind a page of this process
    /// (`/proc/self/pagemap`: in an HVM guest the PFN is the gfn).
    func guestFrame(of address: UnsafeRawPointer) throws(XenErrno) -> UInt64
    /// Reads one byte at `address` as the CPU does: through the current
    /// view of the vCPU this thread runs on (a guest access; on Xen the
    /// first access to a gfn a view has no entry for copies the host's
    /// entry into it).
    func touch(_ address: UnsafeRawPointer)

    // MARK: Threads and vCPUs
    //
    // The current view belongs to the vCPU, not to the thread
    // (docs/XEN.md, "Threads, vCPUs and views"): ``ViewSwitching`` pins
    // every thread that enters a view and lets one thread at a time switch
    // views on a vCPU, through these.

    /// The vCPU the calling thread was pinned to by ``pinCallingThread()``,
    /// or nil. Called on every view switch: no system call.
    func pinnedVCPU() -> Int?
    /// Pins the calling thread to the vCPU it runs on now
    /// (`sched_setaffinity` with that one CPU): Linux then never migrates
    /// it. Returns that vCPU.
    func pinCallingThread() throws(XenErrno) -> Int
    /// A nonzero number naming the calling thread among every thread of the
    /// guest while it lives (the process id in the high half). Valid after
    /// ``pinCallingThread()``; no system call.
    func threadIdentity() -> UInt64
    /// Whether the process of the thread that `identity` names may still
    /// run (false only when it is certainly gone).
    func threadMayLive(_ identity: UInt64) -> Bool
    /// The guest-wide table of view claims (``ViewClaimTable``), shared by
    /// every process of this guest that switches views.
    func viewClaims() throws(XenErrno) -> ViewClaimTable
}
