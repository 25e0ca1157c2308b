/// What creating a channel needs from a hypervisor beyond the altp2m
/// operations of ``HypervisorControl``: shared frames, guest-physical space
/// for windows and #VE pages, a private place to publish descriptors,
/// notification ports, and a few domain controls.
///
/// The grant module (`Altp2mGrant`) is written against this protocol only.
/// Conformers: the in-process simulator engine (`EngineChannelHost` in
/// `Altp2mSim`), the simulator daemon's client, and real Xen (`XenBackend`).
/// Like ``HypervisorControl``, every call is made as the control domain and
/// failures carry the hypervisor's error number; the grant module adds what
/// it was doing and to which domain.
///
/// The protocol lives in the vocabulary module so that a backend can conform
/// without depending on the grant module or on cryptography.
public protocol ChannelHost: HypervisorControl {
    /// Whether the CPU has virtualization exceptions (#VE). Without them
    /// `vcpu_enable_notify` fails, guests never get hardware VMFUNC, and the
    /// suppress-#VE bit must stay set (spec §1.6, §11.1).
    var supportsVirtualizationExceptions: Bool { get }

    /// The Xen release whose altp2m semantics apply (lazy copy on 4.17 takes
    /// the host entry's access; from 4.19 the view's default, spec §4.1).
    var xenVersion: XenVersion { get }

    /// The number of vCPUs of a domain.
    func vcpuCount(_ domain: DomainID) throws(XenErrno) -> UInt32

    /// The domain's active views, view 0 included, in index order, with
    /// whether each is visible to VMFUNC when the backend can tell (Xen has no
    /// call that reads visibility; it reports `nil`).
    func activeViews(_ domain: DomainID) throws(XenErrno) -> [ActiveView]

    /// The domain's `access_required` flag, or `nil` if the backend cannot
    /// read it (Xen can only set it).
    func accessRequired(_ domain: DomainID) throws(XenErrno) -> Bool?

    /// Whether the domain is in log-dirty mode (live migration, or a device
    /// model tracking VRAM), or `nil` if the backend cannot tell (Xen has no
    /// call that only reads it). In that mode a write fault on a log-dirty
    /// entry resets the gfn's access to the host default in every view
    /// (`p2m_change_type_one`), which would undo a channel's lock-out.
    func logDirtyMode(_ domain: DomainID) throws(XenErrno) -> Bool?

    /// Sets `access_required`: with it, a p2m access violation that no
    /// monitor ring receives crashes the domain instead of silently relaxing
    /// the entry to `rwx` (spec §4.3).
    ///
    /// The corresponding C function is `xc_domain_set_access_required`.
    func setAccessRequired(_ domain: DomainID, _ required: Bool) throws(XenErrno)

    /// Pauses every vCPU of the domain (pauses nest).
    ///
    /// The corresponding C function is `xc_domain_pause`.
    func pauseDomain(_ domain: DomainID) throws(XenErrno)

    /// Undoes one ``pauseDomain(_:)``.
    ///
    /// The corresponding C function is `xc_domain_unpause`.
    func unpauseDomain(_ domain: DomainID) throws(XenErrno)

    /// Obtains `count` machine frames that both domains map, each at gfns of
    /// its own host p2m that nothing else uses, as ordinary RAM.
    ///
    /// Simulator: fresh zeroed frames mapped into both host p2ms. Xen: the
    /// agents' grant flow (docs/XEN.md); the call collects the gfns each
    /// agent reported.
    /// - Returns: each domain's backing gfns; index *i* of each names the same frame.
    func obtainSharedFrames(between first: DomainID, and second: DomainID,
                            count: Int) throws(XenErrno) -> SharedFrames

