import Altp2m
@testable import Altp2mSim
import Testing

/// Spec §10 A: enabling and dispatch.
@Suite("A. Enabling and dispatch")
struct ScenariosEnablingTests {
    @Test("S01 view operations fail with EOPNOTSUPP while altp2m is inactive", arguments: everyProfile)
    func s01(xen: XenVersion) throws {
        let b = try Baseline(xen: xen)
        let state = b.hypercall(.getDomainState(b.d))
        #expect(state.rc == OK)
        #expect(state.op.stateOutput == 0)
        #expect(b.hypercall(.createP2M(b.d, defaultAccess: b.abi(.readWriteExecute))).rc == EOPNOTSUPP)
        #expect(b.hypercall(.getP2MIndex(b.d, vcpu: 0)).rc == EOPNOTSUPP)
        #expect(b.hypercall(.setVisibility(b.d, view: 0, visible: 1)).rc == EOPNOTSUPP)
    }

    @Test("S02 activation puts every vCPU on a visible view 0; repeating it changes nothing", arguments: everyProfile)
    func s02(xen: XenVersion) throws {
        let b = try Baseline(xen: xen)
        #expect(b.hypercall(.setDomainState(b.d, state: 1)).rc == OK)
        let state = b.hypercall(.getDomainState(b.d))
        #expect(state.rc == OK && state.op.stateOutput == 1)
        let idx0 = b.hypercall(.getP2MIndex(b.d, vcpu: 0))
        let idx1 = b.hypercall(.getP2MIndex(b.d, vcpu: 1))
        #expect(idx0.rc == OK && idx0.op.p2mIndexOutput == 0)
        #expect(idx1.rc == OK && idx1.op.p2mIndexOutput == 0)

        let view0 = try b.engine.viewInfo(b.d, view: 0)
        #expect(view0.isActive && view0.isVisible)
        #expect(view0.activeVCPUs == 2)
        #expect(view0.defaultAccess == .readWriteExecute)
        #expect(try b.engine.domainStatus(b.d).vcpuCount == 2)

        let generation = try b.engine.generation(of: b.d)
        #expect(b.hypercall(.setDomainState(b.d, state: 1)).rc == OK)
        #expect(b.hypercall(.setDomainState(b.d, state: 7)).rc == OK)
        #expect(try b.engine.viewInfo(b.d, view: 0) == view0)
        #expect(try b.engine.generation(of: b.d) == generation)
        #expect(try b.engine.vcpuInfo(b.d, vcpu: v1).view == 0)
    }

    @Test("S03 header checks run in dispatch order", arguments: everyProfile)
    func s03(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        var badVersion = HVMAltp2mOp.getDomainState(b.d)
        badVersion.version = 2
        #expect(b.hypercall(badVersion).rc == EINVAL)
        var badPad1 = HVMAltp2mOp.getDomainState(b.d)
        badPad1.pad1 = 1
        #expect(b.hypercall(badPad1).rc == EINVAL)
        var badPad2 = HVMAltp2mOp.getDomainState(b.d)
        badPad2.pad2 = 1
        #expect(b.hypercall(badPad2).rc == EINVAL)
        #expect(b.hypercall(HVMAltp2mOp(command: 17, domain: b.d)).rc == EOPNOTSUPP)
        #expect(b.hypercall(HVMAltp2mOp(command: 0, domain: b.d)).rc == EOPNOTSUPP)
        #expect(b.hypercall(.getDomainState(DomainID(rawValue: 0x1234))).rc == ESRCH)
        let pv = try b.engine.createDomain(DomainConfig(name: "pv", pages: 16, kind: .pv))
        #expect(b.hypercall(.getDomainState(pv)).rc == EOPNOTSUPP)
        // dom0 is PV: DOMID_SELF from dom0 is not an HVM domain.
        #expect(b.hypercall(.getDomainState(.selfDomain)).rc == EOPNOTSUPP)
        // A version error wins over an unknown command (step 3 before 4).
        var both = HVMAltp2mOp(command: 17, domain: b.d)
        both.version = 2
        #expect(b.hypercall(both).rc == EINVAL)
    }

