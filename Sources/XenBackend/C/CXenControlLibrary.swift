#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import XenGuest
import XenInterface
internal import CXen

/// ``XenControlLibrary`` over libxenctrl: each method converts its
/// arguments, calls the C function and turns `-1`/`errno` into a thrown
/// ``XenErrno``. No decision is made here (docs/XEN.md, "The C layer").
final class CXenControlLibrary: XenControlLibrary {
    private let xch: OpaquePointer

    /// `xc_interface_open`.
    init() throws(XenErrno) {
        guard let xch = xc_interface_open(nil, nil, 0) else { throw currentXenErrno() }
        self.xch = xch
    }

    deinit { xc_interface_close(xch) }

    @inline(__always)
    private func check(_ rc: Int32) throws(XenErrno) {
        if rc < 0 { throw currentXenErrno() }
    }

    private func d(_ domain: DomainID) -> UInt32 { UInt32(domain.rawValue) }

    func version() throws(XenErrno) -> (major: Int, minor: Int) {
        let raw = xc_version(xch, 0 /* XENVER_version */, nil)
        try check(raw)
        return (Int(raw >> 16), Int(raw & 0xFFFF))
    }

    func domainGetInfoList(first: DomainID, maximum: Int) throws(XenErrno) -> [XenDomainRecord] {
        guard maximum > 0, let count = UInt32(exactly: maximum) else { throw .invalid }
        var buffer = [xc_domaininfo_t](repeating: xc_domaininfo_t(), count: maximum)
        let found = xc_domain_getinfolist(xch, d(first), count, &buffer)
        try check(found)
        return buffer.prefix(Int(found)).map { entry in
            let shutdown = entry.flags & UInt32(XEN_DOMINF_shutdown) != 0
            let reason = (entry.flags >> UInt32(XEN_DOMINF_shutdownshift)) & UInt32(XEN_DOMINF_shutdownmask)
            return XenDomainRecord(domain: DomainID(rawValue: entry.domain),
                                   isHVM: entry.flags & UInt32(XEN_DOMINF_hvm_guest) != 0,
                                   isPaused: entry.flags & UInt32(XEN_DOMINF_paused) != 0,
                                   isCrashed: shutdown && reason == 3 /* SHUTDOWN_crash */,
                                   isDying: entry.flags & UInt32(XEN_DOMINF_dying) != 0,
                                   shutdownReason: shutdown ? reason : nil,
                                   totalPages: entry.tot_pages, maximumPages: entry.max_pages,
                                   vcpuCount: entry.max_vcpu_id == UInt32.max ? 0 : entry.max_vcpu_id + 1)
        }
    }

    func hvmParamGet(_ domain: DomainID, index: UInt32) throws(XenErrno) -> UInt64 {
        var value: UInt64 = 0
        try check(xc_hvm_param_get(xch, d(domain), index, &value))
        return value
    }

    func hvmParamSet(_ domain: DomainID, index: UInt32, value: UInt64) throws(XenErrno) {
        try check(xc_hvm_param_set(xch, d(domain), index, value))
    }

    func altp2mGetDomainState(_ domain: DomainID) throws(XenErrno) -> Bool {
        var state = false
        try check(xc_altp2m_get_domain_state(xch, d(domain), &state))
        return state
    }

    func altp2mSetDomainState(_ domain: DomainID, active: Bool) throws(XenErrno) {
        try check(xc_altp2m_set_domain_state(xch, d(domain), active))
    }

    func altp2mSetVCPUEnableNotify(_ domain: DomainID, vcpu: UInt32, gfn: UInt64) throws(XenErrno) {
        try check(xc_altp2m_set_vcpu_enable_notify(xch, d(domain), vcpu, xen_pfn_t(gfn)))
    }

    func altp2mSetVCPUDisableNotify(_ domain: DomainID, vcpu: UInt32) throws(XenErrno) {
        try check(xc_altp2m_set_vcpu_disable_notify(xch, d(domain), vcpu))
    }

    func altp2mCreateView(_ domain: DomainID, defaultAccess: UInt16) throws(XenErrno) -> UInt16 {
        var view: UInt16 = 0
        try check(xc_altp2m_create_view(xch, d(domain), xenmem_access_t(rawValue: UInt32(defaultAccess)), &view))
        return view
    }

    func altp2mDestroyView(_ domain: DomainID, view: UInt16) throws(XenErrno) {
        try check(xc_altp2m_destroy_view(xch, d(domain), view))
    }

    func altp2mSwitchToView(_ domain: DomainID, view: UInt16) throws(XenErrno) {
        try check(xc_altp2m_switch_to_view(xch, d(domain), view))
    }

