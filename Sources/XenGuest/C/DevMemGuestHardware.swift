#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import XenInterface
internal import CPlatform

/// ``XenGuestHardware`` inside a Xen HVM guest: the `VMFUNC` instruction and
/// `/dev/mem`.
final class DevMemGuestHardware: XenGuestHardware {
    private let memory: Int32

    /// Opens `/dev/mem` (root only).
    init() throws(XenErrno) {
        let memory = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC)
        guard memory >= 0 else { throw currentXenErrno() }
        self.memory = memory
    }

    deinit { close(memory) }

    /// A refused switch raises #UD; `cplatform_vmfunc_try` catches that
    /// SIGILL at its own instruction and reports `false`, so the process
    /// lives and the caller learns the view was not entered.
    func vmfunc(_ view: UInt16) -> Bool {
        cplatform_vmfunc_try(UInt32(view)) != 0
    }

    func mapPhysical(firstGFN: UInt64, pageCount: Int, view: UInt16) throws(XenErrno) -> UnsafeMutableRawPointer {
        guard pageCount > 0, firstGFN < (UInt64(1) << 52) else { throw .invalid }
        let mapping = mmap(nil, pageCount * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memory, off_t(firstGFN << 12))
        guard let mapping, mapping != MAP_FAILED else { throw currentXenErrno() }
        return mapping
    }

    func unmapPhysical(_ base: UnsafeMutableRawPointer, pageCount: Int) {
        munmap(base, pageCount * 4096)
    }

    /// `/proc/self/pagemap`: one 64-bit entry per virtual page; bit 63 is
    /// "present", bits 0-54 the frame number (shown to root only).
    func guestFrame(of address: UnsafeRawPointer) throws(XenErrno) -> UInt64 {
        touch(address) // a page not yet faulted in has no frame
        let pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard pagemap >= 0 else { throw currentXenErrno() }
        defer { close(pagemap) }
        var entry: UInt64 = 0
        let offset = off_t(UInt(bitPattern: address) / 4096 * 8)
        guard pread(pagemap, &entry, 8, offset) == 8 else { throw currentXenErrno() }
        let frame = entry & ((UInt64(1) << 55) - 1)
        guard entry & (UInt64(1) << 63) != 0, frame != 0 else { throw .notFound }
        return frame
    }

    func touch(_ address: UnsafeRawPointer) {
        _ = cplatform_read_once(address)
    }

    // MARK: Threads and vCPUs
    // In an HVM guest Linux numbers its CPUs in the order of the vCPUs, so
    // a CPU number names one vCPU for as long as the guest runs.

    func pinnedVCPU() -> Int? {
        let cpu = cplatform_pinned_cpu()
        return cpu < 0 ? nil : Int(cpu)
    }

    func pinCallingThread() throws(XenErrno) -> Int {
        let cpu = cplatform_pin_to_current_cpu()
        guard cpu >= 0 else { throw XenErrno(rawValue: -cpu) }
        return Int(cpu)
    }

    func threadIdentity() -> UInt64 {
        cplatform_thread_identity()
    }

    func threadMayLive(_ identity: UInt64) -> Bool {
        ViewClaimTable.ownerMayLive(identity)
    }

    /// One table for every agent process of the guest, on the tmpfs
    /// `/run` (root only: the agents run as root).
    func viewClaims() throws(XenErrno) -> ViewClaimTable {
        try ViewClaimTable.map(path: "/run/secure-channel/view-claims")
    }
}
