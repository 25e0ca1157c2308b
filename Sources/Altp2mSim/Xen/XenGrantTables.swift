import Altp2m

/// Xen's grant tables as guest processes reach them: the hypervisor's
/// per-domain grant table and maptrack (Xen 4.17 `xen/common/grant_table.c`,
/// `xen/arch/x86/hvm/grant_table.c`) seen through the two Linux drivers that
/// libxengntshr and libxengnttab open: gntalloc (`/dev/xen/gntalloc`: a
/// process shares pages the guest kernel allocates) and gntdev
/// (`/dev/xen/gntdev`: a process maps another domain's grants).
///
/// A pure state machine: the daemon owns one, serves it to guest processes
/// (one handle per connection and driver), journals what changes it and
/// replays it after a restart. Version 1 grant entries only; only
/// `GNTMAP_host_map` mappings in HVM domains (what gntdev issues for an
/// auto-translated guest).
///
/// Layers, as Xen and Linux split them:
/// - **the granter's kernel** (Linux `drivers/xen/grant-table.c`): references
///   0...7 are reserved (`GNTTAB_NR_RESERVED_ENTRIES`), a freed reference is
///   the next one handed out (`put_free_entry` pushes on the free list's
///   head), the table grows a frame of 512 entries at a time
///   (`gnttab_expand`) up to xl's default `max_grant_frames` of 64;
/// - **the hypervisor**: an entry granted to a domain may be pinned by
///   mappings of that domain (`GTF_reading`, `GTF_writing` while pinned),
///   each mapping a maptrack entry of the mapper and a `p2m_grant_map_*`
///   entry in its host p2m (the engine's, through `Altp2mEngine`);
/// - **the drivers**: shares and mappings belong to the handle that made
///   them; closing it (or the process dying) ends the shares and unmaps the
///   mappings (`gntalloc_release`, `gntdev_release`).
public final class XenGrantTables {
    /// `GNTTAB_NR_RESERVED_ENTRIES`: references the guest kernel keeps for
    /// the console and xenstore; never handed to gntalloc.
    public static let reservedEntries: UInt32 = 8
    /// Version-1 entries per grant frame (4096 / 8).
    public static let entriesPerFrame: UInt32 = 512
    /// xl's default `max_grant_frames`.
    public static let maxFrames: UInt32 = 64
    /// gntalloc's `limit` module parameter: grants one domain may have
    /// through the driver (`-ENOSPC` beyond).
    public static let gntallocLimit = 1024

    /// One grant entry of a domain's table (`grant_entry_v1_t` with its
    /// active entry's pins).
    public struct Entry: Equatable, Sendable {
        /// `domid`: the only domain that may map it.
        public var peer: DomainID
        /// `frame`: the granter's gfn.
        public var gfn: GFN
        /// `GTF_readonly`.
        public var readOnly: Bool
        /// Read-only and writable host mappings pinning it
        /// (`GNTPIN_hstr`/`GNTPIN_hstw`); `GTF_reading` is set while either
        /// is non-zero, `GTF_writing` while the second is.
        public var readPins = 0
        public var writePins = 0
        /// The gntalloc handle that shared it.
        public var handle: UInt32?
        /// gntalloc dropped it while the peer still mapped it:
        /// `gnttab_end_foreign_access_ref` failed and the kernel deferred the
        /// end (`gnttab_add_deferred`) until the last mapping goes.
        public var endDeferred = false

        /// `GTF_reading | GTF_writing` set: a mapping holds it.
        public var inUse: Bool { readPins + writePins > 0 }
    }

    /// One domain's grant table and its kernel's reference allocator.
    struct Table {
        var entries: [UInt32: Entry] = [:]
        /// Grant frames set up so far (`nr_grant_frames`).
        var frames: UInt32 = 1
        /// Freed references, the most recent last (taken first).
        var free: [UInt32] = []
        /// The next never-used reference.
        var nextFresh = XenGrantTables.reservedEntries

        /// `nr_grant_entries`.
        var size: UInt32 { frames * XenGrantTables.entriesPerFrame }
    }

    /// One mapping: a maptrack entry of the mapper plus where gntdev put it.
    public struct Mapping: Equatable, Sendable {
        public var granter: DomainID
        public var ref: UInt32
        /// The granter's frame, mapped at the mapper's gfn.
        public var mfn: MFN
        public var readOnly: Bool
        /// The gntdev handle that mapped it.
        public var handle: UInt32?
    }

