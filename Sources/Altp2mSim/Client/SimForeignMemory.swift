import Altp2m

/// A foreign-memory handle of dom0 on the simulator: what
/// `xenforeignmemory_open` gives a dom0 process, with libxenforeignmemory's
/// calls as methods.
///
/// Dom0 is a PV domain, as on Debian bookworm: a map is privcmd's
/// `IOCTL_PRIVCMD_MMAPBATCH_V2`, one `mmu_update` per frame, and each frame
/// succeeds or fails on its own (the errors are Xen's, per frame, as
/// `mod_l1_entry` gives them; docs/SIMULATOR.md, "Domain memory"). The
/// daemon answers with the machine frames and the machine-memory file, and
/// the frames are mapped from that file into one range, frame i at page i;
/// a page whose frame failed stays inaccessible.
public final class SimForeignMemory {
    /// One ``map(domain:writable:gfns:)``.
    public struct Mapping {
        /// The domain whose memory is mapped.
        public let domain: DomainID
        /// The gfns asked for, in order.
        public let gfns: [GFN]
        /// Each gfn's machine frame, nil where it failed.
        public let mfns: [MFN?]
        /// `errs[]` of `xenforeignmemory_map`: 0 or `-errno` per frame.
        public let errors: [Int32]
        /// The pages, page i holding gfn i (inaccessible where it failed).
        public let pointer: UnsafeMutableRawPointer
        /// Whether the pages are mapped writable.
        public let writable: Bool

        public var count: Int { gfns.count }

        /// The error of frame `index` as a ``XenErrno``, nil if it mapped.
        public func error(at index: Int) -> XenErrno? { XenErrno(code: errors[index]) }
    }

    let client: SimClient

    /// `xenforeignmemory_open`: a dom0 connection to the daemon of
    /// `stateDirectory` (no domain token).
    public init(stateDirectory: StateDirectory = .resolve()) throws(SimClientError) {
        client = try SimClient(stateDirectory: stateDirectory)
    }

    deinit { client.close() }

    /// `xenforeignmemory_close`.
    public func close() { client.close() }

    /// `xenforeignmemory_map(handle, dom, prot, num, gfns, errs)`: maps
    /// `gfns` of `domain`, writable or read-only. The call succeeds even
    /// when frames fail (their `errors` say why: `-EINVAL` for a hole, MMIO
    /// or a grant mapping, `-ESRCH` for every frame of a domain that does
    /// not exist), as privcmd records each failure and goes on.
    ///
    /// - Throws: ``SimClientError/badArgument(_:)`` for no gfns;
    ///   ``SimClientError/refused(_:)`` if this is not dom0;
    ///   ``SimClientError/connection(_:)`` if the answer lacks its frames or
    ///   the memory file, or the pages cannot be mapped.
    public func map(domain: DomainID, writable: Bool, gfns: [GFN]) throws(SimClientError) -> Mapping {
        guard !gfns.isEmpty else { throw .badArgument("xenforeignmemory_map needs at least one gfn") }
        let (reply, fds) = try client.exchange("foreign.map", [
            "domain": .int(Int64(domain.rawValue)), "writable": .bool(writable),
            "gfns": .array(gfns.map { .string("0x" + String($0.rawValue, radix: 16)) }),
        ])
        defer { WireFrame.closeAll(fds) }
        guard let fd = fds.first, let frames = reply["mfns"]?.array, let codes = reply["errors"]?.array,
              frames.count == gfns.count, codes.count == gfns.count else {
            throw .connection("foreign.map answered without one frame and one error per gfn and the memory descriptor")
        }
        let errors = codes.map { Int32(truncatingIfNeeded: $0.int64 ?? Int64(XenErrno.invalid.code)) }
        let mfns: [MFN?] = zip(frames, errors).map { frame, error in
            guard error == 0, let number = FrameMapping.frames(.array([frame])).first else { return nil }
            return MFN(number)
        }
        let pointer = try FrameMapping.map(fd: fd, frames: mfns, writable: writable)
        return Mapping(domain: domain, gfns: gfns, mfns: mfns, errors: errors, pointer: pointer, writable: writable)
    }

    /// `xenforeignmemory_unmap(handle, addr, num)`: unmaps the pages (the
    /// hypervisor keeps no state for a foreign mapping of a PV dom0 beyond
    /// its page table entries, so nothing is sent).
    public func unmap(_ mapping: Mapping) {
        FrameMapping.unmap(mapping.pointer, pages: mapping.count)
    }
}
