import Altp2m

/// VMFUNC leaf 0, EPTP switching (spec §6).
extension Altp2mEngine {
    /// The size of the hardware EPTP list (`MAX_EPTP`).
    static let eptpListSize: UInt32 = 512

    /// The guest on `vcpu` executes `VMFUNC` with `eax` and `ecx`, on a CPU
    /// that has VMFUNC (the hardware path, §6.2).
    ///
    /// - A vCPU whose VM-functions control is off (it never had
    ///   `vcpu_enable_notify`), or a CPU without VMFUNC: #UD from the CPU.
    /// - EAX 0, ECX < 512 and view ECX active and **visible**: the vCPU
    ///   switches with no VM exit. Xen would see the new index only at the
    ///   vCPU's next exit; the simulator updates `p2midx` and the counts at
    ///   once, which the spec allows (§2.6).
    /// - Anything else: a VM exit (reason 59) and Xen injects #UD.
    ///
    /// On #UD the view is unchanged and RIP does not advance. A successful
    /// VMFUNC retires an instruction (single-stepping applies).
    ///
    /// - Throws: ``XenErrno/notFound`` / ``XenErrno/invalid`` for an unknown
    ///   domain or vCPU.
    public func vmfunc(_ domain: DomainID, vcpu: VCPUID, eax: UInt32, ecx: UInt32) throws(XenErrno) -> VMFUNCOutcome {
        try withDomain(domain) { domain throws(XenErrno) in
            guard vcpu.rawValue < UInt32(domain.vcpus.count) else { throw .invalid }
            let index = Int(vcpu.rawValue)
            guard domain.isRunnable(index) else { return .vcpuNotRunning }
            guard host.cpu.hasVMFUNC, domain.vcpus[index].vmfuncEnabled else {
                return .invalidOpcode(.vmfuncDisabled)
            }
            guard eax == 0, ecx < Self.eptpListSize, domain.isActive,
                  domain.isVisibleView(ViewID(UInt16(ecx))) else {
                return .invalidOpcode(.vmExit)
            }
            return switchByGuest(&domain, vcpu: index, to: ViewID(UInt16(ecx)))
        }
    }

    /// Xen's emulated VMFUNC (`vmx_vcpu_emulate_vmfunc`, §6.3), reached only
    /// when Xen's instruction emulator decodes a VMFUNC (an EMULATE response,
    /// or `hvm_fep`). It succeeds only on a CPU **without** VMFUNC, with
    /// altp2m active, EAX 0 and view ECX below nr and active; visibility is
    /// **not** checked. Anything else is #UD.
    public func emulateVMFUNC(_ domain: DomainID, vcpu: VCPUID, eax: UInt32, ecx: UInt32) throws(XenErrno) -> VMFUNCOutcome {
        try withDomain(domain) { domain throws(XenErrno) in
            guard vcpu.rawValue < UInt32(domain.vcpus.count) else { throw .invalid }
            let index = Int(vcpu.rawValue)
            guard domain.isRunnable(index) else { return .vcpuNotRunning }
            guard !host.cpu.hasVMFUNC, domain.isActive, eax == 0, ecx <= UInt32(UInt16.max),
                  domain.isValidView(ViewID(UInt16(ecx))) else {
                return .invalidOpcode(.emulationRefused)
            }
            return switchByGuest(&domain, vcpu: index, to: ViewID(UInt16(ecx)))
        }
    }

    /// Moves a vCPU as its own VMFUNC does. Not a generation change: the
    /// guest made it and already knows (a guest process would otherwise
    /// invalidate its own cache on every switch).
    private func switchByGuest(_ domain: inout Domain, vcpu: Int, to view: ViewID) -> VMFUNCOutcome {
        let from = domain.vcpus[vcpu].view
        domain.moveVCPU(vcpu, to: view)
        retireInstruction(&domain, vcpu: vcpu)
        return .switched(from: from, to: view)
    }
}