    /// Which driver a handle is a file of.
    public enum Driver: String, Sendable {
        /// `/dev/xen/gntalloc` (libxengntshr).
        case gntalloc
        /// `/dev/xen/gntdev` (libxengnttab).
        case gntdev
    }

    /// An open driver file of a process.
    struct Handle {
        let domain: DomainID
        let driver: Driver
        /// The secret that takes the handle back after a daemon restart.
        let key: String
        var attached = true
    }

    /// Grant tables by domain (a domain known here has one).
    private(set) var tables: [DomainID: Table] = [:]
    /// Mappings by mapper, then by the mapper's gfn.
    private(set) var mappings: [DomainID: [GFN: Mapping]] = [:]
    private(set) var handles: [UInt32: Handle] = [:]
    private var nextHandle: UInt32 = 1
    /// Each domain's unpopulated-memory pool (where gntdev maps).
    var pools: [DomainID: UnpopulatedPool] = [:]

    public init() {}

    // MARK: Domains

    /// `grant_table_init`: a new domain's table.
    public func addDomain(_ id: DomainID) {
        tables[id] = Table()
        mappings[id] = [:]
    }

    /// Whether the domain has a grant table.
    public func hasDomain(_ id: DomainID) -> Bool { tables[id] != nil }

    // MARK: Handles

    /// Opens a driver file for a process of `domain`; `id` and `key` come
    /// from the journal on replay.
    public func openHandle(domain: DomainID, driver: Driver, id: UInt32? = nil, key: String) throws(XenErrno) -> UInt32 {
        guard tables[domain] != nil else { throw .notFound }
        let handleID = id ?? nextHandle
        nextHandle = max(nextHandle, handleID &+ 1)
        handles[handleID] = Handle(domain: domain, driver: driver, key: key)
        return handleID
    }

    /// Takes back a handle left without a connection by a daemon restart.
    public func resumeHandle(_ id: UInt32, domain: DomainID, driver: Driver, key: String) throws(XenErrno) {
        guard let handle = handles[id], handle.domain == domain, handle.driver == driver, handle.key == key else {
            throw .noEntry
        }
        guard !handle.attached else { throw .busy }
        handles[id]?.attached = true
    }

    /// Marks every handle as without a connection (after a restart).
    public func detachAllHandles() {
        for id in handles.keys { handles[id]?.attached = false }
    }

    /// The key of a handle, its domain and driver.
    public func key(of handle: UInt32) -> String? { handles[handle]?.key }
    public func domain(of handle: UInt32) -> DomainID? { handles[handle]?.domain }
    public func driver(of handle: UInt32) -> Driver? { handles[handle]?.driver }

    /// The process closed the driver file, or died: `gntalloc_release`
    /// ends every grant it shared (deferred for those still mapped), and
    /// `gntdev_release` unmaps every mapping it made (with the p2m
    /// removal's altp2m consequence).
    public func closeHandle(_ id: UInt32, engine: Altp2mEngine) {
        guard let handle = handles[id] else { return }
        switch handle.driver {
        case .gntalloc:
            let refs = tables[handle.domain]?.entries.filter { $0.value.handle == id }.map(\.key).sorted() ?? []
            _ = try? unshare(handle: id, refs: refs)
        case .gntdev:
            let gfns = mappings[handle.domain]?.filter { $0.value.handle == id }.map(\.key).sorted() ?? []
            _ = try? unmap(handle: id, gfns: gfns, engine: engine)
        }
        handles[id] = nil
    }

    // MARK: Sharing (gntalloc)

    /// `IOCTL_GNTALLOC_ALLOC_GREF` (`xengntshr_share_pages`): the guest
    /// kernel has allocated `gfns` (zeroed, `__GFP_ZERO`) and grants each to
    /// `peer` with `gnttab_grant_foreign_access`.
    ///
    /// - Returns: the references, one per gfn.
    /// - Throws: ``XenErrno/invalid`` for a gntdev handle or no pages;
    ///   ``XenErrno/noSpace`` past gntalloc's limit or when the table cannot
    ///   grow (`gnttab_expand` beyond `max_grant_frames`).
    public func share(handle: UInt32, peer: DomainID, gfns: [GFN], readOnly: Bool) throws(XenErrno) -> [UInt32] {
        guard let owner = handles[handle], owner.driver == .gntalloc, !gfns.isEmpty else { throw .invalid }
        guard var table = tables[owner.domain] else { throw .notFound }
        let held = table.entries.values.filter { $0.handle != nil }.count
        guard held + gfns.count <= Self.gntallocLimit else { throw .noSpace }
        var refs: [UInt32] = []
        for gfn in gfns {
            // gnttab_claim_grant_reference: the free list's head, else a
            // fresh reference, growing the table a frame at a time.
            let ref: UInt32
            if let reused = table.free.popLast() {
                ref = reused
            } else {
                ref = table.nextFresh
                while ref >= table.size {
                    guard table.frames < Self.maxFrames else { throw .noSpace }
                    table.frames += 1
                }
                table.nextFresh += 1
            }
            table.entries[ref] = Entry(peer: peer, gfn: gfn, readOnly: readOnly, handle: handle)
            refs.append(ref)
        }
        tables[owner.domain] = table
        return refs
    }

