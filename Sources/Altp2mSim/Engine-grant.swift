import Altp2m

/// Grant mappings in an HVM domain's host p2m: what Xen's
/// `xen/arch/x86/hvm/grant_table.c` does for `GNTMAP_host_map` when the
/// mapping domain uses HAP. The grant table's bookkeeping (references,
/// pins, maptrack) is `XenGrantTables`; this is the p2m side only.
extension Altp2mEngine {
    /// `create_grant_p2m_mapping` (Xen 4.17.0): `p2m_add_page` of the
    /// granter's frame at `gfn` of the mapper's host p2m, typed
    /// `p2m_grant_map_ro` or `p2m_grant_map_rw`. A host write, so views
    /// holding the gfn take the entry (`p2m_altp2m_propagate_change`).
    ///
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` for a free frame or `INVALID_GFN`;
    ///   ``XenErrno/notPermitted`` if `gfn` already holds a grant, foreign
    ///   or direct-MMIO entry (`p2m_add_page` refuses to unmap those, and
    ///   crashes the domain: the caller does that, as it knows the caller);
    ///   ``XenErrno/exists`` if it holds RAM (a simulator-only refusal: Xen
    ///   would orphan that page; the substrate only maps grants into holes).
    public func addGrantMapping(_ mapper: DomainID, at gfn: GFN, mfn: MFN, readOnly: Bool) throws(XenErrno) {
        guard frames.isAllocated(mfn), !gfn.isInvalid else { throw .invalid }
        try withDomain(mapper) { domain throws(XenErrno) in
            if let old = domain.host.entries[gfn] {
                if old.type.isSpecial { throw .notPermitted }
                if old.hasValidFrame { throw .exists }
            }
            let type: P2MType = readOnly ? .grantMapRO : .grantMapRW
            // p2m_add_page leaves the M2P alone for grant types (p2m_is_grant);
            // hostWrite does the same for every special type.
            hostWrite(&domain, at: gfn, P2MEntry(mfn: mfn, type: type, access: domain.host.defaultAccess))
        }
    }

    /// `replace_grant_p2m_mapping` with `new_addr` 0 (Xen 4.17.0): the entry
    /// at `gfn` must be a grant mapping of `mfn` (else
    /// ``XenErrno/invalid``, `GNTST_general_error` to the caller), and then
    /// `p2m_remove_page` clears it. Through ``dropPage(_:gfn:)``, so the
    /// removal propagates as any dropped page does: a view whose remapped
    /// range holds the gfn is reset, every active view on a second hit
    /// (`p2m_altp2m_propagate_change`, `p2m_reset_altp2m`).
    public func removeGrantMapping(_ mapper: DomainID, at gfn: GFN, mfn: MFN) throws(XenErrno) {
        let current = try domain(mapper).host.entries[gfn]
        guard let current, current.type == .grantMapRW || current.type == .grantMapRO, current.mfn == mfn else {
            throw .invalid
        }
        try dropPage(mapper, gfn: gfn)
    }
}