    /// What releasing `frames` (``releaseSharedFrames(_:)``) does to the
    /// channel view of `domain`, one of the two domains.
    ///
    /// Simulator: both host p2ms drop the frames, and a drop inside a view's
    /// remapped range resets the view; re-applying the domain's other
    /// channels repairs it (their backing is RAM). Xen: the mapping side
    /// (`second`) unmaps its grant mappings, the same drop, but a reset view
    /// cannot be repaired (`change_gfn` cannot reach a grant mapping the view
    /// lacks), while the granting side's pages stay its RAM. The default is
    /// the simulator's.
    func releaseEffect(on domain: DomainID, of frames: SharedFrames) -> FrameReleaseEffect

    /// The same, telling the agents each domain's channel view: on Xen the
    /// mapping agent touches its grant mappings from that view so the view
    /// holds entries for them (docs/XEN.md, "The frame flow"). A host that
    /// needs no agent ignores the views (the default).
    func obtainSharedFrames(between first: DomainID, and second: DomainID, count: Int,
                            views: (first: ViewID, second: ViewID)) throws(XenErrno) -> SharedFrames

    /// Overwrites the frames with zeros, then releases them: they leave both
    /// host p2ms (or, on Xen, the agents are told to unmap and end the grant).
    /// A domain that no longer exists is skipped.
    func releaseSharedFrames(_ frames: SharedFrames) throws(XenErrno)

    /// Writes `bytes` at `offset` of the frame a domain's host p2m maps at
    /// `gfn` (the host initialises the control page this way). Guest access
    /// restrictions do not apply to the control domain.
    func writeGuestMemory(_ domain: DomainID, gfn: GFN, offset: Int, bytes: [UInt8]) throws(XenErrno)

    /// Finds `pageCount` consecutive gfns that are a hole in the domain's
    /// memory and makes them ordinary RAM (`change_gfn` needs a RAM entry at
    /// the gfn it remaps, spec §5.1) that the guest's memory map does not use.
    /// - Returns: the first gfn of the window.
    func reserveWindow(_ domain: DomainID, pageCount: Int) throws(XenErrno) -> GFN

    /// Returns a window reserved with ``reserveWindow(_:pageCount:)`` to the hole it was.
    func releaseWindow(_ domain: DomainID, firstGFN: GFN, pageCount: Int) throws(XenErrno)

    /// Reserves one page of ordinary RAM outside the guest's memory map, for
    /// a vCPU's #VE information page.
    func reserveVEInfoPage(_ domain: DomainID) throws(XenErrno) -> GFN

    /// Releases a page from ``reserveVEInfoPage(_:)``.
    func releaseVEInfoPage(_ domain: DomainID, gfn: GFN) throws(XenErrno)

    /// Publishes `envelope` where only `domain` (and the control domain) can
    /// read it, under `name`; replaces an earlier one of that name. Xen:
    /// `/local/domain/<id>/data/secure-channel/<name>` in xenstore.
    func publishDescriptor(_ envelope: [UInt8], for domain: DomainID, name: String) throws(XenErrno)

    /// Removes a published descriptor; succeeds if there is none.
    func revokeDescriptor(for domain: DomainID, name: String) throws(XenErrno)

    /// Allocates a notification port of `domain` for talking to `remote`
    /// (Xen: an unbound event channel, `xc_evtchn_alloc_unbound`).
    func allocateNotificationPort(_ domain: DomainID, remote: DomainID) throws(XenErrno) -> UInt32

    /// Releases a port from ``allocateNotificationPort(_:remote:)``.
    func releaseNotificationPort(_ domain: DomainID, port: UInt32) throws(XenErrno)

    /// Wakes whoever sleeps on the 32-bit word at `offset` of the frame the
    /// domain maps at `gfn`, or on `port`: a futex wake by the owner of the
    /// simulator's memory; on Xen a no-op, because revoking the descriptor
    /// fires the agent's xenstore watch. Best effort; never fails.
    func wake(_ domain: DomainID, gfn: GFN, offset: Int, port: UInt32)
}

