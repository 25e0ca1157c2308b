import Altp2m
import XenInterface

/// ``HypervisorControl``: each operation is one libxenctrl call, with access
/// types converted to and from this release's ABI numbers.
extension XenControl {
    public func listDomains() throws(XenErrno) -> [DomainInfo] {
        try xc.domainGetInfoList(first: DomainID(rawValue: 0), maximum: 1024).map { entry in
            let name = (try? store.readIfPresent("/local/domain/\(entry.domain.rawValue)/name"))
                .flatMap { $0 }.map { String(decoding: $0, as: UTF8.self) } ?? ""
            return DomainInfo(id: entry.domain, name: name, kind: entry.isHVM ? .hvm : .pv, vcpuCount: entry.vcpuCount,
                              pageCount: entry.totalPages, isPaused: entry.isPaused, isCrashed: entry.isCrashed)
        }
    }

    public func getAltp2mParam(_ domain: DomainID) throws(XenErrno) -> Altp2mMode {
        let value = try xc.hvmParamGet(domain, index: Self.hvmParamAltp2m)
        guard let mode = Altp2mMode(rawValue: UInt32(truncatingIfNeeded: value)), value <= UInt64(UInt32.max) else {
            throw .outOfRange
        }
        return mode
    }

    public func setAltp2mParam(_ domain: DomainID, mode: Altp2mMode) throws(XenErrno) {
        try xc.hvmParamSet(domain, index: Self.hvmParamAltp2m, value: UInt64(mode.rawValue))
    }

    public func getDomainState(_ domain: DomainID) throws(XenErrno) -> Bool {
        try xc.altp2mGetDomainState(domain)
    }

    public func setDomainState(_ domain: DomainID, active: Bool) throws(XenErrno) {
        try xc.altp2mSetDomainState(domain, active: active)
    }

    public func vcpuEnableNotify(_ domain: DomainID, vcpu: VCPUID, gfn: GFN) throws(XenErrno) {
        try xc.altp2mSetVCPUEnableNotify(domain, vcpu: vcpu.rawValue, gfn: gfn.rawValue)
    }

    public func vcpuDisableNotify(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) {
        try xc.altp2mSetVCPUDisableNotify(domain, vcpu: vcpu.rawValue)
    }

    public func createView(_ domain: DomainID, defaultAccess: MemAccess) throws(XenErrno) -> ViewID {
        ViewID(try xc.altp2mCreateView(domain, defaultAccess: try abi(defaultAccess)))
    }

    public func destroyView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        try xc.altp2mDestroyView(domain, view: view.rawValue)
    }

    public func switchToView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        try xc.altp2mSwitchToView(domain, view: view.rawValue)
    }

    public func setMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN, access: MemAccess) throws(XenErrno) {
        try xc.altp2mSetMemAccess(domain, view: view.rawValue, gfn: gfn.rawValue, access: try abi(access))
    }

    public func setMemAccessMulti(_ domain: DomainID, view: ViewID,
                                  entries: [(gfn: GFN, access: MemAccess)]) throws(XenErrno) {
        guard !entries.isEmpty else { return }
        guard UInt32(exactly: entries.count) != nil else { throw .invalid }
        var accesses: [UInt8] = []
        accesses.reserveCapacity(entries.count)
        for entry in entries { accesses.append(UInt8(truncatingIfNeeded: try abi(entry.access))) }
        try xc.altp2mSetMemAccessMulti(domain, view: view.rawValue, accesses: accesses, gfns: entries.map(\.gfn.rawValue))
    }

    public func getMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> MemAccess {
        let value = try xc.altp2mGetMemAccess(domain, view: view.rawValue, gfn: gfn.rawValue)
        guard let decoded = MemAccess(abiValue: value, for: xenVersion) else { throw .outOfRange }
        return decoded
    }

    public func changeGFN(_ domain: DomainID, view: ViewID, oldGFN: GFN, newGFN: GFN) throws(XenErrno) {
        try xc.altp2mChangeGFN(domain, view: view.rawValue, oldGFN: oldGFN.rawValue, newGFN: newGFN.rawValue)
    }

    public func setSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN, suppress: Bool) throws(XenErrno) {
        try xc.altp2mSetSuppressVE(domain, view: view.rawValue, gfn: gfn.rawValue, suppress: suppress)
    }

    public func setSuppressVEMulti(_ domain: DomainID, view: ViewID, firstGFN: GFN, lastGFN: GFN,
                                   suppress: Bool) throws(XenErrno) -> SuppressVEMultiResult {
        let result = try xc.altp2mSetSuppressVEMulti(domain, view: view.rawValue, firstGFN: firstGFN.rawValue,
                                                     lastGFN: lastGFN.rawValue, suppress: suppress)
        guard let error = XenErrno(code: result.errorCode) else { return SuppressVEMultiResult() }
        return SuppressVEMultiResult(firstError: error, firstErrorGFN: GFN(result.errorGFN))
    }

    public func getSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> Bool {
        try xc.altp2mGetSuppressVE(domain, view: view.rawValue, gfn: gfn.rawValue)
    }

    public func getVCPUView(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) -> ViewID {
        ViewID(try xc.altp2mGetVCPUP2MIndex(domain, vcpu: vcpu.rawValue))
    }

    public func setVisibility(_ domain: DomainID, view: ViewID, visible: Bool) throws(XenErrno) {
        try xc.altp2mSetVisibility(domain, view: view.rawValue, visible: visible)
    }

    public func decreaseReservation(_ domain: DomainID, gfns: [GFN]) throws(XenErrno) {
        try xc.domainDecreaseReservationExact(domain, gfns: gfns.map(\.rawValue))
    }
}
