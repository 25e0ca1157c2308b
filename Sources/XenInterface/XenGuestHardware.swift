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
}