    @Test("S04 mode disabled: EINVAL for domain state, EOPNOTSUPP for view ops", arguments: everyProfile)
    func s04(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, mode: .disabled)
        #expect(b.hypercall(.getDomainState(b.d)).rc == EINVAL)
        #expect(b.hypercall(.setDomainState(b.d, state: 1)).rc == EINVAL)
        #expect(b.hypercall(.createP2M(b.d, defaultAccess: b.abi(.readWriteExecute))).rc == EOPNOTSUPP)
        #expect(try b.engine.domainStatus(b.d).isActive == false)
    }

    /// The two hosts of S05: Xen booted without `altp2m=1`, and an AMD CPU.
    enum UnsupportedHost: CaseIterable, CustomStringConvertible {
        case noBootOption, amd
        var cpu: CPUProfile { self == .amd ? .amd : .intel }
        var bootOption: Bool { self == .amd }
        var description: String { self == .amd ? "AMD" : "altp2m=0" }
    }

    @Test("S05 unsupported host: every subop EOPNOTSUPP; [U] creation with a mode EINVAL; [4.17] param set 0",
          arguments: everyProfile, UnsupportedHost.allCases)
    func s05(xen: XenVersion, hostCase: UnsupportedHost) throws {
        let engine = try Altp2mEngine(host: HostProfile(cpu: hostCase.cpu, altp2mBootOption: hostCase.bootOption,
                                                        xen: xen), frameCount: 1024)
        if xen.modeFixedAtCreation && !xen.creationChecksAltp2mSupport {
            // 4.19 and 4.20 create the domain with its mode; nothing works.
            let d = try engine.createDomain(Baseline.config(mode: .external))
            #expect(try engine.getAltp2mParam(d) == .external)
            for command in Altp2mCommand.allCases {
                var op = HVMAltp2mOp(command, domain: d)
                #expect(rc { try engine.hvmAltp2mOp(&op, caller: .controlDomain) } == EOPNOTSUPP)
            }
        } else if xen.modeFixedAtCreation {
            #expect(rc { try engine.createDomain(Baseline.config(mode: .external)) } == EINVAL)
            let d = try engine.createDomain(Baseline.config(mode: .disabled))
            var op = HVMAltp2mOp.getDomainState(d)
            #expect(rc { try engine.hvmAltp2mOp(&op, caller: .controlDomain) } == EOPNOTSUPP)
        } else {
            let d = try engine.createDomain(Baseline.config(mode: .disabled))
            #expect(rc { try engine.hvmSetParam(d, index: 35, value: 2, caller: .controlDomain) } == OK)
            #expect(try engine.getAltp2mParam(d) == .external)
            for command in Altp2mCommand.allCases {
                var op = HVMAltp2mOp(command, domain: d)
                #expect(rc { try engine.hvmAltp2mOp(&op, caller: .controlDomain) } == EOPNOTSUPP)
            }
            #expect(rc { try engine.getDomainState(d) } == EOPNOTSUPP)
        }
    }

    @Test("S06 [4.17] HVM_PARAM_ALTP2M is set once, by dom0 only")
    func s06Xen417() throws {
        let engine = try Altp2mEngine(frameCount: 1024)
        let d = try engine.createDomain(Baseline.config(mode: .disabled))
        func set(_ value: UInt64, on domain: DomainID, as caller: Caller = .controlDomain) -> Int32 {
            rc { try engine.hvmSetParam(domain, index: 35, value: value, caller: caller) }
        }
        #expect(set(2, on: d) == OK)
        #expect(set(1, on: d) == EEXIST)
        #expect(set(0, on: d) == EEXIST)
        #expect(set(2, on: d) == OK)
        let fresh = try engine.createDomain(Baseline.config(name: "fresh", mode: .disabled))
        #expect(set(4, on: fresh) == EINVAL)
        let guestOwn = try engine.createDomain(Baseline.config(name: "guest", mode: .disabled))
        #expect(set(2, on: .selfDomain, as: .guestKernel(guestOwn)) == EPERM)
        #expect(try engine.getAltp2mParam(guestOwn) == .disabled)
        #expect(try engine.hvmGetParam(.selfDomain, index: 35, caller: .guestKernel(d)) == 2)
        // A device model may not set it either (XSM_PRIV), but may read it.
        #expect(set(2, on: fresh, as: .deviceModel(of: fresh)) == EPERM)
        #expect(try engine.hvmGetParam(fresh, index: 35, caller: .deviceModel(of: fresh)) == 0)
    }

    @Test("S06 [U] the param is fixed at creation: every set gives EEXIST")
    func s06Upstream() throws {
        let b = try Baseline(xen: .v4_21)
        #expect(try b.engine.getAltp2mParam(b.d) == .external)
        #expect(rc { try b.engine.setAltp2mParam(b.d, mode: .external) } == EEXIST)
        #expect(rc { try b.engine.hvmSetParam(b.d, index: 35, value: 0, caller: .controlDomain) } == EEXIST)
        #expect(rc { try b.engine.hvmSetParam(.selfDomain, index: 35, value: 2, caller: .guestKernel(b.d)) } == EEXIST)
        #expect(try b.engine.hvmGetParam(.selfDomain, index: 35, caller: .guestKernel(b.d)) == 2)
    }

    @Test("S07 nested virtualization excludes altp2m", arguments: everyProfile)
    func s07(xen: XenVersion) throws {
        let engine = try Altp2mEngine(host: HostProfile(xen: xen), frameCount: 1024)
        if xen.modeFixedAtCreation {
            #expect(rc { try engine.createDomain(Baseline.config(mode: .external, nestedVirt: true)) } == EINVAL)
        } else {
            let d = try engine.createDomain(Baseline.config(mode: .disabled, nestedVirt: true))
            #expect(rc { try engine.setAltp2mParam(d, mode: .external) } == EINVAL)
            #expect(try engine.getAltp2mParam(d) == .disabled)
        }
    }

    @Test("S08 [U] domain creation checks of altp2m.opts and nr")
    func s08() throws {
        let engine = try Altp2mEngine(host: HostProfile(xen: .v4_21), frameCount: 1024)
        let before = engine.frameCounts
        #expect(rc { try engine.createDomain(Baseline.config(mode: .external, viewCount: 0)) } == EINVAL)
        #expect(rc { try engine.createDomain(Baseline.config(mode: .external, viewCount: 513)) } == EINVAL)
        #expect(rc { try engine.createDomain(Baseline.config(mode: .disabled, viewCount: 4)) } == EINVAL)
        var badOptions = Baseline.config(mode: .disabled)
        badOptions.altp2mOptions = 4
        #expect(rc { try engine.createDomain(badOptions) } == EINVAL)
        #expect(rc { try engine.createDomain(Baseline.config(mode: .external, hap: false)) } == EINVAL)
        #expect(engine.frameCounts == before)   // failed creations took nothing
        #expect(engine.domainList().count == 1)

        let d = try engine.createDomain(Baseline.config(mode: .external, viewCount: 1))
        #expect(rc { try engine.setDomainState(d, active: true) } == OK)
        #expect(rc { try engine.createView(d, defaultAccess: .readWriteExecute) } == EINVAL)
        #expect(try engine.domainStatus(d).viewCount == 1)
    }

    @Test("S09 mixed mode: the guest kernel may act on itself only", arguments: everyProfile)
    func s09(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, mode: .mixed, active: true)
        let create = HVMAltp2mOp.createP2M(.selfDomain, defaultAccess: b.abi(.readWriteExecute))
        let result = b.hypercall(create, as: .guestKernel(b.d))
        #expect(result.rc == OK)
        #expect(result.op.viewOutput == 1)
        #expect(b.hypercall(create, as: .guestUser(b.d)).rc == EPERM)

        let other = try b.engine.createDomain(Baseline.config(name: "E", mode: .mixed))
        try b.engine.setDomainState(other, active: true)
        let createOther = HVMAltp2mOp.createP2M(other, defaultAccess: b.abi(.readWriteExecute))
        #expect(b.hypercall(createOther, as: .guestKernel(b.d)).rc == EPERM)

        let inactive = try b.engine.createDomain(Baseline.config(name: "F", mode: .mixed))
        let createInactive = HVMAltp2mOp.createP2M(inactive, defaultAccess: b.abi(.readWriteExecute))
        #expect(b.hypercall(createInactive, as: .guestKernel(b.d)).rc == EOPNOTSUPP)
        #expect(try b.engine.viewInfo(other, view: 1).isActive == false)
    }

    @Test("S10 external mode: the guest may do nothing", arguments: everyProfile)
    func s10(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        #expect(b.hypercall(.getDomainState(b.d), as: .guestKernel(b.d)).rc == EPERM)
        #expect(b.hypercall(.setVisibility(b.d, view: 0, visible: 0), as: .guestKernel(b.d)).rc == EPERM)
        #expect(try b.engine.viewInfo(b.d, view: 0).isVisible)
    }
}
