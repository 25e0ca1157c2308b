import Altp2m

/// A domain's host p2m: the real guest-physical to machine translation.
///
/// Holes are absent keys. Entries of types without a frame (`mmioDM`) are
/// stored with ``MFN/invalid``. Writes go through `Domain.hostWrite`, which
/// applies the propagation rule; nothing else assigns `entries`.
struct HostP2M {
    /// gfn → entry.
    var entries: [GFN: P2MEntry] = [:]
    /// The default access of new host entries and of `XENMEM_access_default`
    /// (`rwx` initially, spec §2.2).
    var defaultAccess: MemAccess = .readWriteExecute
    /// This p2m's `access_required`: what `p2m_mem_access_check` reads while
    /// a vCPU runs on the host p2m (altp2m inactive). Each view has its own
    /// (``View/accessRequired``).
    var accessRequired = false

    /// The entry at `gfn` if it maps a frame (any type): what lazy copy and
    /// vCPU #VE registration look up.
    @inline(__always)
    func validEntry(_ gfn: GFN) -> P2MEntry? {
        guard let entry = entries[gfn], entry.hasValidFrame else { return nil }
        return entry
    }

    /// The entry at `gfn` if it is valid `p2m_ram_rw`: what may stand in for
    /// a view entry in set_mem_access, set_suppress_ve and change_gfn.
    @inline(__always)
    func usableEntry(_ gfn: GFN) -> P2MEntry? {
        guard let entry = entries[gfn], entry.isUsableRAM else { return nil }
        return entry
    }

    /// The number of gfns that map a frame of the domain's own (its
    /// `tot_pages`): grant and foreign mappings and direct MMIO
    /// (`p2m_is_special`) are other owners' frames and do not count.
    var mappedPageCount: Int { entries.values.reduce(0) { $0 + ($1.hasValidFrame && !$1.type.isSpecial ? 1 : 0) } }
}
