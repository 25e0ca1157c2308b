import Altp2m
import CPlatform

/// ``ChannelHost`` over an in-process ``Altp2mEngine``: what the grant module
/// needs from the simulator, done with the engine's own operations so that
/// every change follows the altp2m model (host writes propagate, frames are
/// reference-counted and scrubbed when freed).
///
/// Guest-physical layout it hands out (above the guests' RAM, which must lie
/// below gfn `0xF0000`, 3.75 GiB). Keeping each kind in its own region keeps
/// a channel view's remapped range (which spans every backing gfn ever
/// remapped and never shrinks, spec §5.1) clear of windows, #VE pages and RAM,
/// so only dropping backing gfns can reset the view (§5.3):
///
/// | Region | gfns | Use |
/// |---|---|---|
/// | #VE info pages | `0xF0000..<0x100000` | one page per vCPU |
/// | windows | `0x100000..<0x200000` | the gfns agents address the ring through |
/// | backing | `0x200000..<0x300000` | where each domain's host p2m maps the shared frames |
///
/// The descriptor store models the part of xenstore the grant module uses:
/// one entry per path, readable by the control domain and the one domain
/// named in its permissions.
///
/// Single owner, like the engine.
public final class EngineChannelHost: ChannelHost {
    /// The simulator this host drives.
    public let engine: Altp2mEngine

    /// gfns for #VE information pages.
    public static let veInfoRegion = GFN(0xF_0000)..<GFN(0x10_0000)
    /// gfns for channel windows.
    public static let windowRegion = GFN(0x10_0000)..<GFN(0x20_0000)
    /// gfns where shared frames are mapped.
    public static let backingRegion = GFN(0x20_0000)..<GFN(0x30_0000)

    /// One entry of the descriptor store.
    public struct StoreEntry: Hashable, Sendable {
        /// The published bytes.
        public var value: [UInt8]
        /// The one guest domain allowed to read it (besides dom0).
        public var reader: DomainID
    }

    private var store: [String: StoreEntry] = [:]
    private var ports: [DomainID: Set<UInt32>] = [:]

    /// Wraps `engine`.
    public init(engine: Altp2mEngine) {
        self.engine = engine
    }

    // MARK: Descriptor store (xenstore model)

    /// The store path of a domain's descriptor: the xenstore path the Xen
    /// backend uses.
    public static func descriptorPath(for domain: DomainID, name: String) -> String {
        "/local/domain/\(domain.rawValue)/data/secure-channel/\(name)"
    }

    /// Every entry, by path (for inspection and tests).
    public var storeEntries: [String: StoreEntry] { store }

    /// Reads a descriptor as `reader` would.
    /// - Throws: ``XenErrno/noEntry`` if nothing is published there;
    ///   ``XenErrno/notPermitted`` if `reader` is neither dom0 nor the domain
    ///   the entry is for.
    public func readDescriptor(for domain: DomainID, name: String, as reader: DomainID) throws(XenErrno) -> [UInt8] {
        // A name the store would never have taken is not in it.
        guard ChannelDescriptor.isValidName(name) else { throw .noEntry }
        guard let entry = store[Self.descriptorPath(for: domain, name: name)] else { throw .noEntry }
        guard reader == .controlDomain || reader == entry.reader else { throw .notPermitted }
        return entry.value
    }

