import Altp2m
import XenGuest
import XenInterface

/// ``ChannelHost``: domain controls, the window's guest-physical space, and
/// descriptors and ports in xenstore.
extension XenControl {
    // MARK: Domain controls

    public func vcpuCount(_ domain: DomainID) throws(XenErrno) -> UInt32 {
        try info(domain).vcpuCount
    }

    public func activeViews(_ domain: DomainID) throws(XenErrno) -> [ActiveView] {
        guard try getDomainState(domain) else { return [] }
        var found = [ActiveView(view: .hostOrView0, isVisible: nil)]
        for index in UInt16(1)..<Self.viewSlots {
            // get_mem_access(view, INVALID_GFN) answers only for active views
            // (p2m_get_mem_access: altp2m_idx checked, then the gfn skipped).
            do {
                _ = try xc.altp2mGetMemAccess(domain, view: index, gfn: UInt64.max)
                found.append(ActiveView(view: ViewID(index), isVisible: nil))
            } catch {
                guard error == .invalid else { throw error }
            }
        }
        return found
    }

    public func setAccessRequired(_ domain: DomainID, _ required: Bool) throws(XenErrno) {
        try xc.domainSetAccessRequired(domain, required: required)
    }

    public func pauseDomain(_ domain: DomainID) throws(XenErrno) {
        try xc.domainPause(domain)
    }

    public func unpauseDomain(_ domain: DomainID) throws(XenErrno) {
        try xc.domainUnpause(domain)
    }

    // MARK: Guest-physical space

    /// `count` consecutive gfns with no host p2m entry inside `region`
    /// (`get_mem_access` on the host answers `ESRCH` for a hole).
    private func findHole(_ domain: DomainID, count: Int, in region: Range<GFN>) throws(XenErrno) -> GFN {
        var start = region.lowerBound
        search: while start.distance(to: region.upperBound) >= count {
            for offset in 0..<count {
                let gfn = start.advanced(by: offset)
                do {
                    _ = try xc.altp2mGetMemAccess(domain, view: 0, gfn: gfn.rawValue)
                    start = gfn.advanced(by: 1)
                    continue search
                } catch {
                    guard error == .notFound else { throw error }
                }
            }
            return start
        }
        throw .noSpace
    }

    /// Raises the domain's allowance by `count` pages and populates the gfns
    /// with fresh RAM (`XENMEM_populate_physmap` on its behalf); the
    /// allowance goes back if populating fails.
    private func populate(_ domain: DomainID, first: GFN, count: Int) throws(XenErrno) {
        let entry = try info(domain)
        try xc.domainSetMaxMem(domain, kibibytes: (entry.maximumPages + UInt64(count)) * 4)
        do {
            try xc.domainPopulatePhysmapExact(domain, gfns: (0..<count).map { first.advanced(by: $0).rawValue })
        } catch {
            try? xc.domainSetMaxMem(domain, kibibytes: entry.maximumPages * 4)
            throw error
        }
    }

    private func unpopulate(_ domain: DomainID, first: GFN, count: Int) throws(XenErrno) {
        try decreaseReservation(domain, gfns: (0..<count).map { first.advanced(by: $0) })
        let entry = try info(domain)
        try xc.domainSetMaxMem(domain, kibibytes: (entry.maximumPages - min(entry.maximumPages, UInt64(count))) * 4)
    }

    /// The window and #VE regions for `domain`: the defaults, or, when the
    /// guest's RAM may reach them, the same layout moved above that RAM.
    ///
    /// libxl lays out an HVM guest's memory map from its `maxmem`
    /// (`libxl__arch_domain_construct_memmap`, Xen 4.17): RAM below the
    /// MMIO hole, the rest from 4 GiB up, so no RAM lies above 4 GiB +
    /// `memory/static-max`, the node `xl mem-max` rewrites. A region below
    /// that could overlay pages the guest's balloon driver populates later;
    /// the host p2m cannot show them while they are ballooned out.
    func regions(for domain: DomainID) throws(XenErrno) -> (window: Range<GFN>, veInfo: Range<GFN>) {
        let node = "/local/domain/\(domain.rawValue)/memory/static-max"
        let maxKiB: UInt64
        if let text = try store.readIfPresent(node), let kib = UInt64(String(decoding: text, as: UTF8.self)) {
            maxKiB = kib
        } else {
            maxKiB = try info(domain).maximumPages * 4
        }
        let gib: UInt64 = 1 << 18   // gfns per GiB
        let ceiling = ((4 * gib + maxKiB / 4) + gib - 1) / gib * gib
        guard windowRegion.lowerBound.rawValue < ceiling else { return (windowRegion, veInfoRegion) }
        let shift = ceiling - windowRegion.lowerBound.rawValue
        func moved(_ region: Range<GFN>) -> Range<GFN> {
            GFN(region.lowerBound.rawValue + shift)..<GFN(region.upperBound.rawValue + shift)
        }
        return (moved(windowRegion), moved(veInfoRegion))
    }

