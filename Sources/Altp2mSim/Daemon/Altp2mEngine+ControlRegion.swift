import Altp2m

/// What the daemon mirrors into a domain's control region, read straight
/// from the engine's state.
///
/// The public inspectors (`domainStatus`, `entries`) do work the daemon does
/// after every request would not want: counting every host page, sorting
/// every table. This extension (the daemon's, in the engine's module) reads
/// the same state without that cost.
struct ControlRegionState {
    struct VCPU {
        var view: ViewID
        var vmfuncEnabled: Bool
        var runnable: Bool
        var notifyGFN: GFN?
    }

    var generation: UInt64
    var isActive: Bool
    var isCrashed: Bool
    var visible: [UInt64]
    var active: [UInt64]
    var vcpus: [VCPU]
}

extension Altp2mEngine {
    /// The control-region state of domain `id`, or nil if it does not exist.
    func controlRegionState(_ id: DomainID) -> ControlRegionState? {
        guard let domain = domains[id] else { return nil }
        var visible = ViewSet()
        var active = ViewSet()
        for index in 0..<domain.viewCount {
            if domain.views[index].isActive { active.insert(ViewID(UInt16(index))) }
            if domain.views[index].isVisible { visible.insert(ViewID(UInt16(index))) }
        }
        let vcpus = domain.vcpus.indices.map { index in
            ControlRegionState.VCPU(view: domain.vcpus[index].view,
                                    vmfuncEnabled: domain.vcpus[index].vmfuncEnabled && host.cpu.hasVMFUNC,
                                    runnable: domain.isRunnable(index), notifyGFN: domain.vcpus[index].notify?.gfn)
        }
        return ControlRegionState(generation: domain.generation, isActive: domain.isActive,
                                  isCrashed: domain.isCrashed, visible: visible.bitmapWords,
                                  active: active.bitmapWords, vcpus: vcpus)
    }

    /// Calls `body` with every entry of a table (index 0: host, 1 + v: view
    /// v) whose gfn is below `limit`, in no particular order.
    func forEachEntry(_ id: DomainID, table index: Int, below limit: UInt64, _ body: (GFN, P2MEntry) -> Void) {
        guard let domain = domains[id] else { return }
        if index == 0 {
            for (gfn, entry) in domain.host.entries where gfn.rawValue < limit { body(gfn, entry) }
        } else if index - 1 < domain.viewCount {
            for (gfn, entry) in domain.views[index - 1].entries where gfn.rawValue < limit { body(gfn, entry) }
        }
    }

    /// The entry at `gfn` in a table (index 0: host, 1 + v: view v).
    func tableEntry(_ id: DomainID, table index: Int, gfn: GFN) -> P2MEntry? {
        guard let domain = domains[id] else { return nil }
        if index == 0 { return domain.host.entries[gfn] }
        guard index - 1 < domain.viewCount else { return nil }
        return domain.views[index - 1].entries[gfn]
    }
}
