import Altp2m

/// A gntalloc handle on the simulator: what `xengntshr_open` gives a
/// process of a guest, with libxengntshr's calls as methods (each names the
/// C function it mirrors).
///
/// The handle is its own connection to the daemon. The guest kernel
/// allocates the pages (zeroed) from the domain's RAM and grants them
/// (docs/SIMULATOR.md, "Grant tables"); the shares belong to this handle,
/// and closing it, or the process dying, ends them (deferred for pages the
/// peer still maps). Hypervisor errors are ``SimClientError/hypervisor(_:message:)``.
public final class SimGrantShare {
    /// Pages shared by one ``sharePages(with:count:writable:)``.
    public struct Share {
        /// The grant references, one per page.
        public let refs: [UInt32]
        /// The pages in the sharing domain.
        public let gfns: [GFN]
        /// Their machine frames.
        public let mfns: [MFN]
        /// The pages, mapped read-write from the machine-memory file, in order.
        public let pointer: UnsafeMutableRawPointer
        public var count: Int { refs.count }
    }

    let client: SimClient
    /// The daemon's id of this handle and its key (set by the first share),
    /// for ``resume(stateDirectory:token:handle:key:)`` after a restart.
    public private(set) var handle: UInt32?
    public private(set) var key: String?

    /// `xengntshr_open`, as the domain whose `token` is given.
    public init(stateDirectory: StateDirectory = .resolve(), token: String) throws(SimClientError) {
        client = try SimClient(stateDirectory: stateDirectory, token: token)
    }

    /// Takes back a handle left without a connection by a daemon restart.
    public static func resume(stateDirectory: StateDirectory = .resolve(), token: String,
                              handle: UInt32, key: String) throws(SimClientError) -> SimGrantShare {
        let share = try SimGrantShare(stateDirectory: stateDirectory, token: token)
        let (_, fds) = try share.client.exchange("gntshr.resume", ["handle": .int(Int64(handle)), "key": .string(key)])
        WireFrame.closeAll(fds)
        share.handle = handle
        share.key = key
        return share
    }

    deinit { client.close() }

    /// `xengntshr_close`: ends every share (gntalloc's release).
    public func close() { client.close() }

    /// `xengntshr_share_pages(handle, domid, count, refs, writable)`: the
    /// guest kernel allocates `count` zeroed pages and grants them to
    /// `domain`, read-only unless `writable`.
    public func sharePages(with domain: DomainID, count: Int, writable: Bool) throws(SimClientError) -> Share {
        let (response, fds) = try client.exchange("gntshr.share", ["peer": .int(Int64(domain.rawValue)),
                                                                   "count": .int(Int64(count)),
                                                                   "writable": .bool(writable)])
        defer { WireFrame.closeAll(fds) }
        note(response)
        let refs = (response["refs"]?.array ?? []).compactMap { $0.int64.map { UInt32(truncatingIfNeeded: $0) } }
        let gfns = FrameMapping.frames(response["gfns"]).map { GFN($0) }
        let mfns = FrameMapping.frames(response["mfns"]).map { MFN($0) }
        guard let fd = fds.first, refs.count == count, mfns.count == count else {
            throw .connection("gntshr.share answered without its references, frames and memory descriptor")
        }
        let pointer = try FrameMapping.map(fd: fd, mfns: mfns, writable: true)
        return Share(refs: refs, gfns: gfns, mfns: mfns, pointer: pointer)
    }

    /// `xengntshr_unshare(handle, start_address, count)`: unmaps the pages
    /// and ends the grants. A grant the peer still maps is not ended now:
    /// Linux's `gnttab_end_foreign_access_ref` fails while `GTF_reading` /
    /// `GTF_writing` are set, so the kernel defers it until the peer
    /// unmaps; those references are returned as `deferred`.
    @discardableResult
    public func unshare(_ share: Share) throws(SimClientError) -> (ended: [UInt32], deferred: [UInt32]) {
        FrameMapping.unmap(share.pointer, pages: share.count)
        return try unshare(refs: share.refs)
    }

    /// `IOCTL_GNTALLOC_DEALLOC_GREF` for references of this handle.
    @discardableResult
    public func unshare(refs: [UInt32]) throws(SimClientError) -> (ended: [UInt32], deferred: [UInt32]) {
        let response = try client.call("gntshr.unshare", ["refs": .array(refs.map { .int(Int64($0)) })])
        func list(_ key: String) -> [UInt32] {
            (response[key]?.array ?? []).compactMap { $0.int64.map { UInt32(truncatingIfNeeded: $0) } }
        }
        return (list("ended"), list("deferred"))
    }

    private func note(_ response: JSONValue) {
        if let id = response["handle"]?.int64 { handle = UInt32(truncatingIfNeeded: id) }
        if let text = response["key"]?.string { key = text }
    }
}