    /// `IOCTL_GNTALLOC_DEALLOC_GREF` (`xengntshr_unshare`): for each
    /// reference this handle shared, `__del_gref` ends foreign access.
    /// `gnttab_end_foreign_access_ref` fails (returns false) while the
    /// entry has `GTF_reading` or `GTF_writing`, i.e. while the peer maps
    /// it: the kernel then defers the end (`gnttab_add_deferred`) and keeps
    /// the page, and the entry stays granted until the last mapping goes
    /// (Linux retries from a timer; the simulator ends it at that unmap).
    /// The ioctl itself succeeds either way.
    ///
    /// - Returns: the references ended now and those deferred.
    /// - Throws: ``XenErrno/invalid`` for a reference this handle did not
    ///   share (gntalloc finds no such gref: `-EINVAL`), before ending any.
    public func unshare(handle: UInt32, refs: [UInt32]) throws(XenErrno) -> (ended: [UInt32], deferred: [UInt32]) {
        guard let owner = handles[handle], owner.driver == .gntalloc else { throw .invalid }
        let domain = owner.domain
        for ref in refs {
            guard let entry = tables[domain]?.entries[ref], entry.handle == handle, !entry.endDeferred else {
                throw .invalid
            }
        }
        var ended: [UInt32] = []
        var deferred: [UInt32] = []
        for ref in refs {
            if tables[domain]!.entries[ref]!.inUse {
                tables[domain]!.entries[ref]!.endDeferred = true
                tables[domain]!.entries[ref]!.handle = nil
                deferred.append(ref)
            } else {
                endAccess(domain, ref)
                ended.append(ref)
            }
        }
        return (ended, deferred)
    }

    /// Ends a grant: the entry goes and its reference returns to the free
    /// list's head (`gnttab_free_grant_reference`).
    func endAccess(_ domain: DomainID, _ ref: UInt32) {
        guard tables[domain]?.entries.removeValue(forKey: ref) != nil else { return }
        tables[domain]!.free.append(ref)
    }

    /// The gfns of the domain's pages that are granted now (the guest
    /// kernel's balloon driver never gives those back).
    public func grantedGFNs(of domain: DomainID) -> Set<GFN> {
        Set(tables[domain]?.entries.values.map(\.gfn) ?? [])
    }

    // MARK: Inspection

    /// A domain's grant entries, lowest reference first.
    public func entries(of domain: DomainID) throws(XenErrno) -> [(ref: UInt32, entry: Entry)] {
        guard let table = tables[domain] else { throw .notFound }
        return table.entries.keys.sorted().map { ($0, table.entries[$0]!) }
    }

    /// A domain's grant mappings, lowest gfn first.
    public func mappings(of domain: DomainID) throws(XenErrno) -> [(gfn: GFN, mapping: Mapping)] {
        guard let table = mappings[domain] else { throw .notFound }
        return table.keys.sorted().map { ($0, table[$0]!) }
    }

    /// The entry behind a reference, for the map path.
    func entry(_ domain: DomainID, _ ref: UInt32) -> Entry? { tables[domain]?.entries[ref] }

    /// `nr_grant_entries` of a domain's table.
    func tableSize(_ domain: DomainID) -> UInt32? { tables[domain]?.size }

    func setEntry(_ domain: DomainID, _ ref: UInt32, _ entry: Entry) { tables[domain]?.entries[ref] = entry }

    func setMapping(_ mapper: DomainID, _ gfn: GFN, _ mapping: Mapping?) { mappings[mapper]?[gfn] = mapping }

    func handleInfo(_ id: UInt32) -> Handle? { handles[id] }

    /// Drops the domain's table and handles (after its teardown).
    func forgetDomain(_ id: DomainID) {
        tables[id] = nil
        mappings[id] = nil
        pools[id] = nil
        for (handleID, handle) in handles where handle.domain == id { handles[handleID] = nil }
    }
}
