import Altp2m

/// The calls of libxenctrl (`xenctrl.h`, Xen 4.17) that dom0's backend
/// makes, one method per C function, with the C library's semantics.
///
/// Two implementations: the C library itself (XenBackend, a thin layer that
/// converts arguments and turns `-1`/`errno` into a thrown ``XenErrno``) and
/// the simulator (Altp2mSim, the daemon serving the same hypercalls). Every
/// decision the backend makes sits above this protocol, so the simulator
/// runs the same backend code a Xen host runs.
///
/// Access types cross this interface as the release's ABI numbers
/// (`xenmem_access_t`), exactly as the C functions take them: the caller
/// converts with ``MemAccess/abiValue(for:)`` for the release it checked.
public protocol XenControlLibrary: AnyObject {
    /// `xc_version(xch, XENVER_version, NULL)`: the release as (major, minor).
    func version() throws(XenErrno) -> (major: Int, minor: Int)

    /// `xc_domain_getinfolist`: up to `maximum` domains from `first` on, in id order.
    func domainGetInfoList(first: DomainID, maximum: Int) throws(XenErrno) -> [XenDomainRecord]

    /// `xc_hvm_param_get`.
    func hvmParamGet(_ domain: DomainID, index: UInt32) throws(XenErrno) -> UInt64
    /// `xc_hvm_param_set`.
    func hvmParamSet(_ domain: DomainID, index: UInt32, value: UInt64) throws(XenErrno)

    /// `xc_altp2m_get_domain_state`.
    func altp2mGetDomainState(_ domain: DomainID) throws(XenErrno) -> Bool
    /// `xc_altp2m_set_domain_state`.
    func altp2mSetDomainState(_ domain: DomainID, active: Bool) throws(XenErrno)
    /// `xc_altp2m_set_vcpu_enable_notify`.
    func altp2mSetVCPUEnableNotify(_ domain: DomainID, vcpu: UInt32, gfn: UInt64) throws(XenErrno)
    /// `xc_altp2m_set_vcpu_disable_notify`.
    func altp2mSetVCPUDisableNotify(_ domain: DomainID, vcpu: UInt32) throws(XenErrno)
    /// `xc_altp2m_create_view`: the new view's index.
    func altp2mCreateView(_ domain: DomainID, defaultAccess: UInt16) throws(XenErrno) -> UInt16
    /// `xc_altp2m_destroy_view`.
    func altp2mDestroyView(_ domain: DomainID, view: UInt16) throws(XenErrno)
    /// `xc_altp2m_switch_to_view`.
    func altp2mSwitchToView(_ domain: DomainID, view: UInt16) throws(XenErrno)
    /// `xc_altp2m_set_mem_access`.
    func altp2mSetMemAccess(_ domain: DomainID, view: UInt16, gfn: UInt64, access: UInt16) throws(XenErrno)
    /// `xc_altp2m_set_mem_access_multi`: `accesses[i]` for `gfns[i]`.
    func altp2mSetMemAccessMulti(_ domain: DomainID, view: UInt16, accesses: [UInt8], gfns: [UInt64]) throws(XenErrno)
    /// `xc_altp2m_get_mem_access`: the ABI number.
    func altp2mGetMemAccess(_ domain: DomainID, view: UInt16, gfn: UInt64) throws(XenErrno) -> UInt16
    /// `xc_altp2m_change_gfn`.
    func altp2mChangeGFN(_ domain: DomainID, view: UInt16, oldGFN: UInt64, newGFN: UInt64) throws(XenErrno)
    /// `xc_altp2m_set_suppress_ve`.
    func altp2mSetSuppressVE(_ domain: DomainID, view: UInt16, gfn: UInt64, suppress: Bool) throws(XenErrno)
    /// `xc_altp2m_set_supress_ve_multi` (sic): the first failing gfn and
    /// its (negative) error code, both 0 when every gfn succeeded.
    func altp2mSetSuppressVEMulti(_ domain: DomainID, view: UInt16, firstGFN: UInt64, lastGFN: UInt64,
                                  suppress: Bool) throws(XenErrno) -> (errorGFN: UInt64, errorCode: Int32)
    /// `xc_altp2m_get_suppress_ve`.
    func altp2mGetSuppressVE(_ domain: DomainID, view: UInt16, gfn: UInt64) throws(XenErrno) -> Bool
    /// `xc_altp2m_get_vcpu_p2m_idx`.
    func altp2mGetVCPUP2MIndex(_ domain: DomainID, vcpu: UInt32) throws(XenErrno) -> UInt16
    /// `xc_altp2m_set_visibility`.
    func altp2mSetVisibility(_ domain: DomainID, view: UInt16, visible: Bool) throws(XenErrno)

    /// `xc_domain_set_access_required`.
    func domainSetAccessRequired(_ domain: DomainID, required: Bool) throws(XenErrno)
    /// `xc_domain_pause`.
    func domainPause(_ domain: DomainID) throws(XenErrno)
    /// `xc_domain_unpause`.
    func domainUnpause(_ domain: DomainID) throws(XenErrno)
    /// `xc_domain_setmaxmem`: the allowance in KiB.
    func domainSetMaxMem(_ domain: DomainID, kibibytes: UInt64) throws(XenErrno)
    /// `xc_domain_populate_physmap_exact` with order-0 extents and no flags:
    /// every gfn gets fresh RAM, or the call fails.
    func domainPopulatePhysmapExact(_ domain: DomainID, gfns: [UInt64]) throws(XenErrno)
    /// `xc_domain_decrease_reservation_exact` with order-0 extents.
    func domainDecreaseReservationExact(_ domain: DomainID, gfns: [UInt64]) throws(XenErrno)
}

/// What `xc_domain_getinfolist` reports of a domain (the fields of
/// `xc_domaininfo_t` the backend reads), decoded from Xen's flag word.
public struct XenDomainRecord: Sendable, Equatable {
    /// `domain`.
    public var domain: DomainID
    /// `XEN_DOMINF_hvm_guest`.
    public var isHVM: Bool
    /// `XEN_DOMINF_paused`.
    public var isPaused: Bool
    /// `XEN_DOMINF_shutdown` with reason `SHUTDOWN_crash`.
    public var isCrashed: Bool
    /// `XEN_DOMINF_dying`.
    public var isDying: Bool
    /// The reason (`SHUTDOWN_poweroff` 0, `reboot` 1, `suspend` 2, `crash`
    /// 3, `watchdog` 4, `soft_reset` 5) when `XEN_DOMINF_shutdown` is set,
    /// else nil (the reason bits mean nothing then).
    public var shutdownReason: UInt32?
    /// `tot_pages`.
    public var totalPages: UInt64
    /// `max_pages`.
    public var maximumPages: UInt64
    /// `max_vcpu_id + 1` (0 when the domain has no vCPU yet).
    public var vcpuCount: UInt32

    public init(domain: DomainID, isHVM: Bool, isPaused: Bool, isCrashed: Bool, isDying: Bool = false,
                shutdownReason: UInt32? = nil, totalPages: UInt64, maximumPages: UInt64, vcpuCount: UInt32) {
        self.domain = domain
        self.isHVM = isHVM
        self.isPaused = isPaused
        self.isCrashed = isCrashed
        self.isDying = isDying
        self.shutdownReason = shutdownReason ?? (isCrashed ? 3 : nil)
        self.totalPages = totalPages
        self.maximumPages = maximumPages
        self.vcpuCount = vcpuCount
    }
}
