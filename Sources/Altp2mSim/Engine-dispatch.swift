import Altp2m

/// The `HVMOP_altp2m` hypercall: caller admission, the common dispatch of
/// spec §3.2 and the permission matrix of §1.4. The subops live in the files
/// named after them.
extension Altp2mEngine {
    /// Performs an `HVMOP_altp2m` hypercall with the raw argument, as `caller`.
    ///
    /// Checks run in the order of spec §3.2 and the first failure wins:
    /// caller at CPL > 0 (`EPERM`, before dispatch); altp2m unsupported on the
    /// host (`EOPNOTSUPP`); a non-zero pad or a version other than 1
    /// (`EINVAL`); an unknown subop (`EOPNOTSUPP`); no such domain (`ESRCH`);
    /// a non-HVM target (`EOPNOTSUPP`); altp2m inactive for anything but
    /// get/set_domain_state (`EOPNOTSUPP`); mode disabled (`EINVAL`); the
    /// §1.4 permission matrix (`EPERM`); then the subop's own checks (§3.4).
    ///
    /// Outputs are written into `op` (see the `…Output` accessors).
    /// `buffers` holds the arrays `set_mem_access_multi` reads.
    ///
    /// - Throws: the hypervisor's error; the hypercall would return its ``XenErrno/code``.
    public func hvmAltp2mOp(_ op: inout HVMAltp2mOp, caller: Caller,
                            buffers: HypercallBuffers = HypercallBuffers()) throws(XenErrno) {
        try admitHypercall(caller)
        guard host.altp2mSupported else { throw .notSupported }
        try dispatchAltp2mOp(&op, caller: caller, buffers: buffers)
    }

    /// Performs an `HVMOP_altp2m` hypercall from the 80-byte wire form, as the
    /// daemon receives it. An argument shorter than 80 bytes is a copy-in
    /// fault (`EFAULT`, step 2 of §3.2). The structure, with any outputs, is
    /// copied back into `rawArgument`.
    public func hvmAltp2mOp(rawArgument: inout [UInt8], caller: Caller,
                            buffers: HypercallBuffers = HypercallBuffers()) throws(XenErrno) {
        try admitHypercall(caller)
        guard host.altp2mSupported else { throw .notSupported }
        guard var op = HVMAltp2mOp(bytes: rawArgument) else { throw .badAddress }
        defer { rawArgument.replaceSubrange(0..<HVMAltp2mOp.size, with: op.bytes) }
        try dispatchAltp2mOp(&op, caller: caller, buffers: buffers)
    }

    /// `hvm_hypercall`'s privilege check: a guest's hypercalls from CPL > 0
    /// fail with `EPERM` before anything else (spec §1.4). A guest caller
    /// must be a domain that can run (simulator rule: else `ESRCH`).
    func admitHypercall(_ caller: Caller) throws(XenErrno) {
        guard case .guest(let id, let privilege) = caller else { return }
        guard privilege == .kernel else { throw .notPermitted }
        guard let domain = try? domain(id), !domain.isCrashed else { throw .notFound }
    }

    /// Resolves `DOMID_SELF` to the caller's own domain. A device model's own
    /// (stub) domain is not simulated, so that gives `nil`; callers treat it
    /// as the non-HVM domain it would be.
    func resolve(_ target: DomainID, for caller: Caller) -> DomainID? {
        guard target == .selfDomain else { return target }
        switch caller {
        case .controlDomain: return .controlDomain
        case .deviceModel: return nil
        case .guest(let id, _): return id
        }
    }

    /// `do_altp2m_op` from step 3 of §3.2 on.
    private func dispatchAltp2mOp(_ op: inout HVMAltp2mOp, caller: Caller,
                                  buffers: HypercallBuffers) throws(XenErrno) {
        guard op.pad1 == 0, op.pad2 == 0, op.version == HVMAltp2mOp.interfaceVersion else { throw .invalid }
        guard let command = Altp2mCommand(rawValue: op.cmd) else { throw .notSupported }
        guard let id = resolve(op.domain, for: caller) else { throw .notSupported }
        try withDomain(id) { domain throws(XenErrno) in
            guard domain.kind == .hvm else { throw .notSupported }
            if command != .getDomainState && command != .setDomainState && !domain.isActive {
                throw .notSupported
            }
            guard domain.mode != .disabled else { throw .invalid }
            guard domain.viewCount > 0 else { throw .notSupported }
            try checkAltp2mPermission(caller, target: id, mode: domain.mode, command: command)

            switch command {
            case .getDomainState: subopGetDomainState(&domain, &op)
            case .setDomainState: try subopSetDomainState(&domain, &op)
            case .vcpuEnableNotify: try subopVCPUEnableNotify(&domain, &op)
            case .vcpuDisableNotify: try subopVCPUDisableNotify(&domain, &op)
            case .createP2M: try subopCreateP2M(&domain, &op)
            case .destroyP2M: try subopDestroyP2M(&domain, &op)
            case .switchP2M: try subopSwitchP2M(&domain, &op)
            case .setMemAccess: try subopSetMemAccess(&domain, &op)
            case .setMemAccessMulti: try subopSetMemAccessMulti(&domain, &op, buffers: buffers)
            case .getMemAccess: try subopGetMemAccess(&domain, &op)
            case .changeGFN: try subopChangeGFN(&domain, &op, caller: caller)
            case .setSuppressVE: try subopSetSuppressVE(&domain, &op)
            case .setSuppressVEMulti: try subopSetSuppressVEMulti(&domain, &op)
            case .getSuppressVE: try subopGetSuppressVE(&domain, &op)
            case .getP2MIndex: try subopGetP2MIndex(&domain, &op)
            case .setVisibility: try subopSetVisibility(&domain, &op)
            }
        }
    }

    /// `xsm_hvm_altp2mhvm_op` under the default policy (spec §1.4).
    private func checkAltp2mPermission(_ caller: Caller, target: DomainID, mode: Altp2mMode,
                                       command: Altp2mCommand) throws(XenErrno) {
        switch caller {
        case .controlDomain:
            return
        case .deviceModel(let of):
            guard of == target else { throw .notPermitted }
        case .guest(let own, _):
            switch mode {
            case .mixed:
                guard own == target else { throw .notPermitted }
            case .limited:
                guard own == target, command == .vcpuEnableNotify else { throw .notPermitted }
            case .external, .disabled:
                throw .notPermitted
            }
        }
    }
}