/// What releasing shared frames does to one domain's channel view
/// (``ChannelHost/releaseEffect(on:of:)``).
public enum FrameReleaseEffect: Sendable, Equatable {
    /// Its backing gfns stay: no view changes.
    case none
    /// A view whose remapped range holds them is reset; re-applying the
    /// channels restores it.
    case repairableReset
    /// A view whose remapped range holds them is reset for good.
    case unrepairableReset
}

/// One active view of a domain.
public struct ActiveView: Hashable, Sendable, CustomStringConvertible {
    /// The view's index.
    public var view: ViewID
    /// Whether VMFUNC can reach it; `nil` when the backend cannot tell.
    public var isVisible: Bool?

    /// Creates an entry.
    public init(view: ViewID, isVisible: Bool?) {
        self.view = view
        self.isVisible = isVisible
    }

    public var description: String {
        switch isVisible {
        case .some(true): "\(view) (visible)"
        case .some(false): "\(view) (hidden)"
        case .none: "\(view)"
        }
    }
}

/// Frames shared by two domains: index *i* of ``firstGFNs`` and of
/// ``secondGFNs`` name the same machine frame in each domain's host p2m.
public struct SharedFrames: Hashable, Sendable {
    /// One domain.
    public var first: DomainID
    /// The other domain.
    public var second: DomainID
    /// Where the first domain maps the frames.
    public var firstGFNs: [GFN]
    /// Where the second domain maps the frames.
    public var secondGFNs: [GFN]

    /// Creates a description of shared frames.
    public init(first: DomainID, second: DomainID, firstGFNs: [GFN], secondGFNs: [GFN]) {
        precondition(firstGFNs.count == secondGFNs.count, "each frame is mapped in both domains")
        self.first = first
        self.second = second
        self.firstGFNs = firstGFNs
        self.secondGFNs = secondGFNs
    }

    /// The number of frames.
    public var count: Int { firstGFNs.count }

    /// Where `domain` maps the frames, or `nil` if it is neither domain.
    public func gfns(of domain: DomainID) -> [GFN]? {
        domain == first ? firstGFNs : domain == second ? secondGFNs : nil
    }
}

extension ChannelHost {
    public func obtainSharedFrames(between first: DomainID, and second: DomainID, count: Int,
                                   views: (first: ViewID, second: ViewID)) throws(XenErrno) -> SharedFrames {
        try obtainSharedFrames(between: first, and: second, count: count)
    }

    /// The vCPU count from ``HypervisorControl/listDomains()``.
    public func vcpuCount(_ domain: DomainID) throws(XenErrno) -> UInt32 {
        guard let info = try listDomains().first(where: { $0.id == domain }) else { throw .notFound }
        return info.vcpuCount
    }

    /// Finds active views by asking each index for its default access
    /// (`get_mem_access(view, INVALID_GFN)` answers only for active views);
    /// visibility is unknown. Probes the 10 views of Xen before 4.21.
    public func activeViews(_ domain: DomainID) throws(XenErrno) -> [ActiveView] {
        guard try getDomainState(domain) else { return [] }
        var found = [ActiveView(view: .hostOrView0, isVisible: nil)]
        for index in UInt16(1)..<10 {
            do {
                _ = try getMemAccess(domain, view: ViewID(index), gfn: .invalid)
                found.append(ActiveView(view: ViewID(index), isVisible: nil))
            } catch XenErrno.invalid {
                continue
            }
        }
        return found
    }

    /// Both domains drop the frames; re-applying repairs a reset.
    public func releaseEffect(on domain: DomainID, of frames: SharedFrames) -> FrameReleaseEffect { .repairableReset }

    /// Unknown by default.
    public func accessRequired(_ domain: DomainID) throws(XenErrno) -> Bool? { nil }

    /// Unknown by default.
    public func logDirtyMode(_ domain: DomainID) throws(XenErrno) -> Bool? { nil }
}
