import Altp2m

/// #VE registration: vcpu_enable_notify (§3.4.3) and vcpu_disable_notify (§3.4.13).
extension Altp2mEngine {
    /// vcpu_enable_notify (3): registers the #VE information page of a vCPU
    /// and turns on its hardware VMFUNC (§1.6).
    ///
    /// The page is looked up in the **host** p2m: a direct-MMIO gfn gives
    /// `EPERM`; a hole, a frameless entry or a type other than `p2m_ram_rw` /
    /// log-dirty gives `EINVAL`. The engine keeps a reference on the frame,
    /// and the CPU writes that frame whatever the views later say about the gfn.
    func subopVCPUEnableNotify(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        let vcpu = op.field(UInt32.self, at: 0)
        let gfn = GFN(op.field(UInt64.self, at: 8))
        guard op.field(UInt32.self, at: 4) == 0, vcpu < UInt32(domain.vcpus.count) else { throw .invalid }
        guard host.cpu.hasVE else { throw .notSupported }
        let index = Int(vcpu)
        guard domain.vcpus[index].notify == nil else { throw .exists }
        guard let entry = domain.host.entries[gfn] else { throw .invalid }
        if entry.type == .mmioDirect { throw .notPermitted }
        guard entry.hasValidFrame, entry.type.isPageableRAM else { throw .invalid }

        frames.retain(entry.mfn)
        domain.vcpus[index].notify = VCPU.NotifyPage(gfn: gfn, mfn: entry.mfn)
        domain.vcpus[index].vmfuncEnabled = true
        domain.bumpGeneration()
    }

    /// vcpu_disable_notify (13): turns #VE off on a vCPU and drops the page
    /// reference. VMFUNC stays enabled. Succeeds if #VE was not enabled.
    func subopVCPUDisableNotify(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        let vcpu = op.field(UInt32.self, at: 0)
        guard vcpu < UInt32(domain.vcpus.count) else { throw .invalid }
        guard host.cpu.hasVE else { throw .notSupported }
        let index = Int(vcpu)
        guard let page = domain.vcpus[index].notify else { return }
        domain.vcpus[index].notify = nil
        releaseFrame(page.mfn)
        domain.bumpGeneration()
    }
}
