import Altp2m

/// change_gfn (§3.4.8, §5.1).
extension Altp2mEngine {
    /// change_gfn (8): remap `old_gfn` to `new_gfn`'s frame in one view
    /// (view 0 = the view-0 table, not the host), or with `new_gfn` =
    /// `INVALID_GFN` drop the view's entry at `old_gfn`.
    func subopChangeGFN(_ domain: inout Domain, _ op: inout HVMAltp2mOp, caller: Caller) throws(XenErrno) {
        guard op.field(UInt16.self, at: 2) == 0, op.field(UInt32.self, at: 4) == 0 else { throw .invalid }
        let view = ViewID(op.field(UInt16.self, at: 0))
        guard domain.isValidView(view) else { throw .invalid }
        try changeGFN(&domain, view: Int(view.rawValue), old: GFN(op.field(UInt64.self, at: 8)),
                      new: GFN(op.field(UInt64.self, at: 16)),
                      guestCaller: caller.isGuest(of: domain.id))
    }

    /// `p2m_change_altp2m_gfn`, spec §5.1.
    ///
    /// Remap: the old gfn's effective entry is found *with* prepopulate (a
    /// view without an entry copies a valid `p2m_ram_rw` host page in with the
    /// host's access and sve 1, else `ESRCH`), the new gfn's *without* (the
    /// view's entry or a valid `p2m_ram_rw` host page, else `ESRCH`; a
    /// prepopulated old gfn stays even then). The old gfn then gets the new
    /// gfn's mfn, type and access, with sve 0 if the guest itself made the
    /// call and 1 otherwise, and the remapped range grows to include the new gfn.
    ///
    /// Revert (`new == INVALID_GFN`): the view's entry at the old gfn is
    /// removed, whatever made it; the remapped range does not shrink.
    func changeGFN(_ domain: inout Domain, view index: Int, old: GFN, new: GFN, guestCaller: Bool) throws(XenErrno) {
        if new.isInvalid {
            if domain.views[index].entries.removeValue(forKey: old) != nil { domain.bumpGeneration() }
            return
        }
        if domain.views[index].entries[old] == nil {
            guard let hostEntry = domain.host.usableEntry(old) else { throw .notFound }
            // Prepopulate (≤4.21): the host page with the host's access and sve 1.
            domain.views[index].entries[old] = P2MEntry(mfn: hostEntry.mfn, type: hostEntry.type,
                                                        access: hostEntry.access, suppressVE: true)
            domain.bumpGeneration()
        }
        guard let target = domain.views[index].entries[new] ?? domain.host.usableEntry(new) else {
            throw .notFound
        }
        domain.views[index].entries[old] = P2MEntry(mfn: target.mfn, type: target.type,
                                                    access: target.access, suppressVE: !guestCaller)
        domain.views[index].widenRemappedRange(to: new)
        domain.bumpGeneration()
    }
}
