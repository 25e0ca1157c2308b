import Altp2m

/// change_gfn (§3.4.8, §5.1), and the effective-entry lookup it shares with
/// set_mem_access and set_suppress_ve on a view.
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

    /// `altp2m_get_effective_entry` for a view (Xen 4.17.0, unchanged to
    /// 4.21): the view's own entry if its mfn is valid (`mfn_valid`, so a
    /// direct-MMIO device frame counts as absent), else the host entry if it
    /// is a valid `p2m_ram_rw` frame, else nothing (`ESRCH`).
    func effectiveEntry(_ domain: Domain, view index: Int, gfn: GFN) -> P2MEntry? {
        if let own = domain.views[index].entries[gfn], isRAMFrame(own.mfn) { return own }
        return domain.host.usableEntry(gfn)
    }

    /// `p2m_change_altp2m_gfn`, spec §5.1 (Xen 4.17.0; `altp2m.c` from 4.19).
    ///
    /// Remap: the old gfn's effective entry must exist (else `ESRCH`), then
    /// the new gfn's (else `ESRCH`). Xen's lookup of the old gfn
    /// "prepopulates" only a host superpage; the simulator's host pages are
    /// 4 KiB, so a failed lookup of the new gfn leaves the view exactly as it
    /// was. The old gfn then gets the new gfn's mfn, type and access, with
    /// sve 0 if the guest itself made the call and 1 otherwise, and the
    /// remapped range grows to include the new gfn.
    ///
    /// Revert (`new == INVALID_GFN`): see ``revertEntry(_:view:gfn:)``.
    func changeGFN(_ domain: inout Domain, view index: Int, old: GFN, new: GFN, guestCaller: Bool) throws(XenErrno) {
        if new.isInvalid {
            try revertEntry(&domain, view: index, gfn: old)
            return
        }
        if effectiveEntry(domain, view: index, gfn: old) == nil { throw .notFound }
        guard let target = effectiveEntry(domain, view: index, gfn: new) else { throw .notFound }
        domain.views[index].entries[old] = P2MEntry(mfn: target.mfn, type: target.type,
                                                    access: target.access, suppressVE: !guestCaller)
        domain.views[index].widenRemappedRange(to: new)
        domain.bumpGeneration()
    }

    /// The revert half of `p2m_change_altp2m_gfn` and `p2m_remove_entry`
    /// (Xen 4.17.0 to 4.21). Only an entry whose mfn is valid is removed;
    /// any other (no entry, emulated MMIO, a direct-MMIO device frame) is
    /// left and the result is 0. A valid direct-MMIO entry is refused with
    /// `EILSEQ`. Removing a RAM entry also clears the **M2P entry** of its
    /// frame (`set_gpfn_from_mfn(mfn, INVALID_M2P_ENTRY)`), even though the
    /// host p2m still maps that frame: the frame is then unknown to every
    /// lookup by machine frame (log-dirty marking among them) until it is
    /// mapped again. Grant and foreign mappings keep theirs. The entry is
    /// removed whatever made it, and the remapped range does not shrink.
    func revertEntry(_ domain: inout Domain, view index: Int, gfn: GFN) throws(XenErrno) {
        guard let entry = domain.views[index].entries[gfn], isRAMFrame(entry.mfn) else { return }
        if entry.type == .mmioDirect { throw .illegalSequence }
        if !entry.type.isSpecial { m2p[entry.mfn] = nil }
        domain.views[index].entries[gfn] = nil
        domain.bumpGeneration()
    }
}
