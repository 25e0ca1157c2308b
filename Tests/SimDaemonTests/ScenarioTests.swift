import Altp2mSim
import Testing

/// Conformance scenarios of the altp2m spec (section 10), driven end to end
/// through the built `chanctl` with `--json`: each checks exit codes, errno
/// names and codes, and outputs.
@Suite("Spec scenarios through chanctl", .serialized)
struct ScenarioTests {
    /// Each scenario runs on the simulator's own requests and again with
    /// `--backend xen-sim`, where the Xen backend's code (XenControl over the
    /// simulator's libxenctrl) makes the same calls: the answers must agree.
    static let backends = ["sim", "xen-sim"]

    static let g1 = "0x100", g2 = "0x101", g3 = "0x102", hole = "0x300", info = "0x180"

    /// Baseline B: an HVM domain `d` with 2 vCPUs, gfns 0..0x1FF mapped,
    /// 0x200 up holes, mode external; optionally activated.
    static func baseline(_ sim: ChanctlHarness, mode: String = "external", active: Bool = true) {
        sim.ok("domain", "create", "d", "--vcpus", "2", "--memory-mib", "2", "--altp2m", mode)
        if active { sim.ok("altp2m", "set-state", "d", "on") }
    }

    @Test("S01: nothing but the domain state works while altp2m is inactive", arguments: ScenarioTests.backends)
    func s01(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim, active: false)
            #expect(sim.ok("altp2m", "get-state", "d")["state"]?.string == "off")
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "create-view", "d", "--default-access", "rwx")
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "vcpu-view", "d", "0")
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "set-visibility", "d", "0", "on")
        }
    }

    @Test("S02: activation puts every vCPU on view 0; repeating it changes nothing", arguments: ScenarioTests.backends)
    func s02(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            #expect(sim.ok("altp2m", "get-state", "d")["state"]?.string == "on")
            #expect(sim.ok("altp2m", "vcpu-view", "d", "0")["view"]?.int64 == 0)
            #expect(sim.ok("altp2m", "vcpu-view", "d", "1")["view"]?.int64 == 0)
            sim.ok("altp2m", "set-state", "d", "on")
            sim.ok("altp2m", "set-state", "d", "7")
            let view0 = sim.ok("sim", "view-entry", "d", "0", Self.g1)
            #expect(view0["view_active"]?.bool == true)
            #expect(view0["view_visible"]?.bool == true)
            #expect(view0["view_active_vcpus"]?.int64 == 2)
        }
    }

    @Test("S03: header checks: version, pad, cmd, unknown domain, PV domain", arguments: ScenarioTests.backends)
    func s03(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("domain", "create", "pvguest", "--type", "pv", "--memory-mib", "1")
            sim.xenError("EINVAL", -22, "altp2m", "raw", "d", "--cmd", "1", "--version", "2")
            sim.xenError("EINVAL", -22, "altp2m", "raw", "d", "--cmd", "1", "--pad1", "1")
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "raw", "d", "--cmd", "17")
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "raw", "d", "--cmd", "0")
            sim.xenError("ESRCH", -3, "altp2m", "get-state", "999")
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "get-state", "pvguest")
        }
    }

    @Test("S04: a domain with altp2m disabled", arguments: ScenarioTests.backends)
    func s04(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim, mode: "disabled", active: false)
            sim.xenError("EINVAL", -22, "altp2m", "get-state", "d")
            sim.xenError("EINVAL", -22, "altp2m", "set-state", "d", "on")
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "create-view", "d")
        }
    }

    @Test("S05: Xen booted without altp2m=1, and an AMD host", arguments: ScenarioTests.backends)
    func s05(backend: String) throws {
        try withSimulator(backend: backend, "--no-altp2m-boot") { sim in
            Self.baseline(sim, mode: "disabled", active: false)
            sim.ok("domain", "set-param", "d", "altp2m", "external")
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "get-state", "d")
        }
        try withSimulator(backend: backend, "--cpu", "amd") { sim in
            Self.baseline(sim, mode: "external", active: false)
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "get-state", "d")
            #expect(sim.ok("sim", "status")["cpu"]?.string == "amd")
        }
    }

    @Test("S06: HVM_PARAM_ALTP2M on 4.17 is set once; the guest may read but not set it; 4.19 refuses every set", arguments: ScenarioTests.backends)
    func s06(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim, mode: "disabled", active: false)
            sim.ok("domain", "set-param", "d", "altp2m", "2")
            sim.xenError("EEXIST", -17, "domain", "set-param", "d", "altp2m", "1")
            sim.xenError("EEXIST", -17, "domain", "set-param", "d", "altp2m", "0")
            sim.ok("domain", "set-param", "d", "altp2m", "2")
            sim.ok("domain", "create", "fresh", "--memory-mib", "1")
            sim.xenError("EINVAL", -22, "domain", "set-param", "fresh", "altp2m", "4")
            sim.xenError("EPERM", -1, "domain", "set-param", "d", "altp2m", "2", "--as-guest")
            #expect(sim.ok("domain", "get-param", "d", "altp2m", "--as-guest")["value"]?.uint64 == 2)
        }
        try withSimulator(backend: backend, "--xen", "4.19") { sim in
            Self.baseline(sim, mode: "external", active: false)
            sim.xenError("EEXIST", -17, "domain", "set-param", "d", "altp2m", "external")
        }
    }

    @Test("S09, S10: guest callers in mixed and external mode", arguments: ScenarioTests.backends)
    func s09s10(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            sim.ok("domain", "create", "m", "--altp2m", "mixed", "--memory-mib", "2")
            sim.ok("altp2m", "set-state", "m", "on")
            #expect(sim.ok("altp2m", "create-view", "m", "--default-access", "rwx", "--as-guest")["view"]?.int64 == 1)
            sim.xenError("EPERM", -1, "altp2m", "create-view", "m", "--as-guest-user")
            Self.baseline(sim, mode: "external")
            sim.xenError("EPERM", -1, "altp2m", "get-state", "d", "--as-guest")
            sim.xenError("EPERM", -1, "altp2m", "set-visibility", "d", "0", "off", "--as-guest")
        }
    }

    @Test("S14, S15: view slots are the lowest free; ten views at most on 4.17", arguments: ScenarioTests.backends)
    func s14s15(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            for expected in 1...3 {
                #expect(sim.ok("altp2m", "create-view", "d", "--default-access", "rwx")["view"]?.int64 == Int64(expected))
            }
            sim.ok("altp2m", "destroy-view", "d", "2")
            #expect(sim.ok("altp2m", "create-view", "d", "--default-access", "r")["view"]?.int64 == 2)
            #expect(sim.ok("altp2m", "get-access", "d", "2", "~0")["access"]?.string == "r")
            for expected in 4...9 {
                #expect(sim.ok("altp2m", "create-view", "d")["view"]?.int64 == Int64(expected))
            }
            sim.xenError("EINVAL", -22, "altp2m", "create-view", "d")
        }
    }

    @Test("S16: create_p2m's default access: above default is EINVAL, default is the host's", arguments: ScenarioTests.backends)
    func s16(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.xenError("EINVAL", -22, "altp2m", "create-view", "d", "--default-access", "11")
            let view = sim.ok("altp2m", "create-view", "d", "--default-access", "default")["view"]?.int64 ?? -1
            #expect(sim.ok("altp2m", "get-access", "d", String(view), "~0")["access"]?.string == "rwx")
            sim.ok("altp2m", "create-view", "d", "--default-access", "10")
        }
    }

    @Test("S20, S21: switch_p2m checks and per-vCPU views", arguments: ScenarioTests.backends)
    func s20s21(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("altp2m", "create-view", "d")
            sim.ok("altp2m", "create-view", "d")
            sim.xenError("EINVAL", -22, "altp2m", "switch-view", "d", "4")
            sim.xenError("EINVAL", -22, "altp2m", "switch-view", "d", "10")
            sim.ok("altp2m", "switch-view", "d", "0")
            sim.xenError("EINVAL", -22, "altp2m", "vcpu-view", "d", "2")
            sim.ok("altp2m", "switch-view", "d", "1")
            #expect(sim.ok("altp2m", "vcpu-view", "d", "0")["view"]?.int64 == 1)
            #expect(sim.ok("altp2m", "vcpu-view", "d", "1")["view"]?.int64 == 1)
        }
    }

    @Test("S22, S25: visibility gates switch_p2m; a re-created view is visible", arguments: ScenarioTests.backends)
    func s22s25(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("altp2m", "create-view", "d")
            sim.xenError("EINVAL", -22, "altp2m", "set-visibility", "d", "4", "on")
            // set_visibility with pad (byte 3 of the union) = 1
            sim.xenError("EINVAL", -22, "altp2m", "raw", "d", "--cmd", "16", "--payload", "01000101")
            sim.ok("altp2m", "set-visibility", "d", "1", "off")
            sim.xenError("EINVAL", -22, "altp2m", "switch-view", "d", "1")
            sim.ok("altp2m", "set-visibility", "d", "1", "on")
            sim.ok("altp2m", "switch-view", "d", "1")
            sim.ok("altp2m", "switch-view", "d", "0")
            // S25
            sim.ok("altp2m", "set-visibility", "d", "1", "off")
            sim.ok("altp2m", "destroy-view", "d", "1")
            #expect(sim.ok("altp2m", "create-view", "d")["view"]?.int64 == 1)
            sim.ok("altp2m", "switch-view", "d", "1")
        }
    }

    @Test("S26, S27: VMFUNC switches one vCPU; bad EAX, ECX or an absent view is #UD", arguments: ScenarioTests.backends)
    func s26s27(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("altp2m", "create-view", "d")
            // Without enable_notify the VM-functions control is off: #UD.
            #expect(sim.ok("sim", "vmfunc", "d", "0", "1")["outcome"]?.string == "ud")
            sim.ok("altp2m", "enable-notify", "d", "0", Self.info)
            let switched = sim.ok("sim", "vmfunc", "d", "0", "1")
            #expect(switched["outcome"]?.string == "ok")
            #expect(switched["view"]?.int64 == 1)
            #expect(sim.ok("altp2m", "vcpu-view", "d", "0")["view"]?.int64 == 1)
            #expect(sim.ok("altp2m", "vcpu-view", "d", "1")["view"]?.int64 == 0)
            #expect(sim.ok("sim", "view-entry", "d", "1", Self.g1)["view_active_vcpus"]?.int64 == 1)
            #expect(sim.ok("sim", "view-entry", "d", "0", Self.g1)["view_active_vcpus"]?.int64 == 1)
            for args in [["1", "--eax", "1"], ["512"], ["3"]] {
                let ud = sim.ok(["sim", "vmfunc", "d", "0"] + args)
                #expect(ud["outcome"]?.string == "ud")
                #expect(ud["view"]?.int64 == 1)
            }
        }
    }

    @Test("S29: vcpu_enable_notify checks; no #VE hardware is EOPNOTSUPP", arguments: ScenarioTests.backends)
    func s29(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.xenError("EINVAL", -22, "altp2m", "enable-notify", "d", "2", Self.info)
            // vcpu 0, pad (bytes 4-7) = 1, gfn 0x180
            sim.xenError("EINVAL", -22, "altp2m", "raw", "d", "--cmd", "3", "--payload", "00000000010000008001000000000000")
            sim.xenError("EINVAL", -22, "altp2m", "enable-notify", "d", "0", Self.hole)
            sim.ok("altp2m", "enable-notify", "d", "0", Self.info)
            sim.xenError("EEXIST", -17, "altp2m", "enable-notify", "d", "0", Self.info)
            sim.ok("altp2m", "disable-notify", "d", "1")
        }
        try withSimulator(backend: backend, "--cpu", "intel-no-ve") { sim in
            Self.baseline(sim)
            sim.xenError("EOPNOTSUPP", -95, "altp2m", "enable-notify", "d", "0", Self.info)
        }
    }

    @Test("S30: an access violating an sve-0 entry delivers #VE with no vm_event", arguments: ScenarioTests.backends)
    func s30(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("monitor", "enable", "d")
            sim.ok("altp2m", "create-view", "d")
            sim.ok("altp2m", "set-access", "d", "1", Self.g2, "r")
            sim.ok("altp2m", "set-suppress-ve", "d", "1", Self.g2, "off")
            sim.ok("altp2m", "enable-notify", "d", "0", Self.info)
            sim.ok("altp2m", "switch-view", "d", "1")
            let access = sim.ok("sim", "access", "d", "0", Self.g2, "w", "--offset", "0x10")
            #expect(access["outcome"]?.string == "ve")
            #expect(access["ve"]?["gpa"]?.string == "0x101010")
            #expect(access["ve"]?["eptp_index"]?.int64 == 1)
            #expect(access["ve"]?["exit_reason"]?.int64 == 48)
            #expect(access["ve"]?["semaphore"]?.uint64 == 0xFFFF_FFFF)
            let qualification = UInt64(access["ve"]?["exit_qualification"]?.string?.dropFirst(2) ?? "", radix: 16) ?? 0
            #expect(qualification & 2 != 0)
            #expect(sim.ok("monitor", "events", "d")["events"]?.array?.isEmpty == true)
            #expect(sim.ok("altp2m", "get-access", "d", "1", Self.g2)["access"]?.string == "r")
            #expect(sim.ok("sim", "ve-info", "d", "0")["gpa"]?.string == "0x101010")
            // The semaphore is set: the next violation becomes a vm_event.
            #expect(sim.ok("sim", "access", "d", "0", Self.g2, "w")["outcome"]?.string == "vm_event")
        }
    }

    @Test("S33, S36: set_suppress_ve checks and the multi variant's first error", arguments: ScenarioTests.backends)
    func s33s36(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("altp2m", "create-view", "d")
            // view 1, sve 0, pad1 (byte 3) = 1, gfn 0x100
            sim.xenError("EINVAL", -22, "altp2m", "raw", "d", "--cmd", "10", "--payload", "01000001000000000001000000000000")
            sim.xenError("EINVAL", -22, "altp2m", "set-suppress-ve", "d", "4", Self.g1, "off")
            sim.xenError("ESRCH", -3, "altp2m", "set-suppress-ve", "d", "1", Self.hole, "off")
            let multi = sim.ok("altp2m", "set-suppress-ve-multi", "d", "1", "0x1FE", "0x301", "off")
            #expect(multi["first_error"]?.string == "ESRCH")
            #expect(multi["first_error_code"]?.int64 == -3)
            #expect(multi["first_error_gfn"]?.string == "0x200")
            if backend == "sim" {
                // The hypercall's continuation field; libxenctrl does not return it.
                #expect(multi["first_gfn"]?.string == "0x302")
            }
            #expect(sim.ok("altp2m", "get-suppress-ve", "d", "1", "0x1FE")["suppress_ve"]?.bool == false)
            #expect(sim.ok("altp2m", "get-suppress-ve", "d", "1", "0x1FF")["suppress_ve"]?.bool == false)
            sim.xenError("EINVAL", -22, "altp2m", "set-suppress-ve-multi", "d", "1", "0x150", "0x140", "off")
        }
    }

    @Test("S37, S39, S40: get/set_mem_access read one p2m only; bad views and values are EINVAL", arguments: ScenarioTests.backends)
    func s37s39s40(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            #expect(sim.ok("altp2m", "create-view", "d", "--default-access", "rx")["view"]?.int64 == 1)
            sim.xenError("ESRCH", -3, "altp2m", "get-access", "d", "1", Self.g1)
            #expect(sim.ok("altp2m", "get-access", "d", "1", "~0")["access"]?.string == "rx")
            #expect(sim.ok("altp2m", "get-access", "d", "0", Self.g1)["access"]?.string == "rwx")
            #expect(sim.ok("altp2m", "get-access", "d", "0", "~0")["access"]?.string == "rwx")
            // S39
            sim.ok("altp2m", "set-access", "d", "1", Self.g1, "n")
            #expect(sim.ok("altp2m", "get-access", "d", "1", Self.g1)["access"]?.string == "n")
            #expect(sim.ok("altp2m", "get-suppress-ve", "d", "1", Self.g1)["suppress_ve"]?.bool == true)
            sim.xenError("ESRCH", -3, "altp2m", "get-access", "d", "1", Self.g2)
            #expect(sim.ok("altp2m", "get-access", "d", "0", Self.g1)["access"]?.string == "rwx")
            // S40
            sim.xenError("EINVAL", -22, "altp2m", "set-access", "d", "4", Self.g1, "r")
            sim.xenError("EINVAL", -22, "altp2m", "set-access", "d", "1", Self.g1, "99")
            // view 1, access r, pad (bytes 4-7) = 1, gfn 0x100
            sim.xenError("EINVAL", -22, "altp2m", "raw", "d", "--cmd", "7", "--payload", "01000100010000000001000000000000")
            sim.ok("altp2m", "set-access", "d", "1", Self.hole, "r")
            sim.xenError("ESRCH", -3, "altp2m", "get-access", "d", "1", Self.hole)
        }
    }

    @Test("S43: set_mem_access_multi keeps what it applied before a bad value", arguments: ScenarioTests.backends)
    func s43(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("altp2m", "create-view", "d")
            sim.xenError("EINVAL", -22, "altp2m", "set-access-multi", "d", "1", "\(Self.g1)=r", "\(Self.g2)=99", "\(Self.g3)=n")
            #expect(sim.ok("altp2m", "get-access", "d", "1", Self.g1)["access"]?.string == "r")
            sim.xenError("ESRCH", -3, "altp2m", "get-access", "d", "1", Self.g3)
        }
    }

    @Test("S44, S45, S46: rx2rw converts silently, n2rwx sends an async event, no ring relaxes", arguments: ScenarioTests.backends)
    func s44s45s46(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("altp2m", "create-view", "d")
            sim.ok("altp2m", "set-access", "d", "1", Self.g1, "rx2rw")
            sim.ok("altp2m", "set-access", "d", "1", Self.g2, "r")
            sim.ok("altp2m", "switch-view", "d", "1")
            // S46 (no monitor ring): the violation relaxes the entry, no event.
            let relaxed = sim.ok("sim", "access", "d", "0", Self.g2, "w")
            #expect(relaxed["outcome"]?.string == "relaxed")
            #expect(sim.ok("altp2m", "get-access", "d", "1", Self.g2)["access"]?.string == "rwx")
            sim.ok("monitor", "enable", "d")
            // S44
            #expect(sim.ok("sim", "access", "d", "0", Self.g1, "w")["outcome"]?.string == "relaxed")
            #expect(sim.ok("altp2m", "get-access", "d", "1", Self.g1)["access"]?.string == "rw")
            #expect(sim.ok("altp2m", "get-access", "d", "0", Self.g1)["access"]?.string == "rwx")
            #expect(sim.ok("monitor", "events", "d")["events"]?.array?.isEmpty == true)
            // S45
            sim.ok("altp2m", "set-access", "d", "1", Self.g3, "n2rwx")
            let event = sim.ok("sim", "access", "d", "0", Self.g3, "r")
            #expect(event["outcome"]?.string == "vm_event")
            #expect(event["paused"]?.bool == false)
            let request = event["vm_event"]
            #expect(request?["altp2m_idx"]?.int64 == 1)
            #expect(request?["flag_names"]?.array?.contains("alternate_p2m") == true)
            #expect(request?["flag_names"]?.array?.contains("vcpu_paused") == false)
            #expect(request?["mem_access"]?["access"]?.array == ["r"])
            #expect(sim.ok("altp2m", "get-access", "d", "1", Self.g3)["access"]?.string == "rwx")
            #expect(sim.ok("monitor", "events", "d")["events"]?.array?.count == 1)
        }
    }

    @Test("S47, S48, S51: change_gfn remaps in one view; checks; revert re-copies lazily", arguments: ScenarioTests.backends)
    func s47s48s51(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("altp2m", "create-view", "d")
            let hostG1 = sim.ok("sim", "view-entry", "d", "host", Self.g1)["mfn"]?.string
            let hostG2 = sim.ok("sim", "view-entry", "d", "host", Self.g2)["mfn"]?.string
            sim.ok("altp2m", "change-gfn", "d", "1", Self.g1, Self.g2)
            #expect(sim.ok("altp2m", "get-access", "d", "1", Self.g1)["access"]?.string == "rwx")
            #expect(sim.ok("altp2m", "get-suppress-ve", "d", "1", Self.g1)["suppress_ve"]?.bool == true)
            let entry = sim.ok("sim", "view-entry", "d", "1", Self.g1)
            #expect(entry["mfn"]?.string == hostG2)
            #expect(entry["remapped_range"] == .array([.string(Self.g2), .string(Self.g2)]))
            #expect(sim.ok("sim", "view-entry", "d", "host", Self.g1)["mfn"]?.string == hostG1)
            #expect(sim.ok("sim", "view-entry", "d", "0", Self.g1)["present"]?.bool == false)
            // S48
            sim.xenError("EINVAL", -22, "altp2m", "change-gfn", "d", "4", Self.g1, Self.g2)
            sim.xenError("EINVAL", -22, "altp2m", "change-gfn", "d", "10", Self.g1, Self.g2)
            sim.xenError("ESRCH", -3, "altp2m", "change-gfn", "d", "1", Self.hole, Self.g2)
            sim.xenError("ESRCH", -3, "altp2m", "change-gfn", "d", "1", Self.g1, Self.hole)
            sim.xenError("EINVAL", -22, "altp2m", "raw", "d", "--cmd", "8",
                         "--payload", "010001000000000000010000000000000101000000000000")
            // S51
            sim.ok("altp2m", "change-gfn", "d", "1", Self.g1, "~0")
            sim.xenError("ESRCH", -3, "altp2m", "get-access", "d", "1", Self.g1)
            sim.ok("altp2m", "switch-view", "d", "1")
            let reread = sim.ok("sim", "access", "d", "0", Self.g1, "r")
            #expect(reread["outcome"]?.string == "lazy_copy_then_ok")
            #expect(reread["mfn"]?.string == hostG1)
            #expect(sim.ok("sim", "view-entry", "d", "1", Self.g1)["remapped_range"] == .array([.string(Self.g2), .string(Self.g2)]))
        }
    }

    @Test("S55, S56: host drops outside the remapped range keep the view; host writes overwrite remaps", arguments: ScenarioTests.backends)
    func s55s56(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("altp2m", "create-view", "d")
            let hostG1 = sim.ok("sim", "view-entry", "d", "host", Self.g1)["mfn"]?.string
            let hostG2 = sim.ok("sim", "view-entry", "d", "host", Self.g2)["mfn"]?.string
            sim.ok("altp2m", "change-gfn", "d", "1", Self.g1, Self.g2)
            sim.ok("altp2m", "set-access", "d", "1", "0x150", "n")
            sim.ok("altp2m", "set-access", "d", "1", "0x151", "n")
            sim.ok("sim", "host", "d", "drop", "0x151")
            sim.xenError("ESRCH", -3, "altp2m", "get-access", "d", "1", "0x151")
            #expect(sim.ok("altp2m", "get-access", "d", "1", "0x150")["access"]?.string == "n")
            #expect(sim.ok("sim", "view-entry", "d", "1", Self.g1)["mfn"]?.string == hostG2)
            // S56
            sim.ok("altp2m", "set-access", "d", "0", Self.g1, "rw")
            let entry = sim.ok("sim", "view-entry", "d", "1", Self.g1)
            #expect(entry["mfn"]?.string == hostG1)
            #expect(entry["access"]?.string == "rw")
            #expect(entry["remapped_range"] == .array([.string(Self.g2), .string(Self.g2)]))
        }
    }

    @Test("S19, S59: a vm_event response moves the paused vCPU, ignoring visibility; bad indices are ignored", arguments: ScenarioTests.backends)
    func s19s59(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.ok("monitor", "enable", "d")
            sim.ok("altp2m", "create-view", "d")
            sim.ok("altp2m", "create-view", "d")
            sim.ok("altp2m", "set-access", "d", "0", Self.g1, "r")
            // v1 on view 0 writes G1: the lazy copy takes the host access r
            // (4.17), the write violates it, v1 pauses on a sync event.
            let event = sim.ok("sim", "access", "d", "1", Self.g1, "w")
            #expect(event["outcome"]?.string == "vm_event")
            #expect(event["paused"]?.bool == true)
            #expect(event["vm_event"]?["flag_names"]?.array?.contains("vcpu_paused") == true)
            #expect(sim.ok("sim", "access", "d", "1", Self.g1, "r")["outcome"]?.string == "vcpu_paused")
            sim.ok("altp2m", "set-visibility", "d", "2", "off")
            #expect(sim.ok("monitor", "respond", "d", "1", "--altp2m-idx", "2")["view"]?.int64 == 2)
            #expect(sim.ok("altp2m", "vcpu-view", "d", "0")["view"]?.int64 == 0)
            sim.xenError("EBUSY", -16, "altp2m", "destroy-view", "d", "2")
            // S59: an index that names no view is silently ignored.
            sim.ok("altp2m", "set-access", "d", "2", Self.g2, "r")
            sim.ok("altp2m", "switch-view", "d", "0")
            sim.ok("altp2m", "destroy-view", "d", "2")
            sim.ok("altp2m", "switch-view", "d", "1")
            sim.ok("altp2m", "set-access", "d", "1", Self.g2, "r")
            #expect(sim.ok("sim", "access", "d", "0", Self.g2, "w")["outcome"]?.string == "vm_event")
            #expect(sim.ok("monitor", "respond", "d", "0", "--altp2m-idx", "7")["view"]?.int64 == 1)
            // A stale response for a running vCPU is ignored too.
            #expect(sim.ok("monitor", "respond", "d", "0", "--altp2m-idx", "0")["view"]?.int64 == 1)
        }
    }

    @Test("xc_monitor_disable from the CLI: with access_required and no listener a violation crashes the domain",
          arguments: ScenarioTests.backends)
    func monitorDisable(backend: String) throws {
        try withSimulator(backend: backend) { sim in
            Self.baseline(sim)
            sim.xenError("EINVAL", -22, "monitor", "disable", "d")
            sim.ok("monitor", "enable", "d", "--access-required")
            sim.ok("altp2m", "create-view", "d")
            sim.ok("altp2m", "set-access", "d", "1", Self.g1, "r")
            sim.ok("altp2m", "switch-view", "d", "1")
            #expect(sim.ok("sim", "access", "d", "0", Self.g1, "w")["outcome"]?.string == "vm_event")
            sim.ok("monitor", "disable", "d")
            // v0 still waits for the response the ring took with it.
            #expect(sim.ok("sim", "access", "d", "0", Self.g1, "r")["outcome"]?.string == "vcpu_paused")
            #expect(sim.ok("sim", "access", "d", "1", Self.g1, "w")["outcome"]?.string == "domain_crashed")
        }
    }
}

