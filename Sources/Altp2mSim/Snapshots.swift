import Altp2m

/// A set of view indices below 512 (`MAX_EPTP`), stored as a bitmap.
public struct ViewSet: Hashable, Sendable, Sequence, CustomStringConvertible {
    /// The largest number of views any Xen allows.
    public static let capacity = 512
    @usableFromInline var words: [UInt64] = Array(repeating: 0, count: 8)

    /// An empty set.
    public init() {}

    /// A set holding `views`; indices of 512 and above are ignored.
    public init(_ views: some Sequence<ViewID>) {
        for view in views { insert(view) }
    }

    /// Whether `view` is in the set.
    @inlinable
    public func contains(_ view: ViewID) -> Bool {
        let index = Int(view.rawValue)
        guard index < Self.capacity else { return false }
        return words[index >> 6] & (1 << UInt64(index & 63)) != 0
    }

    /// Adds `view` (ignored at 512 and above).
    public mutating func insert(_ view: ViewID) {
        let index = Int(view.rawValue)
        guard index < Self.capacity else { return }
        words[index >> 6] |= 1 << UInt64(index & 63)
    }

    /// Whether the set is empty.
    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }

    /// The number of views in the set.
    public var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// The 64-bit words of the bitmap, view 0 in bit 0 of word 0: a compact
    /// form for a shared control page.
    public var bitmapWords: [UInt64] { words }

    public func makeIterator() -> IndexingIterator<[ViewID]> {
        (0..<UInt16(Self.capacity)).map(ViewID.init(rawValue:)).filter(contains).makeIterator()
    }

    public var description: String { "[" + map { String($0.rawValue) }.joined(separator: ",") + "]" }
}

/// A view's state, as the engine's inspector reports it.
public struct ViewInfo: Hashable, Sendable {
    /// The view's index.
    public var index: ViewID
    /// Whether the view exists (`eptp[i]` valid).
    public var isActive: Bool
    /// Whether VMFUNC and switch_p2m may reach it (`visible_eptp[i]` valid).
    public var isVisible: Bool
    /// The view's default access.
    public var defaultAccess: MemAccess
    /// `min_remapped_gfn` (`~0` when empty).
    public var minRemappedGFN: GFN
    /// `max_remapped_gfn` (0 when empty).
    public var maxRemappedGFN: GFN
    /// The number of vCPUs on the view.
    public var activeVCPUs: Int
    /// The number of entries in the view's own table.
    public var entryCount: Int
    /// The view's own `access_required`, which the fault path reads while a
    /// vCPU is on this view (it can differ from the host's, see
    /// ``Altp2mEngine/setAccessRequired(_:_:)``).
    public var accessRequired: Bool

    /// The remapped range, or `nil` when it is empty.
    public var remappedRange: ClosedRange<GFN>? {
        minRemappedGFN <= maxRemappedGFN ? minRemappedGFN...maxRemappedGFN : nil
    }
}

/// A vCPU's state, as the engine's inspector reports it.
public struct VCPUInfo: Hashable, Sendable {
    /// The vCPU.
    public var id: VCPUID
    /// `p2midx`: the current view (``ViewID/invalid`` while altp2m is inactive).
    public var view: ViewID
    /// The #VE information page, while #VE is enabled.
    public var notifyGFN: GFN?
    /// The frame of the #VE information page.
    public var notifyMFN: MFN?
    /// Whether the vCPU's hardware VMFUNC is enabled.
    public var vmfuncEnabled: Bool
    /// Whether the vCPU waits for a vm_event response.
    public var pausedByVMEvent: Bool
    /// Whether single-stepping is on.
    public var singlestep: Bool
    /// The view a pending fast single-step switches to.
    public var fastSinglestepView: ViewID?
}

/// A domain's state, as the engine's inspector reports it.
public struct DomainStatus: Hashable, Sendable {
    /// The domain.
    public var id: DomainID
    /// Its name.
    public var name: String
    /// HVM or PV.
    public var kind: DomainKind
    /// The number of vCPUs.
    public var vcpuCount: Int
    /// `HVM_PARAM_ALTP2M`.
    public var mode: Altp2mMode
    /// `nr`: the number of views.
    public var viewCount: Int
    /// `altp2m_active`.
    public var isActive: Bool
    /// The host p2m's default access.
    public var hostDefaultAccess: MemAccess
    /// Whether the domain has crashed.
    public var isCrashed: Bool
    /// Toolstack pause count.
    public var pauseCount: Int
    /// The host p2m's `access_required` (each view has its own: ``ViewInfo/accessRequired``).
    public var accessRequired: Bool
    /// Whether a monitor ring is enabled.
    public var hasMonitorRing: Bool
    /// Whether the domain is in log-dirty mode (``Altp2mEngine/enableLogDirty(_:)``).
    public var logDirty: Bool
    /// The number of host p2m gfns that map a frame.
    public var mappedPageCount: Int
    /// See ``Altp2mEngine/generation(of:)``.
    public var generation: UInt64
}

/// What a guest process needs to emulate VMFUNC and cache permissions
/// locally: one read of it is consistent, and ``generation`` says when to
/// read again.
public struct GuestControlSnapshot: Hashable, Sendable {
    /// The domain's generation when the snapshot was taken.
    public var generation: UInt64
    /// `altp2m_active`.
    public var altp2mActive: Bool
    /// Active views (`eptp` list).
    public var activeViews: ViewSet
    /// Active and visible views (`visible_eptp`, the hardware EPTP list).
    public var visibleViews: ViewSet
    /// One entry per vCPU, in vCPU order.
    public var vcpus: [VCPUSnapshot]
}

/// One vCPU in a ``GuestControlSnapshot``.
public struct VCPUSnapshot: Hashable, Sendable {
    /// The current view (``ViewID/invalid`` while altp2m is inactive).
    public var view: ViewID
    /// Whether the vCPU's hardware VMFUNC is enabled.
    public var vmfuncEnabled: Bool
    /// The #VE information page, while #VE is enabled.
    public var notifyGFN: GFN?
    /// The views a VMFUNC on this vCPU can reach: the visible list if VMFUNC
    /// is enabled, else none.
    public var reachableViews: ViewSet
}

/// The frame allocator's counts.
public struct FrameCounts: Hashable, Sendable {
    /// All frames of machine memory.
    public var total: Int
    /// Frames on the free list.
    public var free: Int
    /// Frames in use (`total - free`).
    public var allocated: Int
}
