#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
internal import CXen

/// ``HypervisorControl`` and ``ChannelHost`` over the real Xen libraries, as
/// the control domain: libxenctrl for altp2m, domains and memory,
/// libxenstore for names, descriptors and the agents' frame reports,
/// libxenforeignmemory to write the control page.
///
/// Errors keep Xen's error number (`errno` after a failed libxenctrl call).
/// Off Xen, ``init()`` fails with one clear message and the libraries are
/// never touched (so libxencall prints nothing).
///
/// Built against Xen 4.17's headers (Debian bookworm): the public ABI
/// numbers of access types are that release's (`XENMEM_access_default` =
/// 10), so the backend refuses to run on another release rather than send
/// wrong numbers.
///
/// One owner at a time; not thread-safe.
public final class XenControl: ChannelHost {
    /// The device libxencall needs; its absence means "not a Xen dom0".
    public static let privcmdPath = "/dev/xen/privcmd"
    /// The message when Xen is not available.
    public static let unavailableMessage =
        "Xen control interface not available: /dev/xen/privcmd missing; use the simulator backend"
    /// `HVM_PARAM_ALTP2M` (xen/include/public/hvm/params.h).
    static let hvmParamAltp2m: UInt32 = 35
    /// `XENVER_version` (xen/include/public/version.h).
    static let xenverVersion: Int32 = 0
    /// The number of views on Xen before 4.21 (`MAX_ALTP2M`).
    static let viewSlots: UInt16 = 10

    private let xch: OpaquePointer
    private let xsh: OpaquePointer
    private let foreign: OpaquePointer

    /// The Xen release (from `xc_version`).
    public let xenVersion: XenVersion

    /// Where windows are reserved: gfns above any guest's RAM that its
    /// memory map does not list (64 GiB to 68 GiB of guest-physical space).
    public var windowRegion = GFN(0x100_0000)..<GFN(0x110_0000)
    /// Where #VE info pages are reserved.
    public var veInfoRegion = GFN(0x110_0000)..<GFN(0x110_1000)
    /// How long ``obtainSharedFrames(between:and:count:)`` waits for the
    /// agents' reports, in milliseconds.
    public var frameReportTimeoutMilliseconds = 30_000

    /// Xen cannot tell dom0 whether the CPU has #VE; `vcpu_enable_notify`
    /// fails with `EOPNOTSUPP` where it is missing, and the grant module says so.
    public var supportsVirtualizationExceptions: Bool { true }

    /// Opens the control interfaces.
    /// - Throws: ``XenBackendError/unavailable(_:)`` with
    ///   ``unavailableMessage`` when `/dev/xen/privcmd` does not exist (checked
    ///   before any Xen library runs); ``XenBackendError/hypervisor(_:_:)``
    ///   when a handle cannot be opened, or the Xen release is not 4.17.
    public init() throws(XenBackendError) {
        guard access(Self.privcmdPath, F_OK) == 0 else { throw .unavailable(Self.unavailableMessage) }
        guard let xch = xc_interface_open(nil, nil, 0) else {
            throw .hypervisor(currentXenErrno(), "opening the Xen control interface (xc_interface_open)")
        }
        guard let xsh = xs_open(0) else {
            let errno = currentXenErrno()
            xc_interface_close(xch)
            throw .hypervisor(errno, "connecting to xenstore (xs_open); is xenstored running?")
        }
        guard let foreign = xenforeignmemory_open(nil, 0) else {
            let errno = currentXenErrno()
            xs_close(xsh)
            xc_interface_close(xch)
            throw .hypervisor(errno, "opening foreign memory mapping (xenforeignmemory_open)")
        }
        let raw = xc_version(xch, Self.xenverVersion, nil)
        let (major, minor) = (raw >> 16, raw & 0xFFFF)
        guard raw >= 0, major == 4, minor == 17 else {
            xenforeignmemory_close(foreign)
            xs_close(xsh)
            xc_interface_close(xch)
            throw .hypervisor(.notSupported, "this build speaks Xen 4.17's altp2m ABI, but the hypervisor is \(major).\(minor); rebuild against that release's headers")
        }
        self.xch = xch
        self.xsh = xsh
        self.foreign = foreign
        self.xenVersion = .v4_17
    }

