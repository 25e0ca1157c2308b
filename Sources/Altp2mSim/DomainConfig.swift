import Altp2m

/// How to create a simulated domain.
///
/// On Xen ≥4.19 the altp2m fields go into `xen_domctl_createdomain` and are
/// checked there (spec §1.2). On 4.17 the domain is created with altp2m
/// disabled and, like libxl, the engine then sets `HVM_PARAM_ALTP2M` to the
/// requested mode as the control domain, with the 4.17 rules.
public struct DomainConfig: Hashable, Sendable {
    /// The domain's name (for listings only).
    public var name: String
    /// The number of vCPUs (1...128).
    public var vcpuCount: UInt32
    /// The gfns populated at creation with fresh frames, as 4-KiB
    /// `p2m_ram_rw` pages with the host default access (`rwx`) and sve 1.
    /// Everything else is a hole. Ranges must not overlap.
    public var memory: [Range<GFN>]
    /// HVM (altp2m-capable) or PV.
    public var kind: DomainKind
    /// Hardware-assisted paging (EPT). altp2m needs it.
    public var hap: Bool
    /// Nested virtualization (`XEN_DOMCTL_CDF_nested_virt`); incompatible with altp2m.
    public var nestedVirt: Bool
    /// The raw `altp2m.opts` (≥4.19) or the value libxl writes to
    /// `HVM_PARAM_ALTP2M` (4.17). Bits above the mode mask are invalid; they
    /// are representable so that the refusal can be tested. See ``altp2mMode``.
    public var altp2mOptions: UInt32
    /// `altp2m.nr` (Xen ≥4.21 only): the number of views; `nil` for libxl's
    /// default (10 with a mode, else 0). Must stay `nil` on earlier releases,
    /// where the count is the constant 10.
    public var altp2mViewCount: UInt16?

    /// Creates a configuration; `pages` populates gfns `0..<pages`.
    public init(name: String, vcpuCount: UInt32 = 1, pages: UInt64 = 256, kind: DomainKind = .hvm,
                hap: Bool = true, nestedVirt: Bool = false, altp2mMode: Altp2mMode = .disabled,
                altp2mViewCount: UInt16? = nil) {
        self.init(name: name, vcpuCount: vcpuCount, memory: [GFN(0)..<GFN(pages)], kind: kind,
                  hap: hap, nestedVirt: nestedVirt, altp2mMode: altp2mMode,
                  altp2mViewCount: altp2mViewCount)
    }

    /// Creates a configuration with an explicit memory layout.
    public init(name: String, vcpuCount: UInt32 = 1, memory: [Range<GFN>], kind: DomainKind = .hvm,
                hap: Bool = true, nestedVirt: Bool = false, altp2mMode: Altp2mMode = .disabled,
                altp2mViewCount: UInt16? = nil) {
        self.name = name
        self.vcpuCount = vcpuCount
        self.memory = memory
        self.kind = kind
        self.hap = hap
        self.nestedVirt = nestedVirt
        self.altp2mOptions = altp2mMode.rawValue
        self.altp2mViewCount = altp2mViewCount
    }

    /// The mode in ``altp2mOptions`` (its low two bits).
    public var altp2mMode: Altp2mMode {
        get { Altp2mMode(rawValue: altp2mOptions & 3) ?? .disabled }
        set { altp2mOptions = newValue.rawValue }
    }
}
