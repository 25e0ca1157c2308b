/// The processor features that decide what altp2m can do (spec §1.1, §1.6).
///
/// Use the named profiles; the feature flags exist so that code asks about a
/// feature rather than a vendor.
public struct CPUProfile: Hashable, Sendable, CustomStringConvertible {
    /// Intel VMX with EPT: the only platform on which Xen implements altp2m.
    public var hasEPT: Bool
    /// VM functions with leaf 0 (EPTP switching): hardware VMFUNC.
    public var hasVMFUNC: Bool
    /// Virtualization exceptions (#VE). Xen uses them only together with VMFUNC.
    public var hasVE: Bool
    /// The monitor trap flag (single-stepping for vm_event).
    public var hasMTF: Bool
    /// Page-modification logging (Broadwell and later; Xen's `ept=pml`
    /// defaults to on). In log-dirty mode Xen then leaves 4-KiB log-dirty
    /// entries writable and lets the CPU log the writes (`ept_p2m_type_to_flags`).
    public var hasPML: Bool
    /// A short name for messages.
    public var name: String

    /// Creates a profile from its features.
    public init(name: String, hasEPT: Bool, hasVMFUNC: Bool, hasVE: Bool, hasMTF: Bool, hasPML: Bool = false) {
        self.name = name
        self.hasPML = hasPML && hasEPT
        self.hasEPT = hasEPT
        self.hasVMFUNC = hasVMFUNC
        self.hasVE = hasVE && hasVMFUNC   // Xen masks #VE off without VMFUNC (§1.6)
        self.hasMTF = hasMTF
    }

    /// An Intel CPU with EPT, VMFUNC and #VE (Broadwell and later): the default.
    public static let intel = CPUProfile(name: "intel", hasEPT: true, hasVMFUNC: true, hasVE: true, hasMTF: true,
                                         hasPML: true)

    /// An Intel CPU with VMFUNC but no #VE (Haswell). `vcpu_enable_notify`
    /// fails, so guests never get hardware VMFUNC (spec §11.3).
    public static let intelNoVE = CPUProfile(name: "intel-no-ve", hasEPT: true, hasVMFUNC: true, hasVE: false, hasMTF: true)

    /// An Intel CPU with EPT but neither VMFUNC nor #VE: the only kind on
    /// which Xen's emulated VMFUNC (spec §6.3) can succeed.
    public static let intelNoVMFUNC = CPUProfile(name: "intel-no-vmfunc", hasEPT: true, hasVMFUNC: false, hasVE: false, hasMTF: true)

    /// AMD SVM: Xen never enables altp2m, so every altp2m operation fails
    /// with `EOPNOTSUPP`.
    public static let amd = CPUProfile(name: "amd", hasEPT: false, hasVMFUNC: false, hasVE: false, hasMTF: false)

    public var description: String { name }
}

/// Everything about the host that changes altp2m behaviour: the CPU, the
/// `altp2m=` boot option and the Xen release.
public struct HostProfile: Hashable, Sendable, CustomStringConvertible {
    /// The processor.
    public var cpu: CPUProfile
    /// Whether Xen was booted with `altp2m=1`. Without it altp2m is
    /// unsupported whatever the CPU.
    public var altp2mBootOption: Bool
    /// The Xen release whose semantics apply.
    public var xen: XenVersion

    /// Creates a host profile.
    public init(cpu: CPUProfile = .intel, altp2mBootOption: Bool = true, xen: XenVersion = .v4_17) {
        self.cpu = cpu
        self.altp2mBootOption = altp2mBootOption
        self.xen = xen
    }

    /// Spec baseline B's host: Intel with VMFUNC and #VE, `altp2m=1`, Xen 4.17.
    public static let `default` = HostProfile()

    /// `hvm_altp2m_supported()`: the boot option and an EPT-capable CPU.
    public var altp2mSupported: Bool { altp2mBootOption && cpu.hasEPT }

    public var description: String {
        "\(cpu), altp2m=\(altp2mBootOption ? 1 : 0), Xen \(xen)"
    }
}
