import Altp2m
import XenInterface
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// ``XenForeignMemoryLibrary`` on the simulator: the daemon answers
/// `foreign.map` with the machine frames behind a guest's gfns (its
/// per-frame errors as privcmd reports them) and the machine-memory file,
/// and the frames are mapped from that file, contiguous in this process.
/// A frame with an error stays inaccessible (`PROT_NONE`), as privcmd leaves it.
public final class SimForeignMemoryLibrary: XenForeignMemoryLibrary {
    let client: SimClient

    /// `xenforeignmemory_open` as dom0 of the simulator at `stateDirectory`.
    public init(stateDirectory: StateDirectory = .resolve()) throws(SimClientError) {
        client = try SimClient(stateDirectory: stateDirectory)
    }

    deinit { client.close() }

    public func map(_ domain: DomainID, writable: Bool, gfns: [UInt64]) throws(XenErrno)
        -> (base: UnsafeMutableRawPointer, errors: [Int32]) {
        guard !gfns.isEmpty else { throw .invalid }
        let (reply, fds) = try asErrno { () throws(SimClientError) in
            try client.exchange("foreign.map", ["domain": .int(Int64(domain.rawValue)), "writable": .bool(writable),
                                                "gfns": .array(gfns.map { .uint($0) })])
        }
        defer { WireFrame.closeAll(fds) }
        guard let memory = fds.first, let mfns = reply["mfns"]?.array, let codes = reply["errors"]?.array,
              mfns.count == gfns.count, codes.count == gfns.count else {
            throw XenErrno(rawValue: 5) // EIO: a malformed answer
        }
        let size = gfns.count * 4096
        guard let base = mmap(nil, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              base != MAP_FAILED else {
            throw XenErrno(rawValue: errno)
        }
        var errors: [Int32] = []
        errors.reserveCapacity(gfns.count)
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        for index in gfns.indices {
            let code = Int32(truncatingIfNeeded: codes[index].int64 ?? -5)
            errors.append(code)
            guard code == 0, let mfn = SimXenControlLibrary.gfn(mfns[index]) else { continue }
            let page = base + index * 4096
            guard mmap(page, 4096, protection, MAP_SHARED | MAP_FIXED, memory, off_t(mfn * 4096)) == page else {
                let failure = errno
                munmap(base, size)
                throw XenErrno(rawValue: failure)
            }
        }
        return (base, errors)
    }

    public func unmap(_ base: UnsafeMutableRawPointer, pageCount: Int) throws(XenErrno) {
        guard munmap(base, pageCount * 4096) == 0 else { throw XenErrno(rawValue: errno) }
    }
}
