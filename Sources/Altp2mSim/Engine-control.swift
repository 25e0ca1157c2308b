import Altp2m

/// `HypervisorControl`: every call is an `HVMOP_altp2m` (or param, or
/// memory) hypercall made by the control domain, through the same dispatch
/// as ``Altp2mEngine/hvmAltp2mOp(_:caller:buffers:)``.
extension Altp2mEngine: HypervisorControl {
    private func call(_ op: HVMAltp2mOp, buffers: HypercallBuffers = HypercallBuffers()) throws(XenErrno) -> HVMAltp2mOp {
        var op = op
        try hvmAltp2mOp(&op, caller: .controlDomain, buffers: buffers)
        return op
    }

    /// Encodes an access for this host's Xen; one it lacks (`r_pw` before
    /// 4.20) is refused as the hypervisor refuses unknown numbers.
    private func abi(_ access: MemAccess) throws(XenErrno) -> UInt16 {
        guard let value = access.abiValue(for: host.xen) else { throw .invalid }
        return value
    }

    public func listDomains() throws(XenErrno) -> [DomainInfo] { domainList() }

    public func getAltp2mParam(_ domain: DomainID) throws(XenErrno) -> Altp2mMode {
        let value = try hvmGetParam(domain, index: Self.hvmParamAltp2m, caller: .controlDomain)
        // The engine only ever stores 0...3 here.
        guard let mode = Altp2mMode(rawValue: UInt32(truncatingIfNeeded: value)) else { throw .outOfRange }
        return mode
    }

    public func setAltp2mParam(_ domain: DomainID, mode: Altp2mMode) throws(XenErrno) {
        try hvmSetParam(domain, index: Self.hvmParamAltp2m, value: UInt64(mode.rawValue), caller: .controlDomain)
    }

    public func getDomainState(_ domain: DomainID) throws(XenErrno) -> Bool {
        try call(.getDomainState(domain)).stateOutput != 0
    }

    public func setDomainState(_ domain: DomainID, active: Bool) throws(XenErrno) {
        _ = try call(.setDomainState(domain, state: active ? 1 : 0))
    }

    public func vcpuEnableNotify(_ domain: DomainID, vcpu: VCPUID, gfn: GFN) throws(XenErrno) {
        _ = try call(.vcpuEnableNotify(domain, vcpu: vcpu.rawValue, gfn: gfn.rawValue))
    }

    public func vcpuDisableNotify(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) {
        _ = try call(.vcpuDisableNotify(domain, vcpu: vcpu.rawValue))
    }

    public func createView(_ domain: DomainID, defaultAccess: MemAccess) throws(XenErrno) -> ViewID {
        ViewID(try call(.createP2M(domain, defaultAccess: try abi(defaultAccess))).viewOutput)
    }

    public func destroyView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        _ = try call(.destroyP2M(domain, view: view.rawValue))
    }

    public func switchToView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        _ = try call(.switchP2M(domain, view: view.rawValue))
    }

    public func setMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN, access: MemAccess) throws(XenErrno) {
        _ = try call(.setMemAccess(domain, view: view.rawValue, gfn: gfn.rawValue, access: try abi(access)))
    }

    public func setMemAccessMulti(_ domain: DomainID, view: ViewID,
                                  entries: [(gfn: GFN, access: MemAccess)]) throws(XenErrno) {
        var buffers = HypercallBuffers()
        let pfns = buffers.add(words: entries.map(\.gfn.rawValue))
        var accesses: [UInt8] = []
        for entry in entries { accesses.append(UInt8(truncatingIfNeeded: try abi(entry.access))) }
        let list = buffers.add(accesses)
        guard let count = UInt32(exactly: entries.count) else { throw .invalid }
        _ = try call(.setMemAccessMulti(domain, view: view.rawValue, count: count, pfnList: pfns, accessList: list),
                     buffers: buffers)
    }

    public func getMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> MemAccess {
        let value = try call(.getMemAccess(domain, view: view.rawValue, gfn: gfn.rawValue)).accessOutput
        guard let access = MemAccess(abiValue: value, for: host.xen) else { throw .outOfRange }
        return access
    }

    public func changeGFN(_ domain: DomainID, view: ViewID, oldGFN: GFN, newGFN: GFN) throws(XenErrno) {
        _ = try call(.changeGFN(domain, view: view.rawValue, oldGFN: oldGFN.rawValue, newGFN: newGFN.rawValue))
    }

    public func setSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN, suppress: Bool) throws(XenErrno) {
        _ = try call(.setSuppressVE(domain, view: view.rawValue, gfn: gfn.rawValue, suppress: suppress ? 1 : 0))
    }

    public func setSuppressVEMulti(_ domain: DomainID, view: ViewID, firstGFN: GFN, lastGFN: GFN,
                                   suppress: Bool) throws(XenErrno) -> SuppressVEMultiResult {
        let op = try call(.setSuppressVEMulti(domain, view: view.rawValue, suppress: suppress ? 1 : 0,
                                              firstGFN: firstGFN.rawValue, lastGFN: lastGFN.rawValue))
        guard let error = XenErrno(code: op.firstErrorOutput) else { return SuppressVEMultiResult() }
        return SuppressVEMultiResult(firstError: error, firstErrorGFN: GFN(op.firstErrorGFNOutput))
    }

    public func getSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> Bool {
        try call(.getSuppressVE(domain, view: view.rawValue, gfn: gfn.rawValue)).suppressVEOutput != 0
    }

    public func getVCPUView(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) -> ViewID {
        ViewID(try call(.getP2MIndex(domain, vcpu: vcpu.rawValue)).p2mIndexOutput)
    }

    public func setVisibility(_ domain: DomainID, view: ViewID, visible: Bool) throws(XenErrno) {
        _ = try call(.setVisibility(domain, view: view.rawValue, visible: visible ? 1 : 0))
    }

    /// Drops each gfn in order with ``dropPage(_:gfn:)``; the first failure
    /// stops the operation (earlier drops stay done) and is reported as
    /// ``XenErrno/invalid``, as libxenctrl's `_exact` variant does.
    public func decreaseReservation(_ domain: DomainID, gfns: [GFN]) throws(XenErrno) {
        for gfn in gfns { try dropPage(domain, gfn: gfn) }
    }
}
