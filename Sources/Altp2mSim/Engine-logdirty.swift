import Altp2m

/// Log-dirty mode and single-gfn type changes: what live migration (or a
/// device model tracking VRAM) does to a domain's p2ms, and how it meets
/// altp2m. Each rule names the Xen function it follows (RELEASE-4.17.0;
/// unchanged in 4.19 and 4.21).
extension Altp2mEngine {
    /// Turns global log-dirty mode on (`XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY`,
    /// `paging_log_dirty_enable` then `hap_enable_log_dirty`): every
    /// `p2m_ram_rw` entry of the host p2m, and of every active view, becomes
    /// `p2m_ram_logdirty` (`p2m_change_entry_type_global`, which changes the
    /// views directly rather than by propagation). Access and sve are kept.
    ///
    /// From then on a write fault on a log-dirty entry runs
    /// `p2m_change_type_one` on the host, which resets that gfn's access to
    /// the host default in every view holding it (see ``changeHostType(_:gfn:from:to:)``).
    /// With PML (``CPUProfile/hasPML``) 4-KiB log-dirty entries stay writable
    /// and writes do not fault.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` if the domain is already in log-dirty mode or is
    ///   not HVM with HAP.
    public func enableLogDirty(_ domain: DomainID) throws(XenErrno) {
        try withDomain(domain) { domain throws(XenErrno) in
            guard domain.kind == .hvm, domain.hap, !domain.logDirty else { throw .invalid }
            domain.logDirty = true
            changeEntryTypeGlobal(&domain, from: .ramRW, to: .ramLogDirty)
        }
    }

    /// Turns log-dirty mode off (`paging_log_dirty_disable`,
    /// `hap_disable_log_dirty`): every `p2m_ram_logdirty` entry of the host
    /// and the active views goes back to `p2m_ram_rw`, access kept. Access
    /// that write faults reset meanwhile stays reset. A domain not in
    /// log-dirty mode is left as it is.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain.
    public func disableLogDirty(_ domain: DomainID) throws(XenErrno) {
        try withDomain(domain) { domain throws(XenErrno) in
            guard domain.logDirty else { return }
            domain.logDirty = false
            changeEntryTypeGlobal(&domain, from: .ramLogDirty, to: .ramRW)
        }
    }

    /// `p2m_change_type_one` on the host p2m: if the host entry at `gfn` has
    /// type `from`, it is rewritten with type `to` and the host p2m's
    /// **default access** (sve kept), a host write that propagates into
    /// every view holding the gfn (spec §5.3), overwriting a view's own
    /// access and a remap there. Otherwise nothing changes and the result is
    /// `EBUSY` (a hole has no type, so it is always `EBUSY`).
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` if either type is not RAM (Xen refuses grant
    ///   and foreign types outright); ``XenErrno/busy`` as above.
    public func changeHostType(_ domain: DomainID, gfn: GFN, from: P2MType, to: P2MType) throws(XenErrno) {
        let changeable: Set<P2MType> = [.ramRW, .ramLogDirty, .ramRO]
        guard changeable.contains(from), changeable.contains(to) else { throw .invalid }
        try withDomain(domain) { domain throws(XenErrno) in
            try changeTypeOne(&domain, gfn: gfn, from: from, to: to)
        }
    }

    /// The body of ``changeHostType(_:gfn:from:to:)``, shared with the fault path.
    func changeTypeOne(_ domain: inout Domain, gfn: GFN, from: P2MType, to: P2MType) throws(XenErrno) {
        guard var entry = domain.host.entries[gfn], entry.hasValidFrame, entry.type == from else { throw .busy }
        entry.type = to
        entry.access = domain.host.defaultAccess
        hostWrite(&domain, at: gfn, entry)
    }

    /// `p2m_change_entry_type_global`: the host p2m and every active view,
    /// each changed in place.
    private func changeEntryTypeGlobal(_ domain: inout Domain, from: P2MType, to: P2MType) {
        for (gfn, entry) in domain.host.entries where entry.type == from {
            domain.host.entries[gfn]?.type = to
        }
        if domain.isActive {
            for index in domain.views.indices where domain.views[index].isActive {
                for (gfn, entry) in domain.views[index].entries where entry.type == from {
                    domain.views[index].entries[gfn]?.type = to
                }
            }
        }
        domain.bumpGeneration()
    }

    /// Whether the CPU lets a write through a log-dirty entry: with PML in
    /// log-dirty mode, 4-KiB entries are writable (`ept_p2m_type_to_flags`).
    func logDirtyEntryWritable(_ domain: Domain) -> Bool {
        host.cpu.hasPML && domain.logDirty
    }
}
