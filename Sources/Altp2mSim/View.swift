import Altp2m

/// One alternate p2m (`altp2m_p2m[i]`), spec §2.2.
///
/// Views are allocated with the domain and exist whether or not they are
/// active; `isActive` stands for `eptp[i] != INVALID_MFN` and `isVisible` for
/// `visible_eptp[i] != INVALID_MFN` (visible implies active).
struct View {
    /// Whether the view exists (`eptp[i]` valid).
    var isActive = false
    /// Whether VMFUNC and switch_p2m may reach the view (`visible_eptp[i]` valid).
    var isVisible = false
    /// The view's own entries; an absent key is filled lazily from the host.
    var entries: [GFN: P2MEntry] = [:]
    /// The access lazy copies get on Xen ≥4.19, and what `get_mem_access(view, ~0)` reads.
    var defaultAccess: MemAccess = .readWriteExecute
    /// The lowest gfn a remap in this view points at (`min_remapped_gfn`); `~0` when empty.
    var minRemappedGFN: GFN = .invalid
    /// The highest gfn a remap in this view points at (`max_remapped_gfn`); 0 when empty.
    var maxRemappedGFN: GFN = 0
    /// The number of vCPUs whose current view this is.
    var activeVCPUs = 0
    /// This view's own `access_required` (a flag of every p2m in Xen, not of
    /// the domain). `p2m_init_altp2m` copies the host's value once, when the
    /// domain is created; `arch_p2m_set_access_required` writes it only
    /// while altp2m is active. Activation, create_p2m, the flushes and
    /// deactivation leave it alone, so none of the functions below touch it
    /// (Xen 4.17.0 to 4.21, `xen/arch/x86/mm/mem_access.c`, `altp2m.c`).
    var accessRequired = false

    /// `p2m_activate_altp2m`: an empty, visible view (spec §2.5).
    mutating func activate(defaultAccess: MemAccess) {
        isActive = true
        isVisible = true
        entries = [:]
        self.defaultAccess = defaultAccess
        clearRemappedRange()
    }

    /// The DEACTIVATE flush used by destroy_p2m and deactivation: drop every
    /// entry and take the view out of both EPTP lists.
    mutating func deactivate() {
        isActive = false
        isVisible = false
        entries = [:]
        clearRemappedRange()
    }

    /// The RESET flush of propagation (spec §5.3): drop every entry and the
    /// remapped range; activity, visibility, default access and the vCPU
    /// count are kept.
    mutating func reset() {
        entries = [:]
        clearRemappedRange()
    }

    mutating func clearRemappedRange() {
        minRemappedGFN = .invalid
        maxRemappedGFN = 0
    }

    /// Records `gfn` as the target of a remap (spec §5.1 step 4).
    mutating func widenRemappedRange(to gfn: GFN) {
        minRemappedGFN = min(minRemappedGFN, gfn)
        maxRemappedGFN = max(maxRemappedGFN, gfn)
    }

    /// Whether a 4-KiB drop at `gfn` touches the remapped range
    /// (`gfn + 1 > min && gfn <= max`); an empty range (min ~0, max 0) never does.
    func remappedRangeContains(_ gfn: GFN) -> Bool {
        gfn.rawValue &+ 1 > minRemappedGFN.rawValue && gfn <= maxRemappedGFN
    }

    /// The remapped range, or `nil` when empty.
    var remappedRange: ClosedRange<GFN>? {
        minRemappedGFN <= maxRemappedGFN ? minRemappedGFN...maxRemappedGFN : nil
    }
}
