/// The outcome of ``HypervisorControl/setSuppressVEMulti(_:view:firstGFN:lastGFN:suppress:)``.
///
/// The operation keeps going past gfns it cannot set and still succeeds; the
/// first failure is reported here (spec §3.4.15).
public struct SuppressVEMultiResult: Hashable, Sendable {
    /// The error of the first gfn that failed (typically `ESRCH` for a gfn
    /// with no usable entry), or `nil` if all succeeded.
    public var firstError: XenErrno?
    /// The first gfn that failed, or `nil` if all succeeded.
    public var firstErrorGFN: GFN?

    /// Creates a result.
    public init(firstError: XenErrno? = nil, firstErrorGFN: GFN? = nil) {
        self.firstError = firstError
        self.firstErrorGFN = firstErrorGFN
    }
}

/// What the control domain (dom0) asks of a hypervisor: the altp2m operations
/// of libxenctrl (spec §9), the altp2m parameter, and the few domain
/// operations the grant module needs.
///
/// Every call is made *as the control domain*. Methods throw the hypervisor's
/// error number unchanged (for example ``XenErrno/busy`` from ``destroyView(_:view:)``
/// while a vCPU is on the view). Conformers are handles to a hypervisor (the
/// real one through libxenctrl, or the simulator), so the methods are not
/// `mutating`: copies of a conformer talk to the same hypervisor.
///
/// Remember the meaning of index 0 (spec §2.3): it is the host p2m for the
/// mem_access and suppress-#VE calls, and the view-0 table for everything else.
public protocol HypervisorControl {
    /// Lists the domains that exist, dom0 included.
    func listDomains() throws(XenErrno) -> [DomainInfo]

    /// Reads `HVM_PARAM_ALTP2M`, the domain's altp2m mode.
    ///
    /// The corresponding C function is `xc_hvm_param_get(..., HVM_PARAM_ALTP2M, ...)`.
    func getAltp2mParam(_ domain: DomainID) throws(XenErrno) -> Altp2mMode

    /// Sets `HVM_PARAM_ALTP2M`. On Xen 4.17 the mode can be set once (0 → m,
    /// or m → m); from 4.19 it is fixed at creation and this always fails with
    /// ``XenErrno/exists``. Setting the mode does not activate altp2m.
    ///
    /// The corresponding C function is `xc_hvm_param_set(..., HVM_PARAM_ALTP2M, ...)`.
    func setAltp2mParam(_ domain: DomainID, mode: Altp2mMode) throws(XenErrno)

    /// Whether altp2m is active on the domain.
    ///
    /// The corresponding C function is `xc_altp2m_get_domain_state`.
    func getDomainState(_ domain: DomainID) throws(XenErrno) -> Bool

    /// Activates (creating view 0 and putting every vCPU on it) or
    /// deactivates (destroying every view) altp2m on the domain.
    ///
    /// The corresponding C function is `xc_altp2m_set_domain_state`.
    func setDomainState(_ domain: DomainID, active: Bool) throws(XenErrno)

    /// Enables #VE on a vCPU with `gfn` as its #VE information page; this also
    /// turns on the vCPU's hardware VMFUNC.
    ///
    /// The corresponding C function is `xc_altp2m_set_vcpu_enable_notify`.
    func vcpuEnableNotify(_ domain: DomainID, vcpu: VCPUID, gfn: GFN) throws(XenErrno)

    /// Disables #VE on a vCPU (VMFUNC stays enabled). Succeeds if #VE was off.
    ///
    /// The corresponding C function is `xc_altp2m_set_vcpu_disable_notify`.
    func vcpuDisableNotify(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno)

    /// Creates a view in the lowest free slot. The view starts empty (it fills
    /// lazily from the host p2m) and visible.
    /// - Parameter defaultAccess: the view's default access; ``MemAccess/default``
    ///   means the host p2m's current default.
    /// - Returns: the new view's index.
    ///
    /// The corresponding C function is `xc_altp2m_create_view`.
    func createView(_ domain: DomainID, defaultAccess: MemAccess) throws(XenErrno) -> ViewID