    func altp2mSetMemAccess(_ domain: DomainID, view: UInt16, gfn: UInt64, access: UInt16) throws(XenErrno) {
        try check(xc_altp2m_set_mem_access(xch, d(domain), view, xen_pfn_t(gfn), xenmem_access_t(rawValue: UInt32(access))))
    }

    func altp2mSetMemAccessMulti(_ domain: DomainID, view: UInt16, accesses: [UInt8], gfns: [UInt64]) throws(XenErrno) {
        guard accesses.count == gfns.count, let count = UInt32(exactly: gfns.count) else { throw .invalid }
        var accesses = accesses
        var gfns = gfns
        try check(xc_altp2m_set_mem_access_multi(xch, d(domain), view, &accesses, &gfns, count))
    }

    func altp2mGetMemAccess(_ domain: DomainID, view: UInt16, gfn: UInt64) throws(XenErrno) -> UInt16 {
        var access = xenmem_access_t(rawValue: 0)
        try check(xc_altp2m_get_mem_access(xch, d(domain), view, xen_pfn_t(gfn), &access))
        guard let value = UInt16(exactly: access.rawValue) else { throw .outOfRange }
        return value
    }

    func altp2mChangeGFN(_ domain: DomainID, view: UInt16, oldGFN: UInt64, newGFN: UInt64) throws(XenErrno) {
        try check(xc_altp2m_change_gfn(xch, d(domain), view, xen_pfn_t(oldGFN), xen_pfn_t(newGFN)))
    }

    func altp2mSetSuppressVE(_ domain: DomainID, view: UInt16, gfn: UInt64, suppress: Bool) throws(XenErrno) {
        try check(xc_altp2m_set_suppress_ve(xch, d(domain), view, xen_pfn_t(gfn), suppress))
    }

    func altp2mSetSuppressVEMulti(_ domain: DomainID, view: UInt16, firstGFN: UInt64, lastGFN: UInt64,
                                  suppress: Bool) throws(XenErrno) -> (errorGFN: UInt64, errorCode: Int32) {
        // libxenctrl writes these only when a gfn failed.
        var errorGFN: xen_pfn_t = 0
        var errorCode: Int32 = 0
        try check(xc_altp2m_set_supress_ve_multi(xch, d(domain), view, xen_pfn_t(firstGFN), xen_pfn_t(lastGFN),
                                                  suppress, &errorGFN, &errorCode))
        return (UInt64(errorGFN), errorCode)
    }

    func altp2mGetSuppressVE(_ domain: DomainID, view: UInt16, gfn: UInt64) throws(XenErrno) -> Bool {
        var suppress = false
        try check(xc_altp2m_get_suppress_ve(xch, d(domain), view, xen_pfn_t(gfn), &suppress))
        return suppress
    }

    func altp2mGetVCPUP2MIndex(_ domain: DomainID, vcpu: UInt32) throws(XenErrno) -> UInt16 {
        var index: UInt16 = 0
        try check(xc_altp2m_get_vcpu_p2m_idx(xch, d(domain), vcpu, &index))
        return index
    }

    func altp2mSetVisibility(_ domain: DomainID, view: UInt16, visible: Bool) throws(XenErrno) {
        try check(xc_altp2m_set_visibility(xch, d(domain), view, visible))
    }

    func domainSetAccessRequired(_ domain: DomainID, required: Bool) throws(XenErrno) {
        try check(xc_domain_set_access_required(xch, d(domain), required ? 1 : 0))
    }

    func domainPause(_ domain: DomainID) throws(XenErrno) {
        try check(xc_domain_pause(xch, d(domain)))
    }

    func domainUnpause(_ domain: DomainID) throws(XenErrno) {
        try check(xc_domain_unpause(xch, d(domain)))
    }

    func domainSetMaxMem(_ domain: DomainID, kibibytes: UInt64) throws(XenErrno) {
        try check(xc_domain_setmaxmem(xch, d(domain), kibibytes))
    }

    func domainPopulatePhysmapExact(_ domain: DomainID, gfns: [UInt64]) throws(XenErrno) {
        guard !gfns.isEmpty else { return }
        var frames = gfns.map { xen_pfn_t($0) }
        try check(xc_domain_populate_physmap_exact(xch, d(domain), UInt(frames.count), 0, 0, &frames))
    }

    func domainDecreaseReservationExact(_ domain: DomainID, gfns: [UInt64]) throws(XenErrno) {
        guard !gfns.isEmpty else { return }
        var frames = gfns.map { xen_pfn_t($0) }
        try check(xc_domain_decrease_reservation_exact(xch, d(domain), UInt(frames.count), 0, &frames))
    }
}
