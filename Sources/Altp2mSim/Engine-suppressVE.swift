import Altp2m

/// Suppress-#VE operations: set_suppress_ve (§3.4.10), get_suppress_ve
/// (§3.4.11) and set_suppress_ve_multi (§3.4.15).
extension Altp2mEngine {
    /// The highest gfn set_suppress_ve_multi accepts: Xen clamps `last_gfn` to
    /// `(1 << maxphysaddr) - 1`, an address bound applied to a gfn. The
    /// simulated guests report a 48-bit physical address width.
    static let suppressVEMultiClamp = GFN((1 << 48) - 1)

    /// set_suppress_ve (10): a one-gfn set_suppress_ve_multi whose
    /// `first_error` is the result.
    func subopSetSuppressVE(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        guard op.field(UInt8.self, at: 3) == 0, op.field(UInt32.self, at: 4) == 0 else { throw .invalid }
        let view = ViewID(op.field(UInt16.self, at: 0))
        guard view == .hostOrView0 || domain.isValidView(view) else { throw .invalid }
        try setSuppressVE(&domain, view: view, gfn: GFN(op.field(UInt64.self, at: 8)),
                          suppress: op.field(UInt8.self, at: 2) != 0)
    }

    /// The effect of set_suppress_ve on one gfn of `view` (0 → host).
    ///
    /// The entry is found without prepopulate: the target p2m's own entry
    /// with a frame; for a view without one, a valid `p2m_ram_rw` host entry;
    /// else `ESRCH`. A 4-KiB entry with that mfn, type and **access** and the
    /// new bit is written: so a view gfn not populated yet gets the host's
    /// access, not the view default. On the host the write propagates, and
    /// views keep their own bit.
    func setSuppressVE(_ domain: inout Domain, view: ViewID, gfn: GFN, suppress: Bool) throws(XenErrno) {
        if view == .hostOrView0 {
            guard var entry = domain.host.validEntry(gfn) else { throw .notFound }
            entry.suppressVE = suppress
            hostWrite(&domain, at: gfn, entry)
            return
        }
        let index = Int(view.rawValue)
        guard var entry = effectiveEntry(domain, view: index, gfn: gfn) else { throw .notFound }
        entry.suppressVE = suppress
        domain.views[index].entries[gfn] = entry
        domain.bumpGeneration()
    }

    /// get_suppress_ve (11): reads one p2m (view 0 → host) with no fallback.
    func subopGetSuppressVE(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        guard op.field(UInt8.self, at: 3) == 0, op.field(UInt32.self, at: 4) == 0 else { throw .invalid }
        let view = ViewID(op.field(UInt16.self, at: 0))
        guard view == .hostOrView0 || domain.isValidView(view) else { throw .invalid }
        let gfn = GFN(op.field(UInt64.self, at: 8))
        let entry = view == .hostOrView0
            ? domain.host.entries[gfn]
            : domain.views[Int(view.rawValue)].entries[gfn]
        // `p2m_get_suppress_ve` (Xen 4.17.0): ESRCH unless `mfn_valid`, so a
        // direct-MMIO device frame reads as absent.
        guard let entry, isRAMFrame(entry.mfn) else { throw .notFound }
        op.setField(UInt8(entry.suppressVE ? 1 : 0), at: 2)
    }

    /// set_suppress_ve_multi (15): every gfn of `first_gfn...last_gfn`; a gfn
    /// that fails records its error and gfn in `first_error` /
    /// `first_error_gfn` (only if `first_error` is still 0) and the loop goes
    /// on. Returns 0 and writes `first_gfn = last_gfn + 1` back.
    ///
    /// Only gfns that can succeed are visited (the view's entries and the
    /// host's `p2m_ram_rw` pages in the range), so a huge range costs no more
    /// than the p2m sizes; the first failing gfn is the first gap among them.
    func subopSetSuppressVEMulti(_ domain: inout Domain, _ op: inout HVMAltp2mOp) throws(XenErrno) {
        let first = GFN(op.field(UInt64.self, at: 8))
        let last = min(GFN(op.field(UInt64.self, at: 16)), Self.suppressVEMultiClamp)
        guard op.field(UInt8.self, at: 3) == 0, first <= last else { throw .invalid }
        let view = ViewID(op.field(UInt16.self, at: 0))
        guard view == .hostOrView0 || domain.isValidView(view) else { throw .invalid }
        let suppress = op.field(UInt8.self, at: 2) != 0

        let settable = settableGFNs(domain, view: view, in: first...last)
        if op.field(Int32.self, at: 4) == 0 {
            // The first gap among the settable gfns is the first failure (ESRCH).
            var probe = first
            for gfn in settable {
                guard gfn == probe else { break }
                probe = gfn.advanced(by: 1)
            }
            if probe <= last {
                op.setField(XenErrno.notFound.code, at: 4)
                op.setField(probe.rawValue, at: 24)
            }
        }
        for gfn in settable {
            // Cannot fail: every gfn here has an entry setSuppressVE accepts.
            try setSuppressVE(&domain, view: view, gfn: gfn, suppress: suppress)
        }
        op.setField(last.rawValue &+ 1, at: 8)
    }

    /// The gfns of `range`, in order, that set_suppress_ve accepts on `view`.
    private func settableGFNs(_ domain: Domain, view: ViewID, in range: ClosedRange<GFN>) -> [GFN] {
        var result = Set<GFN>()
        if view == .hostOrView0 {
            for (gfn, entry) in domain.host.entries where range.contains(gfn) && entry.hasValidFrame {
                result.insert(gfn)
            }
        } else {
            for (gfn, entry) in domain.views[Int(view.rawValue)].entries where range.contains(gfn) && isRAMFrame(entry.mfn) {
                result.insert(gfn)
            }
            for (gfn, entry) in domain.host.entries where range.contains(gfn) && entry.isUsableRAM {
                result.insert(gfn)
            }
        }
        return result.sorted()
    }
}
