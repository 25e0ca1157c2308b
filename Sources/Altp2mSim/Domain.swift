import Altp2m

/// A vCPU's altp2m state (spec §2.6) and its vm_event state (§7).
struct VCPU {
    /// The registered #VE information page: the gfn given and the frame it
    /// mapped then (the CPU writes the frame directly, whatever the views say).
    struct NotifyPage: Hashable {
        var gfn: GFN
        var mfn: MFN
    }

    /// `p2midx`: the current view; `.invalid` while altp2m is inactive.
    var view: ViewID = .invalid
    /// The #VE page, while #VE is enabled on the vCPU.
    var notify: NotifyPage?
    /// The VMCS VM-functions control: set by enable_notify, and cleared only
    /// when a #VE page is released while altp2m is inactive (spec §1.6, §11.4).
    var vmfuncEnabled = false
    /// Paused waiting for a vm_event response.
    var pausedByVMEvent = false
    /// Single-stepping (MTF) is on.
    var singlestep = false
    /// A pending fast single-step: the view to switch to after one instruction.
    var fastSinglestepView: ViewID?
}

/// A simulated domain: the host p2m, the views, the vCPUs and the
/// domain-wide altp2m and vm_event state.
///
/// A value type held in the engine's table and mutated in place. It knows the
/// rules that involve only itself (propagation, reference counts of views);
/// the engine adds what needs machine memory or the frame allocator.
struct Domain {
    let id: DomainID
    let name: String
    let kind: DomainKind
    let hap: Bool
    let nestedVirt: Bool
    /// `HVM_PARAM_ALTP2M`.
    var mode: Altp2mMode
    /// `nr`: the number of views (10 before Xen 4.21).
    let viewCount: Int
    /// `altp2m_active`.
    var isActive = false
    var host = HostP2M()
    /// Views 0..<viewCount, allocated with the domain (spec §2.2).
    var views: [View]
    var vcpus: [VCPU]
    var isCrashed = false
    /// Toolstack pauses (`xc_domain_pause`); vm_event pauses are per vCPU.
    var pauseCount = 0
    /// Log-dirty mode (`paging_mode_log_dirty`): live migration or a device
    /// model tracking VRAM.
    var logDirty = false
    var monitor: MonitorRing?
    /// `max_pages`: the most pages `assign_pages` lets the domain own; set
    /// by `XEN_DOMCTL_max_mem` (a `u32` in Xen, so at most 2^32 - 1, the
    /// value before the toolstack sets one).
    var maxPages = UInt64(UInt32.max)
    /// Increases whenever what a guest could observe of its views changes
    /// (see `Altp2mEngine.generation(of:)`).
    var generation: UInt64 = 0

    init(id: DomainID, name: String, kind: DomainKind, hap: Bool, nestedVirt: Bool,
         mode: Altp2mMode, viewCount: Int, vcpuCount: Int) {
        self.id = id
        self.name = name
        self.kind = kind
        self.hap = hap
        self.nestedVirt = nestedVirt
        self.mode = mode
        self.viewCount = viewCount
        self.views = Array(repeating: View(), count: viewCount)
        self.vcpus = Array(repeating: VCPU(), count: vcpuCount)
    }

    @inline(__always)
    mutating func bumpGeneration() { generation &+= 1 }

    /// `altp2m_is_eptp_valid`: idx < nr and the view is active.
    @inline(__always)
    func isValidView(_ index: ViewID) -> Bool {
        Int(index.rawValue) < viewCount && views[Int(index.rawValue)].isActive
    }

    /// Whether `visible_eptp[index]` holds an EPTP (active and visible).
    @inline(__always)
    func isVisibleView(_ index: ViewID) -> Bool {
        Int(index.rawValue) < viewCount && views[Int(index.rawValue)].isVisible
    }

    /// Whether vCPU `index` can execute (no crash, no pause of any kind).
    func isRunnable(_ index: Int) -> Bool {
        !isCrashed && pauseCount == 0 && !vcpus[index].pausedByVMEvent
    }

    /// Moves a vCPU to another view, keeping `active_vcpus` right; a move to
    /// the current view changes nothing (spec §2.6).
    mutating func moveVCPU(_ index: Int, to view: ViewID) {
        let old = vcpus[index].view
        guard old != view else { return }
        if !old.isInvalid { views[Int(old.rawValue)].activeVCPUs -= 1 }
        if !view.isInvalid { views[Int(view.rawValue)].activeVCPUs += 1 }
        vcpus[index].view = view
    }

    /// `p2m_altp2m_propagate_change` for a 4-KiB host write at `gfn` (spec §5.3).
    ///
    /// `new` is the host entry after the write; `nil` or an entry without a
    /// valid frame is a dropped page (mfn INVALID).
    mutating func propagateHostChange(at gfn: GFN, new: P2MEntry?) {
        guard isActive else { return }
        let dropped = !(new?.hasValidFrame ?? false)
        var firstReset: Int?
        for index in 0..<viewCount where views[index].isActive {
            if dropped && views[index].remappedRangeContains(gfn) {
                if let alreadyReset = firstReset {
                    // A second view is hit: reset every active view, the
                    // untouched ones and view 0 included, and stop.
                    for other in 0..<viewCount where other != alreadyReset && views[other].isActive {
                        views[other].reset()
                    }
                    break
                }
                views[index].reset()
                firstReset = index
            } else if let old = views[index].entries[gfn] {
                if let new, new.hasValidFrame {
                    // Host mfn, type and access; the view keeps its own sve,
                    // so the host sve never reaches a view (spec §4.4).
                    views[index].entries[gfn] = P2MEntry(mfn: new.mfn, type: new.type,
                                                         access: new.access, suppressVE: old.suppressVE)
                } else {
                    views[index].entries[gfn] = nil
                }
            }
        }
    }
}