    /// The names of the descriptors published for `domain`, sorted.
    public func descriptorNames(for domain: DomainID) -> [String] {
        let prefix = Self.descriptorPath(for: domain, name: "")
        return store.keys.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }.sorted()
    }

    public func publishDescriptor(_ envelope: [UInt8], for domain: DomainID, name: String) throws(XenErrno) {
        // The names xenstore takes, so that what works here works on Xen.
        guard ChannelDescriptor.isValidName(name) else { throw .invalid }
        guard domain != .controlDomain, !domain.isReserved else { throw .invalid }
        _ = try engine.domainStatus(domain)
        store[Self.descriptorPath(for: domain, name: name)] = StoreEntry(value: envelope, reader: domain)
    }

    public func revokeDescriptor(for domain: DomainID, name: String) throws(XenErrno) {
        store[Self.descriptorPath(for: domain, name: name)] = nil
    }

    // MARK: Notification ports

    /// The ports currently allocated, per domain.
    public var allocatedPorts: [DomainID: Set<UInt32>] { ports.filter { !$0.value.isEmpty } }

    public func allocateNotificationPort(_ domain: DomainID, remote: DomainID) throws(XenErrno) -> UInt32 {
        _ = try engine.domainStatus(domain)
        _ = try engine.domainStatus(remote)
        var taken = ports[domain, default: []]
        // Port 0 is never valid on Xen; hand out the lowest free one above it.
        guard let port = (UInt32(1)...4096).first(where: { !taken.contains($0) }) else { throw .noSpace }
        taken.insert(port)
        ports[domain] = taken
        return port
    }

    public func releaseNotificationPort(_ domain: DomainID, port: UInt32) throws(XenErrno) {
        guard ports[domain]?.remove(port) != nil else { throw .invalid }
    }

    // MARK: Domain facts and controls

    public var supportsVirtualizationExceptions: Bool { engine.host.cpu.hasVE }

    public var xenVersion: XenVersion { engine.host.xen }

    public func vcpuCount(_ domain: DomainID) throws(XenErrno) -> UInt32 {
        guard let state = engine.domains[domain] else { throw .notFound }
        return UInt32(state.vcpus.count)
    }

    public func activeViews(_ domain: DomainID) throws(XenErrno) -> [ActiveView] {
        guard let state = engine.domains[domain] else { throw .notFound }
        guard state.isActive else { return [] }
        return state.views.indices.compactMap { index in
            state.views[index].isActive
                ? ActiveView(view: ViewID(UInt16(index)), isVisible: state.views[index].isVisible) : nil
        }
    }

    public func accessRequired(_ domain: DomainID) throws(XenErrno) -> Bool? {
        try engine.domainStatus(domain).accessRequired
    }

    public func logDirtyMode(_ domain: DomainID) throws(XenErrno) -> Bool? {
        try engine.domainStatus(domain).logDirty
    }

    public func setAccessRequired(_ domain: DomainID, _ required: Bool) throws(XenErrno) {
        try engine.setAccessRequired(domain, required)
    }

    public func pauseDomain(_ domain: DomainID) throws(XenErrno) { try engine.pauseDomain(domain) }

    public func unpauseDomain(_ domain: DomainID) throws(XenErrno) { try engine.unpauseDomain(domain) }

    // MARK: Guest-physical space

    /// The first gfn of `count` consecutive holes of `domain` inside `region`.
    private func findHole(_ domain: DomainID, count: Int, in region: Range<GFN>) throws(XenErrno) -> GFN {
        guard let state = engine.domains[domain] else { throw .notFound }
        guard count >= 1 else { throw .invalid }
        var start = region.lowerBound
        while start.distance(to: region.upperBound) >= count {
            var clear = true
            for offset in 0..<count where state.host.entries[start.advanced(by: offset)] != nil {
                start = start.advanced(by: offset + 1)
                clear = false
                break
            }
            if clear { return start }
        }
        throw .noSpace
    }

    /// Populates `count` consecutive gfns in a region with fresh frames;
    /// all or nothing.
    private func populateRun(_ domain: DomainID, count: Int, in region: Range<GFN>) throws(XenErrno) -> GFN {
        let first = try findHole(domain, count: count, in: region)
        guard engine.frames.freeCount >= count else { throw .noMemory }
        for offset in 0..<count {
            do {
                try engine.populate(domain, gfn: first.advanced(by: offset))
            } catch {
                for done in 0..<offset { try? engine.dropPage(domain, gfn: first.advanced(by: done)) }
                throw error
            }
        }
        return first
    }

    public func reserveWindow(_ domain: DomainID, pageCount: Int) throws(XenErrno) -> GFN {
        try populateRun(domain, count: pageCount, in: Self.windowRegion)
    }

    public func releaseWindow(_ domain: DomainID, firstGFN: GFN, pageCount: Int) throws(XenErrno) {
        try dropAll(domain, (0..<pageCount).map { firstGFN.advanced(by: $0) })
    }

    public func reserveVEInfoPage(_ domain: DomainID) throws(XenErrno) -> GFN {
        try populateRun(domain, count: 1, in: Self.veInfoRegion)
    }

    public func releaseVEInfoPage(_ domain: DomainID, gfn: GFN) throws(XenErrno) {
        try dropAll(domain, [gfn])
    }

    /// Drops every gfn that still maps a frame, carrying on past failures
    /// and reporting the first.
    private func dropAll(_ domain: DomainID, _ gfns: [GFN]) throws(XenErrno) {
        guard engine.domains[domain] != nil else { throw .notFound }
        var first: XenErrno?
        for gfn in gfns {
            do { try engine.dropPage(domain, gfn: gfn) } catch { first = first ?? error }
        }
        if let first { throw first }
    }

    // MARK: Shared frames

    public func obtainSharedFrames(between first: DomainID, and second: DomainID,
                                   count: Int) throws(XenErrno) -> SharedFrames {
        guard first != second, count >= 1 else { throw .invalid }
        let firstBase = try findHole(first, count: count, in: Self.backingRegion)
        let secondBase = try findHole(second, count: count, in: Self.backingRegion)
        guard engine.frames.freeCount >= count else { throw .noMemory }
        let frames = SharedFrames(first: first, second: second,
                                  firstGFNs: (0..<count).map { firstBase.advanced(by: $0) },
                                  secondGFNs: (0..<count).map { secondBase.advanced(by: $0) })
        for index in 0..<count {
            guard let mfn = engine.frames.allocate() else {
                undoMapping(frames, upTo: index)
                throw .noMemory
            }
            do {
                try engine.mapFrame(mfn, into: first, at: frames.firstGFNs[index])
                try engine.mapFrame(mfn, into: second, at: frames.secondGFNs[index])
            } catch {
                try? engine.dropPage(first, gfn: frames.firstGFNs[index])
                engine.releaseFrame(mfn)
                undoMapping(frames, upTo: index)
                throw error
            }
            engine.releaseFrame(mfn)   // the two host entries now hold the references
        }
        return frames
    }

    private func undoMapping(_ frames: SharedFrames, upTo end: Int) {
        for index in 0..<end {
            try? engine.dropPage(frames.first, gfn: frames.firstGFNs[index])
            try? engine.dropPage(frames.second, gfn: frames.secondGFNs[index])
        }
    }

    public func releaseSharedFrames(_ frames: SharedFrames) throws(XenErrno) {
        // Scrub first, through whichever domain still maps each frame.
        for index in 0..<frames.count {
            let mapped = hostFrame(frames.first, frames.firstGFNs[index]) ?? hostFrame(frames.second, frames.secondGFNs[index])
            if let mfn = mapped { engine.memory.zero(mfn) }
        }
        var firstError: XenErrno?
        for (domain, gfns) in [(frames.first, frames.firstGFNs), (frames.second, frames.secondGFNs)]
        where engine.domains[domain] != nil {
            for gfn in gfns where hostFrame(domain, gfn) != nil {
                do { try engine.dropPage(domain, gfn: gfn) } catch { firstError = firstError ?? error }
            }
        }
        if let firstError { throw firstError }
    }

    /// The frame a domain's host p2m maps at `gfn`, if any.
    private func hostFrame(_ domain: DomainID, _ gfn: GFN) -> MFN? {
        engine.domains[domain]?.host.validEntry(gfn)?.mfn
    }

    public func writeGuestMemory(_ domain: DomainID, gfn: GFN, offset: Int, bytes: [UInt8]) throws(XenErrno) {
        guard engine.domains[domain] != nil else { throw .notFound }
        guard offset >= 0, offset + bytes.count <= MachineFrame.size else { throw .invalid }
        guard let mfn = hostFrame(domain, gfn) else { throw .invalid }
        engine.memory.write(mfn, offset: offset, bytes: bytes)
    }

    public func wake(_ domain: DomainID, gfn: GFN, offset: Int, port: UInt32) {
        guard offset >= 0, offset + 4 <= MachineFrame.size, offset % 4 == 0,
              let mfn = hostFrame(domain, gfn) else { return }
        let word = (engine.memory.frame(mfn).baseAddress! + offset).assumingMemoryBound(to: UInt32.self)
        _ = cplatform_futex_wake(word, Int32.max)
    }

    // MARK: HypervisorControl (forwarded to the engine)

    public func listDomains() throws(XenErrno) -> [DomainInfo] { try engine.listDomains() }
    public func getAltp2mParam(_ domain: DomainID) throws(XenErrno) -> Altp2mMode { try engine.getAltp2mParam(domain) }
    public func setAltp2mParam(_ domain: DomainID, mode: Altp2mMode) throws(XenErrno) {
        try engine.setAltp2mParam(domain, mode: mode)
    }
    public func getDomainState(_ domain: DomainID) throws(XenErrno) -> Bool { try engine.getDomainState(domain) }
    public func setDomainState(_ domain: DomainID, active: Bool) throws(XenErrno) {
        try engine.setDomainState(domain, active: active)
    }
    public func vcpuEnableNotify(_ domain: DomainID, vcpu: VCPUID, gfn: GFN) throws(XenErrno) {
        try engine.vcpuEnableNotify(domain, vcpu: vcpu, gfn: gfn)
    }
    public func vcpuDisableNotify(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) {
        try engine.vcpuDisableNotify(domain, vcpu: vcpu)
    }
    public func createView(_ domain: DomainID, defaultAccess: MemAccess) throws(XenErrno) -> ViewID {
        try engine.createView(domain, defaultAccess: defaultAccess)
    }
    public func destroyView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        try engine.destroyView(domain, view: view)
    }
    public func switchToView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        try engine.switchToView(domain, view: view)
    }
    public func setMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN, access: MemAccess) throws(XenErrno) {
        try engine.setMemAccess(domain, view: view, gfn: gfn, access: access)
    }
    public func setMemAccessMulti(_ domain: DomainID, view: ViewID,
                                  entries: [(gfn: GFN, access: MemAccess)]) throws(XenErrno) {
        try engine.setMemAccessMulti(domain, view: view, entries: entries)
    }
    public func getMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> MemAccess {
        try engine.getMemAccess(domain, view: view, gfn: gfn)
    }
    public func changeGFN(_ domain: DomainID, view: ViewID, oldGFN: GFN, newGFN: GFN) throws(XenErrno) {
        try engine.changeGFN(domain, view: view, oldGFN: oldGFN, newGFN: newGFN)
    }
    public func setSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN, suppress: Bool) throws(XenErrno) {
        try engine.setSuppressVE(domain, view: view, gfn: gfn, suppress: suppress)
    }
    public func setSuppressVEMulti(_ domain: DomainID, view: ViewID, firstGFN: GFN, lastGFN: GFN,
                                   suppress: Bool) throws(XenErrno) -> SuppressVEMultiResult {
        try engine.setSuppressVEMulti(domain, view: view, firstGFN: firstGFN, lastGFN: lastGFN, suppress: suppress)
    }
    public func getSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> Bool {
        try engine.getSuppressVE(domain, view: view, gfn: gfn)
    }
    public func getVCPUView(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) -> ViewID {
        try engine.getVCPUView(domain, vcpu: vcpu)
    }
    public func setVisibility(_ domain: DomainID, view: ViewID, visible: Bool) throws(XenErrno) {
        try engine.setVisibility(domain, view: view, visible: visible)
    }
    public func decreaseReservation(_ domain: DomainID, gfns: [GFN]) throws(XenErrno) {
        try engine.decreaseReservation(domain, gfns: gfns)
    }
}
