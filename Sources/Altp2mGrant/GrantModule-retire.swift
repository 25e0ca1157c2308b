import Altp2m

/// Retiring a domain: what the grant module added to a domain is removed
/// once the domain carries no more channels (the last step of a teardown,
/// `dismantle` in GrantModule-teardown.swift).
extension GrantModule {
    /// Removes what the grant module added to a domain that carries no more
    /// channels: the channel view is hidden (so no VMFUNC can re-enter it),
    /// every vCPU moved to view 0, the view destroyed; `access_required`
    /// cleared if the module set it, while altp2m is still active (see
    /// `clearAccessRequired`), and left on if it was on before or its origin
    /// is unknown (``AccessRequiredOrigin``; the unknown case goes to
    /// `notes`); then #VE is disabled on the vCPUs the module enabled (or
    /// altp2m deactivated, if the module activated it and no other view
    /// exists, which also turns VMFUNC off), and their info pages released.
    func retireDomain(_ state: DomainState, problems: inout [String], notes: inout [String]) {
        let domain = state.domain
        let who = "\(state.name) (\(domain))"
        if state.view != .hostOrView0 {
            note(&problems, "\(who): hiding the channel \(state.view)") { () throws(XenErrno) in
                try host.setVisibility(domain, view: state.view, visible: false)
            }
            do {
                try host.switchToView(domain, view: .hostOrView0)
            } catch .invalid {
                // View 0 was hidden by someone: it must be reachable for the
                // vCPUs to leave the channel view.
                note(&problems, "\(who): showing view 0 and moving every vCPU to it") { () throws(XenErrno) in
                    try host.setVisibility(domain, view: .hostOrView0, visible: true)
                    try host.switchToView(domain, view: .hostOrView0)
                }
            } catch {
                problems.append("\(who): moving every vCPU to view 0: \(error)")
            }
            note(&problems, "\(who): destroying the channel \(state.view)") { () throws(XenErrno) in
                try host.destroyView(domain, view: state.view)
            }
        }
        if state.accessRequired == .grantModule {
            clearAccessRequired(state, problems: &problems)
        }
        let others = ((try? host.activeViews(domain)) ?? []).filter { $0.view != .hostOrView0 }
        let deactivating = state.activatedByUs && others.isEmpty
        if state.accessRequired == .unknown {
            notes.append(accessRequiredLeftOn(state, altp2mDeactivated: deactivating))
        }
        if deactivating {
            note(&problems, "\(who): deactivating altp2m") { () throws(XenErrno) in
                try host.setDomainState(domain, active: false)
            }
        } else {
            for vcpu in state.notifyPages.keys.sorted() {
                note(&problems, "\(who): vcpu_disable_notify(\(vcpu))") { () throws(XenErrno) in
                    try host.vcpuDisableNotify(domain, vcpu: vcpu)
                }
            }
        }
        for (vcpu, page) in state.notifyPages.sorted(by: { $0.key < $1.key }) {
            note(&problems, "\(who): releasing the #VE page \(page) of \(vcpu)") { () throws(XenErrno) in
                try host.releaseVEInfoPage(domain, gfn: page)
            }
        }
    }

    /// What the teardown says about an `access_required` it left on because
    /// the host cannot read the flag: the grant module may not have been the
    /// one that turned it on, and clearing someone else's setting would relax
    /// to `rwx` the violations their tool wants to crash the domain. The
    /// operator knows who else uses the domain; the fix is a command, run
    /// while altp2m is active so that the views lose the flag too.
    private func accessRequiredLeftOn(_ state: DomainState, altp2mDeactivated: Bool) -> String {
        let id = state.domain.rawValue
        let how = altp2mDeactivated
            ? "altp2m is deactivated now, and the views keep the flag, so clear it with altp2m active: chanctl altp2m set-state \(id) on --backend xen, then chanctl altp2m access-required \(id) off --backend xen, then chanctl altp2m set-state \(id) off --backend xen"
            : "clear it while altp2m is active: chanctl altp2m access-required \(id) off --backend xen"
        return "\(state.name) (\(state.domain)): access_required left on: the host cannot read it, so the grant module cannot tell whether it turned it on or something else did (a monitoring or VM-introspection tool); if nothing else needs it, \(how)"
    }

    /// Clears `access_required` while altp2m is still active: Xen keeps the
    /// flag per p2m and `arch_p2m_set_access_required` reaches the views only
    /// while altp2m is active, and deactivation leaves the views' flags as
    /// they are. Cleared after deactivating, the views would keep it, and a
    /// later activation without a monitor would crash the domain on its
    /// first violation.
    private func clearAccessRequired(_ state: DomainState, problems: inout [String]) {
        let domain = state.domain
        let who = "\(state.name) (\(domain))"
        if (try? host.getDomainState(domain)) == false {
            problems.append("\(who): altp2m was deactivated outside the grant module, so clearing access_required reaches only the host p2m and its views keep it; activate altp2m and run xc_domain_set_access_required(\(domain.rawValue), 0) to clear them")
        }
        note(&problems, "\(who): clearing access_required") { () throws(XenErrno) in
            try host.setAccessRequired(domain, false)
        }
    }
}