    deinit {
        xenforeignmemory_close(foreign)
        xs_close(xsh)
        xc_interface_close(xch)
    }

    // MARK: Helpers

    /// Fails with the current `errno` when a libxenctrl call returned < 0.
    @inline(__always)
    private func check(_ rc: Int32) throws(XenErrno) {
        if rc < 0 { throw currentXenErrno() }
    }

    private func abi(_ access: MemAccess) throws(XenErrno) -> xenmem_access_t {
        guard let value = access.abiValue(for: xenVersion) else { throw .invalid }
        return xenmem_access_t(rawValue: UInt32(value))
    }

    private func info(_ domain: DomainID) throws(XenErrno) -> xc_domaininfo_t {
        var info = xc_domaininfo_t()
        let count = xc_domain_getinfolist(xch, UInt32(domain.rawValue), 1, &info)
        guard count == 1, info.domain == domain.rawValue else {
            if count < 0 { throw currentXenErrno() }
            throw .notFound
        }
        return info
    }

    /// A xenstore value, or `nil` if the node does not exist.
    private func storeRead(_ path: String) -> [UInt8]? {
        var length: UInt32 = 0
        guard let value = xs_read(xsh, 0, path, &length) else { return nil }
        defer { free(value) }
        return Array(UnsafeRawBufferPointer(start: value, count: Int(length)))
    }

    private func storeWrite(_ path: String, _ bytes: [UInt8]) throws(XenErrno) {
        let ok = bytes.withUnsafeBytes { xs_write(xsh, 0, path, $0.baseAddress, UInt32($0.count)) }
        guard ok else { throw currentXenErrno() }
    }

    /// Writes `value` at `path` with owner dom0, no access for others, and
    /// read access for `reader`, in one transaction (so no other domain sees
    /// the node before its permissions are set).
    private func storeWritePrivate(_ path: String, _ value: [UInt8], reader: DomainID) throws(XenErrno) {
        for _ in 0..<16 {
            let transaction = xs_transaction_start(xsh)
            guard transaction != 0 else { throw currentXenErrno() }
            var permissions = [xs_permissions(id: 0, perms: UInt32(XS_PERM_NONE)),
                               xs_permissions(id: UInt32(reader.rawValue), perms: UInt32(XS_PERM_READ))]
            let written = value.withUnsafeBytes { xs_write(xsh, transaction, path, $0.baseAddress, UInt32($0.count)) }
                && xs_set_permissions(xsh, transaction, path, &permissions, 2)
            guard written else {
                let errno = currentXenErrno()
                _ = xs_transaction_end(xsh, transaction, true)
                throw errno
            }
            if xs_transaction_end(xsh, transaction, false) { return }
            guard errnoValue() == EAGAIN else { throw currentXenErrno() }
        }
        throw .tryAgain
    }

    private func storeRemove(_ path: String) throws(XenErrno) {
        guard xs_rm(xsh, 0, path) else {
            if errnoValue() == ENOENT { return }
            throw currentXenErrno()
        }
    }

