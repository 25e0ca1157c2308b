import Altp2m

/// A gntdev handle on the simulator: what `xengnttab_open` gives a process
/// of a guest, with libxengnttab's calls as methods.
///
/// Mapping follows gntdev in an HVM guest: the kernel takes unpopulated
/// gfns (docs/SIMULATOR.md, "Grant tables") and maps each grant there with
/// `GNTTABOP_map_grant_ref`; all references map or none do. A failure is
/// ``SimClientError/hypervisor(_:message:)`` with `EINVAL` (gntdev's answer),
/// and ``lastStatuses`` keeps each reference's `GNTST_*` status.
public final class SimGrantTable {
    /// One ``mapGrantRefs(domain:refs:writable:)``.
    public struct Mapping {
        /// Where the grants are mapped in this domain.
        public let gfns: [GFN]
        /// The granter's frames.
        public let mfns: [MFN]
        /// The pages, mapped from the machine-memory file (read-only unless
        /// mapped writable), in order.
        public let pointer: UnsafeMutableRawPointer
        public var count: Int { gfns.count }
    }

    let client: SimClient
    /// The daemon's id of this handle and its key (set by the first map).
    public private(set) var handle: UInt32?
    public private(set) var key: String?
    /// The statuses of the last ``mapGrantRefs(domain:refs:writable:)``, one per reference.
    public private(set) var lastStatuses: [GrantStatus] = []

    /// `xengnttab_open`, as the domain whose `token` is given.
    public init(stateDirectory: StateDirectory = .resolve(), token: String) throws(SimClientError) {
        client = try SimClient(stateDirectory: stateDirectory, token: token)
    }

    /// Takes back a handle left without a connection by a daemon restart.
    public static func resume(stateDirectory: StateDirectory = .resolve(), token: String,
                              handle: UInt32, key: String) throws(SimClientError) -> SimGrantTable {
        let table = try SimGrantTable(stateDirectory: stateDirectory, token: token)
        let (_, fds) = try table.client.exchange("gnttab.resume", ["handle": .int(Int64(handle)), "key": .string(key)])
        WireFrame.closeAll(fds)
        table.handle = handle
        table.key = key
        return table
    }

    deinit { client.close() }

    /// `xengnttab_close`: unmaps every mapping (gntdev's release).
    public func close() { client.close() }

    /// `xengnttab_map_grant_refs(handle, count, domids, refs, prot)` with one
    /// granting domain: maps `refs` of `domain`, writable or read-only.
    public func mapGrantRefs(domain: DomainID, refs: [UInt32], writable: Bool) throws(SimClientError) -> Mapping {
        let (response, fds) = try client.exchangeKeepingErrors("gnttab.map", [
            "remote": .int(Int64(domain.rawValue)), "refs": .array(refs.map { .int(Int64($0)) }),
            "writable": .bool(writable),
        ])
        defer { WireFrame.closeAll(fds) }
        lastStatuses = (response["statuses"]?.array ?? []).compactMap { $0.string.flatMap(GrantStatus.init(name:)) }
        guard response["ok"]?.bool == true else { throw SimClientError(response: response) }
        if let id = response["handle"]?.int64 { handle = UInt32(truncatingIfNeeded: id) }
        if let text = response["key"]?.string { key = text }
        let gfns = FrameMapping.frames(response["gfns"]).map { GFN($0) }
        let mfns = FrameMapping.frames(response["mfns"]).map { MFN($0) }
        guard let fd = fds.first, gfns.count == refs.count, mfns.count == refs.count else {
            throw .connection("gnttab.map answered without its gfns, frames and memory descriptor")
        }
        let pointer = try FrameMapping.map(fd: fd, mfns: mfns, writable: writable)
        return Mapping(gfns: gfns, mfns: mfns, pointer: pointer)
    }

    /// `xengnttab_unmap(handle, start_address, count)`: unmaps the pages and
    /// the grants (the p2m entries go, with their altp2m consequence).
    public func unmap(_ mapping: Mapping) throws(SimClientError) {
        FrameMapping.unmap(mapping.pointer, pages: mapping.count)
        _ = try client.call("gnttab.unmap", ["gfns": .array(mapping.gfns.map { .string("0x" + String($0.rawValue, radix: 16)) })])
    }
}
