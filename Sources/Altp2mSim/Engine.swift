import Altp2m

/// The altp2m simulator: a state machine that follows the altp2m model
/// (shared/docs/altp2m-model.md, sections 1–9) for one host.
///
/// The engine holds machine memory, the frame allocator, and every domain
/// with its host p2m, views, vCPUs and vm_event ring. It performs no I/O and
/// reads no clock: everything happens in the call that causes it, so runs are
/// reproducible.
///
/// Three kinds of entry point:
/// - hypercalls, as a ``Caller`` makes them: ``hvmAltp2mOp(_:caller:buffers:)``
///   (the raw `HVMOP_altp2m` argument, with the §3.2 dispatch order),
///   ``hvmSetParam(_:index:value:caller:)`` and ``hvmGetParam(_:index:caller:)``;
///   the ``HypervisorControl`` conformance makes the same calls as dom0;
/// - what happens inside a guest: ``guestAccess(_:vcpu:gfn:kind:offset:gla:duringPageWalk:)``
///   (§4), ``vmfunc(_:vcpu:eax:ecx:)`` (§6), ``guestExecute(_:vcpu:)``;
/// - the toolstack and the rest of the hypervisor: domain creation, host p2m
///   changes (populate, drop, map a frame), the monitor ring (§7), and
///   inspectors that show internal state no hypercall can (the view-0 table,
///   reference counts, remapped ranges).
///
/// ## Ownership
/// `Altp2mEngine` is a non-`Sendable` class with a single owner: the test,
/// benchmark or daemon thread that created it. It takes no locks; to use it
/// from another isolation domain, transfer it (`sending`) or wrap it in an
/// actor. It is a class rather than a struct because the memory it manages
/// and the handles other modules hold (a grant module calling it through
/// `HypervisorControl`) must all see one hypervisor.
public final class Altp2mEngine {
    /// The host: CPU features, the `altp2m=` boot option and the Xen release.
    public let host: HostProfile
    /// Machine memory: the contents of every frame.
    public let memory: any MachineMemory

    var frames: FrameAllocator
    /// The machine-to-physical table (`set_gpfn_from_mfn` /
    /// `get_gpfn_from_mfn`): for a RAM frame mapped as RAM in a host p2m, the
    /// gfn it is mapped at. Host writes keep it; reverting a view entry
    /// clears it (`p2m_remove_entry`), which the view-entry inspector shows.
    var m2p: [MFN: GFN] = [:]
    /// Domains by raw id. Ids are small and handed out in increasing order,
    /// so a slot array finds a domain with an index instead of a hash (the
    /// guest access path looks one up on every call); it holds at most one
    /// slot per id below `DOMID_FIRST_RESERVED`.
    private var domainSlots: [Domain?] = []
    private var nextDomainID: UInt16 = 1

    /// The number of vCPUs dom0 is given; it only matters for listings.
    static let controlDomainVCPUs = 1
    /// `HVM_MAX_VCPUS`.
    static let maxVCPUs: UInt32 = 128
    /// `MAX_ALTP2M`, the view count before Xen 4.21, and libxl's default after.
    static let defaultViewCount = 10
    /// `MAX_NR_ALTP2M` = `MAX_EPTP`.
    static let maxViewCount = 512

    /// Creates a host with `memory` as its machine memory and dom0 (a PV
    /// domain with no memory) as domain 0.
    /// - Parameter memory: zero-filled frames (see ``MachineMemory``).
    public init(host: HostProfile = .default, memory: any MachineMemory) {
        self.host = host
        self.memory = memory
        self.frames = FrameAllocator(frameCount: memory.frameCount)
        insertDomain(Domain(id: .controlDomain, name: "Domain-0", kind: .pv, hap: false,
                            nestedVirt: false, mode: .disabled, viewCount: 0,
                            vcpuCount: Self.controlDomainVCPUs))
    }

    /// Creates a host with `frameCount` frames of in-process machine memory.
    /// - Throws: the error of ``InProcessMachineMemory/init(frameCount:)``.
    public convenience init(host: HostProfile = .default, frameCount: Int = 16384) throws(XenErrno) {
        self.init(host: host, memory: try InProcessMachineMemory(frameCount: frameCount))
    }

    // MARK: Domain table

    /// Runs `body` on domain `id` in place.
    /// - Throws: ``XenErrno/notFound`` if there is no such domain, or what `body` throws.
    @inline(__always)
    func withDomain<R>(_ id: DomainID, _ body: (inout Domain) throws(XenErrno) -> R) throws(XenErrno) -> R {
        let slot = Int(id.rawValue)
        guard slot < domainSlots.count else { throw .notFound }
        return try Self.withPresent(&domainSlots[slot], body)
    }