    /// Space-separated hexadecimal numbers.
    private static func parseNumbers(_ bytes: [UInt8]) -> [UInt64]? {
        let text = String(decoding: bytes, as: UTF8.self)
        var numbers: [UInt64] = []
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            guard let value = UInt64(word.hasPrefix("0x") ? word.dropFirst(2) : word[...], radix: 16) else { return nil }
            numbers.append(value)
        }
        return numbers
    }

    private static func hex(_ bytes: [UInt8]) -> [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return out
    }

    // MARK: HypervisorControl

    public func listDomains() throws(XenErrno) -> [DomainInfo] {
        var buffer = [xc_domaininfo_t](repeating: xc_domaininfo_t(), count: 1024)
        let count = xc_domain_getinfolist(xch, 0, UInt32(buffer.count), &buffer)
        try check(count)
        return buffer.prefix(Int(count)).map { entry in
            let id = DomainID(rawValue: entry.domain)
            let name = storeRead("/local/domain/\(entry.domain)/name").map { String(decoding: $0, as: UTF8.self) } ?? ""
            let hvm = entry.flags & UInt32(XEN_DOMINF_hvm_guest) != 0
            let vcpus = entry.max_vcpu_id == UInt32.max ? 0 : entry.max_vcpu_id + 1
            return DomainInfo(id: id, name: name, kind: hvm ? .hvm : .pv, vcpuCount: vcpus,
                              pageCount: entry.tot_pages,
                              isPaused: entry.flags & UInt32(XEN_DOMINF_paused) != 0,
                              isCrashed: (entry.flags >> UInt32(XEN_DOMINF_shutdownshift)) & UInt32(XEN_DOMINF_shutdownmask) == 3
                                  && entry.flags & UInt32(XEN_DOMINF_shutdown) != 0)
        }
    }

    public func getAltp2mParam(_ domain: DomainID) throws(XenErrno) -> Altp2mMode {
        var value: UInt64 = 0
        try check(xc_hvm_param_get(xch, UInt32(domain.rawValue), Self.hvmParamAltp2m, &value))
        guard let mode = Altp2mMode(rawValue: UInt32(truncatingIfNeeded: value)) else { throw .outOfRange }
        return mode
    }

    public func setAltp2mParam(_ domain: DomainID, mode: Altp2mMode) throws(XenErrno) {
        try check(xc_hvm_param_set(xch, UInt32(domain.rawValue), Self.hvmParamAltp2m, UInt64(mode.rawValue)))
    }

    public func getDomainState(_ domain: DomainID) throws(XenErrno) -> Bool {
        var state = false
        try check(xc_altp2m_get_domain_state(xch, UInt32(domain.rawValue), &state))
        return state
    }

    public func setDomainState(_ domain: DomainID, active: Bool) throws(XenErrno) {
        try check(xc_altp2m_set_domain_state(xch, UInt32(domain.rawValue), active))
    }

    public func vcpuEnableNotify(_ domain: DomainID, vcpu: VCPUID, gfn: GFN) throws(XenErrno) {
        try check(xc_altp2m_set_vcpu_enable_notify(xch, UInt32(domain.rawValue), vcpu.rawValue, xen_pfn_t(gfn.rawValue)))
    }

    public func vcpuDisableNotify(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) {
        try check(xc_altp2m_set_vcpu_disable_notify(xch, UInt32(domain.rawValue), vcpu.rawValue))
    }

    public func createView(_ domain: DomainID, defaultAccess: MemAccess) throws(XenErrno) -> ViewID {
        var view: UInt16 = 0
        try check(xc_altp2m_create_view(xch, UInt32(domain.rawValue), try abi(defaultAccess), &view))
        return ViewID(view)
    }

    public func destroyView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        try check(xc_altp2m_destroy_view(xch, UInt32(domain.rawValue), view.rawValue))
    }

    public func switchToView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        try check(xc_altp2m_switch_to_view(xch, UInt32(domain.rawValue), view.rawValue))
    }

    public func setMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN, access: MemAccess) throws(XenErrno) {
        try check(xc_altp2m_set_mem_access(xch, UInt32(domain.rawValue), view.rawValue, xen_pfn_t(gfn.rawValue),
                                           try abi(access)))
    }

    public func setMemAccessMulti(_ domain: DomainID, view: ViewID,
                                  entries: [(gfn: GFN, access: MemAccess)]) throws(XenErrno) {
        guard !entries.isEmpty else { return }
        guard let count = UInt32(exactly: entries.count) else { throw .invalid }
        var gfns = entries.map(\.gfn.rawValue)
        var accesses: [UInt8] = []
        for entry in entries { accesses.append(UInt8(truncatingIfNeeded: try abi(entry.access).rawValue)) }
        try check(xc_altp2m_set_mem_access_multi(xch, UInt32(domain.rawValue), view.rawValue, &accesses, &gfns, count))
    }

    public func getMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> MemAccess {
        var access = xenmem_access_t(rawValue: 0)
        try check(xc_altp2m_get_mem_access(xch, UInt32(domain.rawValue), view.rawValue, xen_pfn_t(gfn.rawValue), &access))
        guard let value = UInt16(exactly: access.rawValue), let decoded = MemAccess(abiValue: value, for: xenVersion) else {
            throw .outOfRange
        }
        return decoded
    }

    public func changeGFN(_ domain: DomainID, view: ViewID, oldGFN: GFN, newGFN: GFN) throws(XenErrno) {
        try check(xc_altp2m_change_gfn(xch, UInt32(domain.rawValue), view.rawValue, xen_pfn_t(oldGFN.rawValue),
                                       xen_pfn_t(newGFN.rawValue)))
    }

    public func setSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN, suppress: Bool) throws(XenErrno) {
        try check(xc_altp2m_set_suppress_ve(xch, UInt32(domain.rawValue), view.rawValue, xen_pfn_t(gfn.rawValue), suppress))
    }

    public func setSuppressVEMulti(_ domain: DomainID, view: ViewID, firstGFN: GFN, lastGFN: GFN,
                                   suppress: Bool) throws(XenErrno) -> SuppressVEMultiResult {
        // libxenctrl writes these only when a gfn failed: start them at "none".
        var errorGFN: xen_pfn_t = 0
        var errorCode: Int32 = 0
        try check(xc_altp2m_set_supress_ve_multi(xch, UInt32(domain.rawValue), view.rawValue,
                                                  xen_pfn_t(firstGFN.rawValue), xen_pfn_t(lastGFN.rawValue), suppress,
                                                  &errorGFN, &errorCode))
        guard let error = XenErrno(code: errorCode) else { return SuppressVEMultiResult() }
        return SuppressVEMultiResult(firstError: error, firstErrorGFN: GFN(UInt64(errorGFN)))
    }

    public func getSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> Bool {
        var suppress = false
        try check(xc_altp2m_get_suppress_ve(xch, UInt32(domain.rawValue), view.rawValue, xen_pfn_t(gfn.rawValue), &suppress))
        return suppress
    }

    public func getVCPUView(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) -> ViewID {
        var index: UInt16 = 0
        try check(xc_altp2m_get_vcpu_p2m_idx(xch, UInt32(domain.rawValue), vcpu.rawValue, &index))
        return ViewID(index)
    }

    public func setVisibility(_ domain: DomainID, view: ViewID, visible: Bool) throws(XenErrno) {
        try check(xc_altp2m_set_visibility(xch, UInt32(domain.rawValue), view.rawValue, visible))
    }

    public func decreaseReservation(_ domain: DomainID, gfns: [GFN]) throws(XenErrno) {
        guard !gfns.isEmpty else { return }
        var frames = gfns.map { xen_pfn_t($0.rawValue) }
        try check(xc_domain_decrease_reservation_exact(xch, UInt32(domain.rawValue), UInt(frames.count), 0, &frames))
    }

    // MARK: ChannelHost: domain controls

    public func vcpuCount(_ domain: DomainID) throws(XenErrno) -> UInt32 {
        let entry = try info(domain)
        return entry.max_vcpu_id == UInt32.max ? 0 : entry.max_vcpu_id + 1
    }

    public func activeViews(_ domain: DomainID) throws(XenErrno) -> [ActiveView] {
        guard try getDomainState(domain) else { return [] }
        var found = [ActiveView(view: .hostOrView0, isVisible: nil)]
        for index in UInt16(1)..<Self.viewSlots {
            var access = xenmem_access_t(rawValue: 0)
            // get_mem_access(view, INVALID_GFN) answers only for active views.
            if xc_altp2m_get_mem_access(xch, UInt32(domain.rawValue), index, xen_pfn_t(UInt64.max), &access) == 0 {
                found.append(ActiveView(view: ViewID(index), isVisible: nil))
            } else if errnoValue() != EINVAL {
                throw currentXenErrno()
            }
        }
        return found
    }

    public func setAccessRequired(_ domain: DomainID, _ required: Bool) throws(XenErrno) {
        try check(xc_domain_set_access_required(xch, UInt32(domain.rawValue), required ? 1 : 0))
    }

    public func pauseDomain(_ domain: DomainID) throws(XenErrno) {
        try check(xc_domain_pause(xch, UInt32(domain.rawValue)))
    }

    public func unpauseDomain(_ domain: DomainID) throws(XenErrno) {
        try check(xc_domain_unpause(xch, UInt32(domain.rawValue)))
    }

    // MARK: ChannelHost: guest-physical space

    /// `count` consecutive gfns with no host p2m entry inside `region`
    /// (`get_mem_access` on the host answers `ESRCH` for a hole).
    private func findHole(_ domain: DomainID, count: Int, in region: Range<GFN>) throws(XenErrno) -> GFN {
        var start = region.lowerBound
        search: while start.distance(to: region.upperBound) >= count {
            for offset in 0..<count {
                var access = xenmem_access_t(rawValue: 0)
                let gfn = start.advanced(by: offset)
                if xc_altp2m_get_mem_access(xch, UInt32(domain.rawValue), 0, xen_pfn_t(gfn.rawValue), &access) == 0 {
                    start = gfn.advanced(by: 1)
                    continue search
                }
                guard errnoValue() == ESRCH else { throw currentXenErrno() }
            }
            return start
        }
        throw .noSpace
    }

    /// Raises the domain's allowance by `count` pages and populates the gfns
    /// with fresh RAM (`XENMEM_populate_physmap` on its behalf).
    private func populate(_ domain: DomainID, first: GFN, count: Int) throws(XenErrno) {
        let entry = try info(domain)
        try check(xc_domain_setmaxmem(xch, UInt32(domain.rawValue), (entry.max_pages + UInt64(count)) * 4))
        var frames = (0..<count).map { xen_pfn_t(first.advanced(by: $0).rawValue) }
        let rc = xc_domain_populate_physmap_exact(xch, UInt32(domain.rawValue), UInt(count), 0, 0, &frames)
        if rc < 0 {
            let errno = currentXenErrno()
            _ = xc_domain_setmaxmem(xch, UInt32(domain.rawValue), entry.max_pages * 4)
            throw errno
        }
    }

    private func unpopulate(_ domain: DomainID, first: GFN, count: Int) throws(XenErrno) {
        try decreaseReservation(domain, gfns: (0..<count).map { first.advanced(by: $0) })
        let entry = try info(domain)
        try check(xc_domain_setmaxmem(xch, UInt32(domain.rawValue), (entry.max_pages - min(entry.max_pages, UInt64(count))) * 4))
    }

    public func reserveWindow(_ domain: DomainID, pageCount: Int) throws(XenErrno) -> GFN {
        let first = try findHole(domain, count: pageCount, in: windowRegion)
        try populate(domain, first: first, count: pageCount)
        return first
    }

    public func releaseWindow(_ domain: DomainID, firstGFN: GFN, pageCount: Int) throws(XenErrno) {
        try unpopulate(domain, first: firstGFN, count: pageCount)
    }

    public func reserveVEInfoPage(_ domain: DomainID) throws(XenErrno) -> GFN {
        let gfn = try findHole(domain, count: 1, in: veInfoRegion)
        try populate(domain, first: gfn, count: 1)
        return gfn
    }

    public func releaseVEInfoPage(_ domain: DomainID, gfn: GFN) throws(XenErrno) {
        try unpopulate(domain, first: gfn, count: 1)
    }

    // MARK: ChannelHost: shared frames (the agents' grant flow, docs/XEN.md)

    public func obtainSharedFrames(between first: DomainID, and second: DomainID,
                                   count: Int) throws(XenErrno) -> SharedFrames {
        let granting = XenStoreLayout.setupDirectory(first, peer: second)
        let mapping = XenStoreLayout.setupDirectory(second, peer: first)
        try storeRemove(granting)
        try storeRemove(mapping)
        try storeWrite("\(granting)/request", Array(String(count).utf8))
        let deadline = monotonicMilliseconds() + UInt64(frameReportTimeoutMilliseconds)
        // 1. The granting agent grants `count` of its pages to the peer and
        //    reports its gfns, the grant references and its unbound port.
        let (firstGFNs, grants) = try waitForReport(granting, count: count, deadline: deadline, withGrants: true)
        // 2. The host hands the references to the mapping side, whose agent
        //    maps them and reports where.
        try storeWrite("\(mapping)/grefs", Array(grants.map { String($0, radix: 16) }.joined(separator: " ").utf8))
        try storeWrite("\(mapping)/request", Array(String(count).utf8))
        let (secondGFNs, _) = try waitForReport(mapping, count: count, deadline: deadline, withGrants: false)
        return SharedFrames(first: first, second: second, firstGFNs: firstGFNs.map { GFN($0) },
                            secondGFNs: secondGFNs.map { GFN($0) })
    }

    private func waitForReport(_ directory: String, count: Int, deadline: UInt64,
                               withGrants: Bool) throws(XenErrno) -> ([UInt64], [UInt64]) {
        while true {
            if let gfns = storeRead("\(directory)/gfns").flatMap(Self.parseNumbers) {
                guard gfns.count == count else { throw .invalid }
                guard withGrants else { return (gfns, []) }
                if let grants = storeRead("\(directory)/grefs").flatMap(Self.parseNumbers) {
                    guard grants.count == count else { throw .invalid }
                    return (gfns, grants)
                }
            }
            guard monotonicMilliseconds() < deadline else { throw .tryAgain }
            usleep(20_000)
        }
    }

    public func releaseSharedFrames(_ frames: SharedFrames) throws(XenErrno) {
        let zeros = [UInt8](repeating: 0, count: 4096)
        let live = Set(try listDomains().map(\.id))
        let (domain, gfns) = live.contains(frames.first) ? (frames.first, frames.firstGFNs) : (frames.second, frames.secondGFNs)
        if live.contains(domain) {
            for gfn in gfns { try writeGuestMemory(domain, gfn: gfn, offset: 0, bytes: zeros) }
        }
        // Removing the set-up directories tells the agents (through their
        // watches) to unmap the grants and end the grant access.
        try storeRemove(XenStoreLayout.setupDirectory(frames.first, peer: frames.second))
        try storeRemove(XenStoreLayout.setupDirectory(frames.second, peer: frames.first))
    }

    public func writeGuestMemory(_ domain: DomainID, gfn: GFN, offset: Int, bytes: [UInt8]) throws(XenErrno) {
        guard offset >= 0, offset + bytes.count <= 4096 else { throw .invalid }
        var frame = xen_pfn_t(gfn.rawValue)
        var error: Int32 = 0
        guard let page = xenforeignmemory_map(foreign, UInt32(domain.rawValue), PROT_READ | PROT_WRITE, 1, &frame, &error) else {
            throw currentXenErrno()
        }
        defer { _ = xenforeignmemory_unmap(foreign, page, 1) }
        guard error == 0 else { throw XenErrno(rawValue: abs(error)) }
        bytes.withUnsafeBytes { (page + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    // MARK: ChannelHost: descriptors and ports

    public func publishDescriptor(_ envelope: [UInt8], for domain: DomainID, name: String) throws(XenErrno) {
        // The same rule as the simulator's store: a path component xenstored takes.
        guard ChannelDescriptor.isValidName(name) else { throw .invalid }
        try storeWritePrivate("\(XenStoreLayout.descriptorDirectory(domain))/\(name)", Self.hex(envelope), reader: domain)
    }

    public func revokeDescriptor(for domain: DomainID, name: String) throws(XenErrno) {
        // Never a path outside the descriptor directory.
        guard ChannelDescriptor.isValidName(name) else { throw .invalid }
        try storeRemove("\(XenStoreLayout.descriptorDirectory(domain))/\(name)")
    }

    /// The granting agent's unbound port, reported with its frames (a port
    /// dom0 allocated could not be received by the agent's user space).
    public func allocateNotificationPort(_ domain: DomainID, remote: DomainID) throws(XenErrno) -> UInt32 {
        let directory = XenStoreLayout.setupDirectory(domain, peer: remote)
        guard let reported = storeRead("\(directory)/port").flatMap(Self.parseNumbers), reported.count == 1,
              let port = UInt32(exactly: reported[0]), port != 0 else {
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
}

/// CLOCK_MONOTONIC in milliseconds.
func monotonicMilliseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
}
