#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import Synchronization

/// The guest-wide table of view claims: one 64-byte slot per vCPU whose
/// first word names the thread that is between its `VMFUNC` into a view and
/// its return to view 0 on that vCPU (0 when none is).
///
/// A file every process of the guest that switches views maps shared
/// (`/run/secure-channel/view-claims` inside a Xen guest, one per domain
/// in the simulator's state directory), so the rule holds across
/// processes: a thread claims its vCPU's slot before it switches views and
/// clears it after it is back in view 0. The mapping lives as long as the
/// process.
public struct ViewClaimTable: @unchecked Sendable {
    // @unchecked: a shared mapping used only through atomics.
    /// The first slot.
    public let base: UnsafeMutableRawPointer
    /// How many vCPUs the table has a slot for.
    public let slots: Int

    /// The bytes of one vCPU's slot (a cache line, so vCPUs never share one).
    public static let slotSize = 64
    /// Slots in a table: more vCPUs than Xen gives an HVM guest (128).
    public static let capacity = 1024

    /// The claim word of `vcpu`'s slot.
    @inline(__always)
    public func word(_ vcpu: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (base + vcpu * Self.slotSize).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// Maps the table file at `path` shared, creating it (mode 0600, and
    /// its directory, mode 0700) when missing.
    /// - Throws: the `errno` of the failing call.
    public static func map(path: String) throws(XenErrno) -> ViewClaimTable {
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty, mkdir(directory, 0o700) != 0, errno != EEXIST { throw currentErrno() }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw currentErrno() }
        defer { close(fd) }
        let size = capacity * slotSize
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw currentErrno() }
        // Growing is safe while other processes map it: new bytes read as 0.
        if Int(status.st_size) < size, ftruncate(fd, off_t(size)) != 0 { throw currentErrno() }
        let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let mapping, mapping != MAP_FAILED else { throw currentErrno() }
        return ViewClaimTable(base: mapping, slots: capacity)
    }

    /// Whether the process in the high half of a thread identity (as
    /// ``XenGuestHardware/threadIdentity()`` makes them) may still run:
    /// false only when no such process exists.
    public static func ownerMayLive(_ identity: UInt64) -> Bool {
        let pid = pid_t(truncatingIfNeeded: identity >> 32)
        guard pid > 0 else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    private static func currentErrno() -> XenErrno {
        XenErrno(rawValue: errno)
    }
}