    @inline(__always)
    private static func withPresent<R>(_ slot: inout Domain?,
                                       _ body: (inout Domain) throws(XenErrno) -> R) throws(XenErrno) -> R {
        guard slot != nil else { throw .notFound }
        return try body(&slot!)
    }

    /// A copy of domain `id`, for reading.
    func domain(_ id: DomainID) throws(XenErrno) -> Domain {
        let slot = Int(id.rawValue)
        guard slot < domainSlots.count, let domain = domainSlots[slot] else { throw .notFound }
        return domain
    }

    /// Read-only lookup of the domain table by id, for code in this module
    /// that inspects domains (`engine.domains[id]`). It shares the table's
    /// storage; use it within one statement, as holding it across an engine
    /// mutation makes that mutation copy the table.
    struct DomainLookup {
        fileprivate let slots: [Domain?]

        subscript(id: DomainID) -> Domain? {
            let slot = Int(id.rawValue)
            return slot < slots.count ? slots[slot] : nil
        }
    }

    /// See ``DomainLookup``.
    var domains: DomainLookup { DomainLookup(slots: domainSlots) }

    /// Whether domain `id` exists.
    func domainExists(_ id: DomainID) -> Bool {
        let slot = Int(id.rawValue)
        return slot < domainSlots.count && domainSlots[slot] != nil
    }

    /// Every domain, by id.
    var allDomains: [Domain] { domainSlots.compactMap { $0 } }

    /// Stores a new domain in its slot.
    func insertDomain(_ domain: Domain) {
        let slot = Int(domain.id.rawValue)
        if slot >= domainSlots.count {
            domainSlots.append(contentsOf: repeatElement(nil, count: slot + 1 - domainSlots.count))
        }
        domainSlots[slot] = domain
    }

    /// Removes and returns domain `id`.
    func removeDomain(_ id: DomainID) -> Domain? {
        let slot = Int(id.rawValue)
        guard slot < domainSlots.count else { return nil }
        defer { domainSlots[slot] = nil }
        return domainSlots[slot]
    }

    /// The lowest unused domain id, counting on from the last one given
    /// (Xen also avoids reusing an id at once).
    func allocateDomainID() throws(XenErrno) -> DomainID {
        let limit = DomainID.firstReserved.rawValue
        for _ in 1..<limit {
            let candidate = DomainID(rawValue: nextDomainID)
            nextDomainID = nextDomainID + 1 >= limit ? 1 : nextDomainID + 1
            if !domainExists(candidate) { return candidate }
        }
        throw .noSpace
    }

    // MARK: Frames

    /// Drops one reference to `mfn`, scrubbing the frame if that freed it.
    func releaseFrame(_ mfn: MFN) {
        if frames.release(mfn) {
            memory.zero(mfn)
            m2p[mfn] = nil
        }
    }

    /// `mfn_valid`: whether `mfn` is a frame of machine memory (RAM, with a
    /// page structure), not a device frame mapped as direct MMIO.
    @inline(__always)
    func isRAMFrame(_ mfn: MFN) -> Bool { !mfn.isInvalid && mfn.rawValue < UInt64(frames.totalCount) }

    /// The frame allocator's counts.
    public var frameCounts: FrameCounts {
        FrameCounts(total: frames.totalCount, free: frames.freeCount, allocated: frames.allocatedCount)
    }

    /// The number of references held on `mfn` (host p2m mappings and #VE
    /// registrations); 0 for a free frame.
    public func referenceCount(of mfn: MFN) -> Int { frames.referenceCount(mfn) }

    // MARK: Host p2m writes

    /// The one path for writing a host p2m entry (`ept_set_entry` on the
    /// host): updates frame references, stores the entry and applies the
    /// propagation rule of spec §5.3 to the views. Every host change goes
    /// through here: populate, drop, frame mapping, type and access changes.
    ///
    /// - Parameter new: the new entry; `nil` (or an entry without a frame)
    ///   removes the mapping, which views see as a dropped page.
    func hostWrite(_ domain: inout Domain, at gfn: GFN, _ new: P2MEntry?) {
        let old = domain.host.entries[gfn]
        let oldFrame = old.flatMap { $0.hasValidFrame && isRAMFrame($0.mfn) ? $0.mfn : nil }
        let newFrame = new.flatMap { $0.hasValidFrame && isRAMFrame($0.mfn) ? $0.mfn : nil }
        if let newFrame, newFrame != oldFrame { frames.retain(newFrame) }
        domain.host.entries[gfn] = new
        if let old, let oldFrame, oldFrame != newFrame, !old.type.isSpecial { m2p[oldFrame] = nil }
        if let new, let newFrame, !new.type.isSpecial { m2p[newFrame] = gfn }
        if let oldFrame, oldFrame != newFrame { releaseFrame(oldFrame) }
        domain.propagateHostChange(at: gfn, new: new)
        domain.bumpGeneration()
    }
}
