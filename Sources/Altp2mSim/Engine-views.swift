import Altp2m

/// View lifecycle: domain state (§3.4.1–2), create / destroy / switch
/// (§3.4.4–6), visibility (§3.4.16) and a vCPU's view (§3.4.14).
extension Altp2mEngine {
    /// get_domain_state (1): 1 if altp2m is active. Works while inactive.
    func subopGetDomainState(_ domain: inout Domain, _ op: inout HVMAltp2mOp) {
        op.setField(UInt8(domain.isActive ? 1 : 0), at: 0)
    }

    /// set_domain_state (2): any non-zero state means on; no change is a no-op.
    func subopSetDomainState(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        let on = op.field(UInt8.self, at: 0) != 0
        guard !domain.nestedVirt else { throw .invalid }
        guard on != domain.isActive else { return }
        if on { activateAltp2m(&domain) } else { deactivateAltp2m(&domain) }
    }

    /// Off → on: view 0 is activated with the host's current default access
    /// and every vCPU is put on it. VMFUNC and #VE stay as they are (§1.6).
    private func activateAltp2m(_ domain: inout Domain) {
        domain.isActive = true
        domain.views[0].activate(defaultAccess: domain.host.defaultAccess)
        for vcpu in domain.vcpus.indices { domain.moveVCPU(vcpu, to: .hostOrView0) }
        domain.bumpGeneration()
    }

    /// On → off: every vCPU leaves its view and loses #VE; then every view is
    /// flushed and deactivated. Releasing a #VE page while altp2m is inactive
    /// also turns the vCPU's VMFUNC off; a vCPU whose #VE was already disabled
    /// keeps VMFUNC on (spec §11.4).
    private func deactivateAltp2m(_ domain: inout Domain) {
        domain.isActive = false
        for vcpu in domain.vcpus.indices {
            domain.moveVCPU(vcpu, to: .invalid)
            if let page = domain.vcpus[vcpu].notify {
                domain.vcpus[vcpu].notify = nil
                domain.vcpus[vcpu].vmfuncEnabled = false
                releaseFrame(page.mfn)
            }
        }
        for index in domain.views.indices { domain.views[index].deactivate() }
        domain.bumpGeneration()
    }

    /// create_p2m (4): the lowest free slot in 1..<nr, empty and visible,
    /// with the given default access (`default` = the host's).
    func subopCreateP2M(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        let requested = op.field(UInt16.self, at: 2)
        guard let access = MemAccess(abiValue: requested, for: host.xen) else { throw .invalid }
        guard let slot = (1..<domain.viewCount).first(where: { !domain.views[$0].isActive }) else {
            throw .invalid
        }
        domain.views[slot].activate(defaultAccess: access.isConcrete ? access : domain.host.defaultAccess)
        domain.bumpGeneration()
        op.setField(UInt16(slot), at: 0)
    }

    /// destroy_p2m (5): `EBUSY` for view 0, an index out of range, an inactive
    /// view or a view some vCPU is on.
    func subopDestroyP2M(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        let index = Int(op.field(UInt16.self, at: 0))
        guard index != 0, index < domain.viewCount else { throw .busy }
        guard domain.views[index].isActive, domain.views[index].activeVCPUs == 0 else { throw .busy }
        domain.views[index].deactivate()
        domain.bumpGeneration()
    }

    /// switch_p2m (6): moves every vCPU to a view that is active and visible.
    func subopSwitchP2M(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        let view = ViewID(op.field(UInt16.self, at: 0))
        guard Int(view.rawValue) < domain.viewCount else { throw .invalid }
        guard domain.isVisibleView(view) else { throw .invalid }
        var moved = false
        for vcpu in domain.vcpus.indices where domain.vcpus[vcpu].view != view {
            domain.moveVCPU(vcpu, to: view)
            moved = true
        }
        if moved { domain.bumpGeneration() }
    }

    /// set_visibility (16): shows or hides an active view (view 0 included)
    /// from VMFUNC and switch_p2m. vCPUs on it stay.
    func subopSetVisibility(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        guard op.field(UInt8.self, at: 3) == 0 else { throw .invalid }
        guard domain.isActive else { throw .notSupported }
        let view = ViewID(op.field(UInt16.self, at: 0))
        guard domain.isValidView(view) else { throw .invalid }
        let visible = op.field(UInt8.self, at: 2) != 0
        let index = Int(view.rawValue)
        if domain.views[index].isVisible != visible {
            domain.views[index].isVisible = visible
            domain.bumpGeneration()
        }
    }

    /// get_p2m_idx (14): the vCPU's current view.
    func subopGetP2MIndex(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        guard domain.isActive else { throw .notSupported }
        let vcpu = op.field(UInt32.self, at: 0)
        guard vcpu < UInt32(domain.vcpus.count) else { throw .invalid }
        op.setField(domain.vcpus[Int(vcpu)].view.rawValue, at: 4)
    }
}
