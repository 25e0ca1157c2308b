import Altp2m

/// The toolstack's domain controls libxenctrl sends as domctls: pause,
/// unpause and `access_required`. dom0 only, as Xen's XSM default policy
/// allows these domctls to the control domain alone.
extension SimDaemon {
    func domainControlOperation(_ op: String, _ a: RequestArguments, caller: Caller) throws(RequestError) -> Reply {
        try Self.requireControlDomain(caller, op)
        let id = try resolveDomain(a, caller: caller)
        func xen(_ body: () throws(XenErrno) -> Void) throws(RequestError) {
            do { try body() } catch { throw .xen(error, "\(op) on \(id): \(error.description)") }
        }
        switch op {
        case "domain.pause":
            // XEN_DOMCTL_pausedomain (domain_pause_by_systemcontroller): pauses nest.
            try xen { () throws(XenErrno) in try engine.pauseDomain(id) }
        case "domain.unpause":
            // XEN_DOMCTL_unpausedomain: EINVAL when not paused by the toolstack.
            try xen { () throws(XenErrno) in try engine.unpauseDomain(id) }
        case "domain.set-access-required":
            // XEN_DOMCTL_set_access_required → arch_p2m_set_access_required.
            let required = try a.bool("required")
            try xen { () throws(XenErrno) in try engine.setAccessRequired(id, required) }
        default:
            throw .usage("unknown operation '\(op)'; see docs/SIMULATOR-DAEMON.md")
        }
        return Reply(fields: [:])
    }
}