    public func reserveWindow(_ domain: DomainID, pageCount: Int) throws(XenErrno) -> GFN {
        let first = try findHole(domain, count: pageCount, in: try regions(for: domain).window)
        try populate(domain, first: first, count: pageCount)
        return first
    }

    public func releaseWindow(_ domain: DomainID, firstGFN: GFN, pageCount: Int) throws(XenErrno) {
        try unpopulate(domain, first: firstGFN, count: pageCount)
    }

    public func reserveVEInfoPage(_ domain: DomainID) throws(XenErrno) -> GFN {
        let gfn = try findHole(domain, count: 1, in: try regions(for: domain).veInfo)
        try populate(domain, first: gfn, count: 1)
        return gfn
    }

    public func releaseVEInfoPage(_ domain: DomainID, gfn: GFN) throws(XenErrno) {
        try unpopulate(domain, first: gfn, count: 1)
    }

    public func writeGuestMemory(_ domain: DomainID, gfn: GFN, offset: Int, bytes: [UInt8]) throws(XenErrno) {
        guard offset >= 0, offset + bytes.count <= 4096 else { throw .invalid }
        let (page, errors) = try foreign.map(domain, writable: true, gfns: [gfn.rawValue])
        defer { try? foreign.unmap(page, pageCount: 1) }
        if let code = errors.first, let error = XenErrno(code: code) { throw error }
        bytes.withUnsafeBytes { (page + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    // MARK: Descriptors and ports

    public func publishDescriptor(_ envelope: [UInt8], for domain: DomainID, name: String) throws(XenErrno) {
        // The same rule as the simulator's store: a path component xenstored takes.
        guard ChannelDescriptor.isValidName(name) else { throw .invalid }
        try storeWritePrivate("\(XenStoreLayout.descriptorDirectory(domain))/\(name)", HexDigits.encode(envelope), reader: domain)
    }

    public func revokeDescriptor(for domain: DomainID, name: String) throws(XenErrno) {
        // Never a path outside the descriptor directory.
        guard ChannelDescriptor.isValidName(name) else { throw .invalid }
        try store.removeIfPresent("\(XenStoreLayout.descriptorDirectory(domain))/\(name)")
    }

    /// The granting agent's unbound port, reported with the frames it shared
    /// last for `remote` (a port dom0 allocated could not be received by the
    /// agent's user space).
    public func allocateNotificationPort(_ domain: DomainID, remote: DomainID) throws(XenErrno) -> UInt32 {
        guard let setup = lastSetup, setup.granting == domain, setup.peer == remote else { throw .noEntry }
        let directory = XenStoreLayout.setupDirectory(domain, peer: remote, setup: setup.name)
        guard let reported = try store.readIfPresent("\(directory)/port").flatMap(XenStoreLayout.parseNumbers),
              reported.count == 1, let port = UInt32(exactly: reported[0]), port != 0 else {
            throw .noEntry
        }
        return port
    }

    /// Nothing to do from dom0: the agent that bound the port unbinds it
    /// when its set-up directory disappears.
    public func releaseNotificationPort(_ domain: DomainID, port: UInt32) throws(XenErrno) {}

    /// Nothing to do from dom0: revoking the descriptor fires the agents'
    /// xenstore watch, which is their wake-up.
    public func wake(_ domain: DomainID, gfn: GFN, offset: Int, port: UInt32) {}

    // MARK: xenstore helpers

    /// Writes `value` at `path` with owner dom0, no access for others, and
    /// read access for `reader`, in one transaction (so no other domain sees
    /// the node before its permissions are set).
    func storeWritePrivate(_ path: String, _ value: [UInt8], reader: DomainID) throws(XenErrno) {
        let permissions = [XenStoreAccess(domain: DomainID(rawValue: 0), read: false, write: false),
                           XenStoreAccess(domain: reader, read: true, write: false)]
        try store.withTransaction { (transaction) throws(XenErrno) in
            try store.write(path, value, transaction: transaction)
            try store.setPermissions(path, permissions, transaction: transaction)
        }
    }
}
