import Altp2m

/// A ``ChannelHost`` that forwards to another and fails chosen calls: the
/// next call of a named operation, or the n-th call of any operation. It
/// also records the calls, and the writes into guest memory.
final class FaultInjectingHost: ChannelHost {
    let base: any ChannelHost
    /// Operation name → the error its next call fails with (once).
    var failing: [String: XenErrno] = [:]
    /// Fail the call with this 1-based number (counting every call).
    var failAtCall: Int?
    var failAtCallErrno: XenErrno = .noMemory
    private(set) var calls: [String] = []
    /// Every ``writeGuestMemory(_:gfn:offset:bytes:)`` that went through.
    private(set) var writes: [(domain: DomainID, gfn: GFN, offset: Int, bytes: [UInt8])] = []
    /// The name of the call that was failed by ``failAtCall``.
    private(set) var failedCall: String?
    /// Run before each `setSuppressVEMulti` is forwarded, with its domain
    /// and view: lets a test look at the simulator at that point.
    var beforeSuppressVEMulti: ((DomainID, ViewID) -> Void)?
    /// When set, `setSuppressVEMulti` changes nothing and reports this error
    /// for the range's first gfn: a hypervisor that answers `ESRCH` for a gfn
    /// the view holds no entry for, instead of copying the host entry in
    /// (spec §3.4.10), so that a lock-out leaning on that copy shows.
    var suppressVEMultiChangesNothing: XenErrno?
    /// Operation names whose next call reports success but is not made: a
    /// hypervisor that loses a change, which only a read-back can notice.
    var ignoring: Set<String> = []

    init(_ base: any ChannelHost) { self.base = base }

    func reset() {
        calls = []
        failedCall = nil
    }

    private func gate(_ name: String) throws(XenErrno) {
        calls.append(name)
        if let errno = failing.removeValue(forKey: name) { throw errno }
        if let n = failAtCall, calls.count == n {
            failedCall = name
            throw failAtCallErrno
        }
    }

    var supportsVirtualizationExceptions: Bool { base.supportsVirtualizationExceptions }
    var xenVersion: XenVersion { base.xenVersion }

    func vcpuCount(_ d: DomainID) throws(XenErrno) -> UInt32 { try gate("vcpuCount"); return try base.vcpuCount(d) }
    func activeViews(_ d: DomainID) throws(XenErrno) -> [ActiveView] { try gate("activeViews"); return try base.activeViews(d) }
    func accessRequired(_ d: DomainID) throws(XenErrno) -> Bool? { try gate("accessRequired"); return try base.accessRequired(d) }
    func logDirtyMode(_ d: DomainID) throws(XenErrno) -> Bool? { try gate("logDirtyMode"); return try base.logDirtyMode(d) }
    func setAccessRequired(_ d: DomainID, _ r: Bool) throws(XenErrno) { try gate("setAccessRequired"); try base.setAccessRequired(d, r) }
    func pauseDomain(_ d: DomainID) throws(XenErrno) { try gate("pauseDomain"); try base.pauseDomain(d) }
    func unpauseDomain(_ d: DomainID) throws(XenErrno) { try gate("unpauseDomain"); try base.unpauseDomain(d) }
    func obtainSharedFrames(between a: DomainID, and b: DomainID, count: Int) throws(XenErrno) -> SharedFrames {
        try gate("obtainSharedFrames"); return try base.obtainSharedFrames(between: a, and: b, count: count)
    }
    func obtainSharedFrames(between a: DomainID, and b: DomainID, count: Int,
                            views: (first: ViewID, second: ViewID)) throws(XenErrno) -> SharedFrames {
        try gate("obtainSharedFrames"); return try base.obtainSharedFrames(between: a, and: b, count: count, views: views)
    }
    func releaseEffect(on d: DomainID, of f: SharedFrames) -> FrameReleaseEffect { base.releaseEffect(on: d, of: f) }
    func releaseSharedFrames(_ f: SharedFrames) throws(XenErrno) { try gate("releaseSharedFrames"); try base.releaseSharedFrames(f) }
    func writeGuestMemory(_ d: DomainID, gfn: GFN, offset: Int, bytes: [UInt8]) throws(XenErrno) {
        try gate("writeGuestMemory")
        try base.writeGuestMemory(d, gfn: gfn, offset: offset, bytes: bytes)
        writes.append((d, gfn, offset, bytes))
    }
    func reserveWindow(_ d: DomainID, pageCount: Int) throws(XenErrno) -> GFN {
        try gate("reserveWindow"); return try base.reserveWindow(d, pageCount: pageCount)
    }
    func releaseWindow(_ d: DomainID, firstGFN: GFN, pageCount: Int) throws(XenErrno) {
        try gate("releaseWindow"); try base.releaseWindow(d, firstGFN: firstGFN, pageCount: pageCount)
    }
    func reserveVEInfoPage(_ d: DomainID) throws(XenErrno) -> GFN { try gate("reserveVEInfoPage"); return try base.reserveVEInfoPage(d) }
    func releaseVEInfoPage(_ d: DomainID, gfn: GFN) throws(XenErrno) { try gate("releaseVEInfoPage"); try base.releaseVEInfoPage(d, gfn: gfn) }
    func publishDescriptor(_ e: [UInt8], for d: DomainID, name: String) throws(XenErrno) {
        try gate("publishDescriptor"); try base.publishDescriptor(e, for: d, name: name)
    }
    func revokeDescriptor(for d: DomainID, name: String) throws(XenErrno) { try gate("revokeDescriptor"); try base.revokeDescriptor(for: d, name: name) }
    func allocateNotificationPort(_ d: DomainID, remote: DomainID) throws(XenErrno) -> UInt32 {
        try gate("allocateNotificationPort"); return try base.allocateNotificationPort(d, remote: remote)
    }
    func releaseNotificationPort(_ d: DomainID, port: UInt32) throws(XenErrno) {
        try gate("releaseNotificationPort"); try base.releaseNotificationPort(d, port: port)
    }
    func wake(_ d: DomainID, gfn: GFN, offset: Int, port: UInt32) { calls.append("wake"); base.wake(d, gfn: gfn, offset: offset, port: port) }

