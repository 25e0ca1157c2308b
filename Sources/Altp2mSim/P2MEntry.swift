import Altp2m

/// The type of a p2m entry (`p2m_type_t`), reduced to the types whose
/// behaviour altp2m distinguishes.
public enum P2MType: UInt8, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// `p2m_ram_rw`: ordinary RAM. The only type that set_mem_access,
    /// set_suppress_ve and change_gfn accept from the host for a gfn a view
    /// does not hold yet.
    case ramRW
    /// `p2m_ram_logdirty`: RAM write-protected for log-dirty tracking; the
    /// first write turns it back into `ramRW` (a host write that propagates).
    case ramLogDirty
    /// `p2m_ram_ro`: read-only RAM; writes are discarded.
    case ramRO
    /// `p2m_mmio_dm`: emulated MMIO, no frame. Never copied into a view.
    case mmioDM
    /// `p2m_mmio_direct`: a device frame passed through to the guest.
    case mmioDirect
    /// `p2m_grant_map_rw`: a frame granted by another domain, writable.
    case grantMapRW
    /// `p2m_grant_map_ro`: a frame granted by another domain, read-only.
    case grantMapRO
    /// `p2m_map_foreign`: a foreign domain's frame mapped by a privileged domain.
    case mapForeign

    /// Whether entries of this type point at a machine frame.
    @inlinable
    public var hasFrame: Bool { self != .mmioDM }

    /// The EPT permissions (r=1, w=2, x=4) the type itself allows; the
    /// effective permission of an entry is this intersected with its access.
    @inlinable
    public var permissionBits: UInt8 {
        switch self {
        case .ramRW, .mmioDirect: 7
        case .ramLogDirty, .ramRO: 5
        case .mmioDM: 0
        case .grantMapRW, .mapForeign: 3
        case .grantMapRO: 1
        }
    }

    /// `p2m_is_special`: grant and foreign mappings and direct MMIO, whose
    /// frames' M2P entries belong to someone else and are never changed.
    @inlinable
    public var isSpecial: Bool { self == .grantMapRW || self == .grantMapRO || self == .mapForeign || self == .mmioDirect }

    /// RAM that can back a #VE information page (`p2m_ram_rw` or log-dirty).
    @inlinable
    public var isPageableRAM: Bool { self == .ramRW || self == .ramLogDirty }

    /// Xen's name, such as `p2m_ram_rw`.
    public var description: String {
        switch self {
        case .ramRW: "p2m_ram_rw"
        case .ramLogDirty: "p2m_ram_logdirty"
        case .ramRO: "p2m_ram_ro"
        case .mmioDM: "p2m_mmio_dm"
        case .mmioDirect: "p2m_mmio_direct"
        case .grantMapRW: "p2m_grant_map_rw"
        case .grantMapRO: "p2m_grant_map_ro"
        case .mapForeign: "p2m_map_foreign"
        }
    }
}

/// One 4-KiB entry of a p2m table (the host p2m or a view): the fields of
/// spec §2.7.
public struct P2MEntry: Hashable, Sendable {
    /// The machine frame; ``MFN/invalid`` only for types without a frame.
    public var mfn: MFN
    /// The p2m type.
    public var type: P2MType
    /// The access type; never ``MemAccess/default``.
    public var access: MemAccess
    /// The suppress-#VE bit (EPT bit 63). New entries get `true`.
    public var suppressVE: Bool

    /// Creates an entry; `suppressVE` defaults to `true` as every new EPT
    /// entry does (spec §2.7).
    @inlinable
    public init(mfn: MFN, type: P2MType = .ramRW, access: MemAccess, suppressVE: Bool = true) {
        self.mfn = mfn
        self.type = type
        self.access = access
        self.suppressVE = suppressVE
    }

    /// Whether the entry maps a frame (`mfn_valid`). Entries without one are
    /// treated like holes by lazy copy and propagation.
    @inlinable
    public var hasValidFrame: Bool { !mfn.isInvalid && type.hasFrame }

    /// Whether the entry can stand in for a view entry the view does not
    /// have (valid frame, `p2m_ram_rw`), as set_mem_access, set_suppress_ve
    /// and change_gfn require of the host (spec §3.4.7, §5.1).
    @inlinable
    public var isUsableRAM: Bool { hasValidFrame && type == .ramRW }

    /// The EPT permissions of the entry: its access intersected with its type.
    @inlinable
    public var permissionBits: UInt8 { access.permissionBits & type.permissionBits }
}

/// A p2m entry together with its gfn, as the inspectors return it.
public struct ViewTableEntry: Hashable, Sendable, CustomStringConvertible {
    /// The guest frame the entry translates.
    public var gfn: GFN
    /// The entry.
    public var entry: P2MEntry

    /// Creates a table row.
    public init(gfn: GFN, entry: P2MEntry) {
        self.gfn = gfn
        self.entry = entry
    }

    /// The machine frame.
    public var mfn: MFN { entry.mfn }
    /// The p2m type.
    public var type: P2MType { entry.type }
    /// The access type.
    public var access: MemAccess { entry.access }
    /// The suppress-#VE bit.
    public var suppressVE: Bool { entry.suppressVE }

    public var description: String {
        "\(gfn) -> \(entry.mfn) \(entry.type) \(entry.access) sve=\(entry.suppressVE ? 1 : 0)"
    }
}

/// Which p2m table an inspector reads: the host p2m or a view's own table
/// (including the view-0 table, which the HVMOPs cannot show, spec §11.9).
public enum P2MTable: Hashable, Sendable, CustomStringConvertible {
    /// The domain's host p2m.
    case host
    /// The table of view *n* (for n = 0, the view-0 table, not the host).
    case view(ViewID)

    public var description: String {
        switch self {
        case .host: "host p2m"
        case .view(let id): "\(id) table"
        }
    }
}