    /// Destroys a view. Fails with ``XenErrno/busy`` for view 0, an inactive
    /// view, or a view some vCPU is on.
    ///
    /// The corresponding C function is `xc_altp2m_destroy_view`.
    func destroyView(_ domain: DomainID, view: ViewID) throws(XenErrno)

    /// Moves every vCPU of the domain to a view that is active and visible.
    ///
    /// The corresponding C function is `xc_altp2m_switch_to_view`.
    func switchToView(_ domain: DomainID, view: ViewID) throws(XenErrno)

    /// Sets the access of one gfn in a view (index 0: the host p2m, which
    /// propagates to views). `GFN.invalid` sets the host p2m's default access.
    ///
    /// The corresponding C function is `xc_altp2m_set_mem_access`.
    func setMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN, access: MemAccess) throws(XenErrno)

    /// Sets the access of several gfns in a view, in order. On an error the
    /// elements before it stay applied.
    ///
    /// The corresponding C function is `xc_altp2m_set_mem_access_multi`.
    func setMemAccessMulti(_ domain: DomainID, view: ViewID,
                           entries: [(gfn: GFN, access: MemAccess)]) throws(XenErrno)

    /// Reads the access of a gfn in one p2m (index 0: the host), with no
    /// fallback to the host; ``XenErrno/notFound`` if that p2m has no entry.
    /// `GFN.invalid` reads the p2m's default access.
    ///
    /// The corresponding C function is `xc_altp2m_get_mem_access`.
    func getMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> MemAccess

    /// Makes `oldGFN` show the frame of `newGFN` in one view (index 0: the
    /// view-0 table), or with `newGFN == .invalid` drops the view's entry at
    /// `oldGFN`.
    ///
    /// The corresponding C function is `xc_altp2m_change_gfn`.
    func changeGFN(_ domain: DomainID, view: ViewID, oldGFN: GFN, newGFN: GFN) throws(XenErrno)

    /// Sets the suppress-#VE bit of one gfn in a view (index 0: the host p2m,
    /// which does not reach the view-0 table, see spec §4.4).
    ///
    /// The corresponding C function is `xc_altp2m_set_suppress_ve`.
    func setSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN, suppress: Bool) throws(XenErrno)

    /// Sets the suppress-#VE bit of every gfn in `firstGFN...lastGFN`. Failures
    /// do not stop the operation; the first one is reported in the result.
    ///
    /// The corresponding C function is `xc_altp2m_set_supress_ve_multi` (sic).
    func setSuppressVEMulti(_ domain: DomainID, view: ViewID, firstGFN: GFN, lastGFN: GFN,
                            suppress: Bool) throws(XenErrno) -> SuppressVEMultiResult

    /// Reads the suppress-#VE bit of a gfn in one p2m (index 0: the host).
    ///
    /// The corresponding C function is `xc_altp2m_get_suppress_ve`.
    func getSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> Bool

    /// The view a vCPU is on. On real hardware this may lag a guest VMFUNC
    /// until the vCPU's next VM exit; pause the domain for an exact answer.
    ///
    /// The corresponding C function is `xc_altp2m_get_vcpu_p2m_idx`.
    func getVCPUView(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) -> ViewID

    /// Shows or hides a view from guest VMFUNC and `switchToView`. It does not
    /// move vCPUs already on the view.
    ///
    /// The corresponding C function is `xc_altp2m_set_visibility`.
    func setVisibility(_ domain: DomainID, view: ViewID, visible: Bool) throws(XenErrno)

    /// Removes gfns from the domain's host p2m and frees their frames (a
    /// balloon-out). A view whose remapped range the drop hits is reset.
    ///
    /// The corresponding C function is `xc_domain_decrease_reservation_exact`.
    func decreaseReservation(_ domain: DomainID, gfns: [GFN]) throws(XenErrno)
}