    func listDomains() throws(XenErrno) -> [DomainInfo] { try gate("listDomains"); return try base.listDomains() }
    func getAltp2mParam(_ d: DomainID) throws(XenErrno) -> Altp2mMode { try gate("getAltp2mParam"); return try base.getAltp2mParam(d) }
    func setAltp2mParam(_ d: DomainID, mode: Altp2mMode) throws(XenErrno) { try gate("setAltp2mParam"); try base.setAltp2mParam(d, mode: mode) }
    func getDomainState(_ d: DomainID) throws(XenErrno) -> Bool { try gate("getDomainState"); return try base.getDomainState(d) }
    func setDomainState(_ d: DomainID, active: Bool) throws(XenErrno) { try gate("setDomainState"); try base.setDomainState(d, active: active) }
    func vcpuEnableNotify(_ d: DomainID, vcpu: VCPUID, gfn: GFN) throws(XenErrno) {
        try gate("vcpuEnableNotify"); try base.vcpuEnableNotify(d, vcpu: vcpu, gfn: gfn)
    }
    func vcpuDisableNotify(_ d: DomainID, vcpu: VCPUID) throws(XenErrno) { try gate("vcpuDisableNotify"); try base.vcpuDisableNotify(d, vcpu: vcpu) }
    func createView(_ d: DomainID, defaultAccess: MemAccess) throws(XenErrno) -> ViewID {
        try gate("createView"); return try base.createView(d, defaultAccess: defaultAccess)
    }
    func destroyView(_ d: DomainID, view: ViewID) throws(XenErrno) { try gate("destroyView"); try base.destroyView(d, view: view) }
    func switchToView(_ d: DomainID, view: ViewID) throws(XenErrno) { try gate("switchToView"); try base.switchToView(d, view: view) }
    func setMemAccess(_ d: DomainID, view: ViewID, gfn: GFN, access: MemAccess) throws(XenErrno) {
        try gate("setMemAccess"); try base.setMemAccess(d, view: view, gfn: gfn, access: access)
    }
    func setMemAccessMulti(_ d: DomainID, view: ViewID, entries: [(gfn: GFN, access: MemAccess)]) throws(XenErrno) {
        try gate("setMemAccessMulti")
        if ignoring.remove("setMemAccessMulti") != nil { return }
        try base.setMemAccessMulti(d, view: view, entries: entries)
    }
    func getMemAccess(_ d: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> MemAccess {
        try gate("getMemAccess"); return try base.getMemAccess(d, view: view, gfn: gfn)
    }
    func changeGFN(_ d: DomainID, view: ViewID, oldGFN: GFN, newGFN: GFN) throws(XenErrno) {
        try gate("changeGFN"); try base.changeGFN(d, view: view, oldGFN: oldGFN, newGFN: newGFN)
    }
    func setSuppressVE(_ d: DomainID, view: ViewID, gfn: GFN, suppress: Bool) throws(XenErrno) {
        try gate("setSuppressVE"); try base.setSuppressVE(d, view: view, gfn: gfn, suppress: suppress)
    }
    func setSuppressVEMulti(_ d: DomainID, view: ViewID, firstGFN: GFN, lastGFN: GFN, suppress: Bool) throws(XenErrno) -> SuppressVEMultiResult {
        try gate("setSuppressVEMulti")
        beforeSuppressVEMulti?(d, view)
        if let errno = suppressVEMultiChangesNothing {
            return SuppressVEMultiResult(firstError: errno, firstErrorGFN: firstGFN)
        }
        return try base.setSuppressVEMulti(d, view: view, firstGFN: firstGFN, lastGFN: lastGFN, suppress: suppress)
    }
    func getSuppressVE(_ d: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> Bool {
        try gate("getSuppressVE"); return try base.getSuppressVE(d, view: view, gfn: gfn)
    }
    func getVCPUView(_ d: DomainID, vcpu: VCPUID) throws(XenErrno) -> ViewID { try gate("getVCPUView"); return try base.getVCPUView(d, vcpu: vcpu) }
    func setVisibility(_ d: DomainID, view: ViewID, visible: Bool) throws(XenErrno) {
        try gate("setVisibility"); try base.setVisibility(d, view: view, visible: visible)
    }
    func decreaseReservation(_ d: DomainID, gfns: [GFN]) throws(XenErrno) { try gate("decreaseReservation"); try base.decreaseReservation(d, gfns: gfns) }
}
