import Altp2m
@testable import Altp2mSim
import Testing

// Negative return codes as the hypervisor returns them (spec §0.2). Tests
// compare raw codes so that a wrong number cannot hide behind a right name.
let OK: Int32 = 0
let EPERM: Int32 = -1
let ESRCH: Int32 = -3
let EFAULT: Int32 = -14
let EBUSY: Int32 = -16
let EEXIST: Int32 = -17
let EINVAL: Int32 = -22
let EOPNOTSUPP: Int32 = -95

/// The hypercall return code of `body`: 0, or the negated error number.
/// Any error other than a `XenErrno` is a test failure.
func rc<T>(_ body: () throws -> T) -> Int32 {
    do {
        _ = try body()
        return OK
    } catch let error as XenErrno {
        return error.code
    } catch {
        Issue.record("not a hypervisor error: \(error)")
        return .min
    }
}

// The names of spec §10.
let G1: GFN = 0x100
let G2: GFN = 0x101
let G3: GFN = 0x102
let H: GFN = 0x300
let INFO: GFN = 0x180
let v0: VCPUID = 0
let v1: VCPUID = 1

/// Every profile: 4.17, 4.19 (mode at creation, lazy copy takes the view
/// default) and 4.21 (also r_pw, the view count, the altp2m support check at
/// creation). The scenarios run on each.
let everyProfile: [XenVersion] = XenVersion.allCases

/// Spec §10 baseline B: Intel with VMFUNC and #VE, `altp2m=1`; domain D is
/// HVM with 2 vCPUs, gfns 0x100–0x1FF mapped as 4K `p2m_ram_rw` rwx sve 1
/// and holes elsewhere; mode external (4.17: dom0 set the param; ≥4.19: at
/// creation, nr 10); dom0 has a monitor ring and `access_required` is off.
struct Baseline {
    let engine: Altp2mEngine
    let d: DomainID

    init(xen: XenVersion = .v4_17, cpu: CPUProfile = .intel, bootOption: Bool = true,
         mode: Altp2mMode = .external, active: Bool = false, monitor: Bool = true,
         viewCount: UInt16? = nil) throws {
        engine = try Altp2mEngine(host: HostProfile(cpu: cpu, altp2mBootOption: bootOption, xen: xen),
                                  frameCount: 2048)
        d = try engine.createDomain(Baseline.config(mode: mode, viewCount: viewCount))
        if monitor { try engine.enableMonitor(d) }
        if active { try engine.setDomainState(d, active: true) }
    }

    static func config(name: String = "D", mode: Altp2mMode = .external, viewCount: UInt16? = nil,
                       kind: DomainKind = .hvm, nestedVirt: Bool = false, hap: Bool = true) -> DomainConfig {
        DomainConfig(name: name, vcpuCount: 2, memory: [GFN(0x100)..<GFN(0x200)], kind: kind, hap: hap,
                     nestedVirt: nestedVirt, altp2mMode: mode, altp2mViewCount: viewCount)
    }

    /// A raw `HVMOP_altp2m` as `caller`; returns the hypercall's code and the
    /// argument as written back.
    @discardableResult
    func hypercall(_ op: HVMAltp2mOp, as caller: Caller = .controlDomain,
                   buffers: HypercallBuffers = HypercallBuffers()) -> (rc: Int32, op: HVMAltp2mOp) {
        var op = op
        let code = rc { try engine.hvmAltp2mOp(&op, caller: caller, buffers: buffers) }
        return (code, op)
    }

    /// The ABI number of an access on this host's Xen.
    func abi(_ access: MemAccess) -> UInt16 { access.abiValue(for: engine.host.xen)! }

    /// The host frame of a gfn of D.
    func hostMFN(_ gfn: GFN) throws -> MFN {
        try #require(try engine.entry(d, .host, gfn: gfn)).mfn
    }

    /// The entry of `gfn` in view `view`'s own table (view 0: the view-0 table).
    func viewEntry(_ view: ViewID, _ gfn: GFN) throws -> ViewTableEntry? {
        try engine.entry(d, .view(view), gfn: gfn)
    }

    /// Fills the frame behind `gfn` with `byte`, directly in machine memory.
    func fill(_ gfn: GFN, with byte: UInt8) throws {
        engine.memory.write(try hostMFN(gfn), offset: 0, bytes: Array(repeating: byte, count: MachineFrame.size))
    }

    /// Puts `vcpu` into a synchronous mem_access wait on its current view:
    /// the vCPU touches G3 (so its view holds G3), dom0 restricts G3 to `r`
    /// in that view (view 0 through the host, which propagates), and the
    /// vCPU writes G3. Returns the request.
    @discardableResult
    func pauseOnSyncEvent(_ vcpu: VCPUID) throws -> VMEventRequest {
        let view = try engine.vcpuInfo(d, vcpu: vcpu).view
        _ = try engine.guestAccess(d, vcpu: vcpu, gfn: G3, kind: .read)
        try engine.setMemAccess(d, view: view, gfn: G3, access: .read)
        let outcome = try engine.guestAccess(d, vcpu: vcpu, gfn: G3, kind: .write)
        guard case .vmEvent(let request, nil) = outcome else {
            Issue.record("expected a synchronous event, got \(outcome)")
            throw XenErrno.invalid
        }
        #expect(try engine.vcpuInfo(d, vcpu: vcpu).pausedByVMEvent)
        _ = try engine.takeMonitorRequests(d)
        return request
    }
}
