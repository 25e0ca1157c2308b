import Altp2m

/// The vm_event monitor ring, driven by dom0.
extension SimDaemon {
    func monitorOperation(_ op: String, _ a: RequestArguments, caller: Caller) throws(RequestError) -> Reply {
        let id = try resolveDomain(a, caller: caller)
        func xen<R>(_ body: () throws(XenErrno) -> R) throws(RequestError) -> R {
            do { return try body() } catch { throw .xen(error, "\(op) on \(id): \(error.description)") }
        }
        switch op {
        case "monitor.enable":
            let options = MonitorOptions(singlestepEvents: try a.bool("singlestep_events", default: false))
            try xen { () throws(XenErrno) in try engine.enableMonitor(id, options: options) }
            // xc_monitor_enable does not touch access_required: only an
            // explicit argument changes it.
            if a.fields["access_required"] != nil {
                let required = try a.bool("access_required", default: false)
                try xen { () throws(XenErrno) in try engine.setAccessRequired(id, required) }
            }
            return Reply(fields: [:])
        case "monitor.disable":
            try xen { () throws(XenErrno) in try engine.disableMonitor(id) }
            return Reply(fields: [:])
        case "monitor.events":
            let requests = try xen { () throws(XenErrno) in try engine.takeMonitorRequests(id) }
            return Reply(fields: ["events": .array(requests.map(Self.vmEventJSON))])
        case "monitor.respond":
            let vcpu = VCPUID(try a.bounded("vcpu", as: UInt32.self))
            var flags: VMEventFlags = []
            if try a.bool("unpause", default: true) { flags.insert(.vcpuPaused) }
            if try a.bool("toggle_singlestep", default: false) { flags.insert(.toggleSinglestep) }
            var view: ViewID = 0
            if let index = try a.optionalUInt("altp2m_idx") {
                flags.insert(.alternateP2M)
                view = ViewID(UInt16(truncatingIfNeeded: index))
            }
            var fast: ViewID = 0
            if let index = try a.optionalUInt("fast_singlestep") {
                flags.insert(.fastSinglestep)
                fast = ViewID(UInt16(truncatingIfNeeded: index))
            }
            let response = VMEventResponse(flags: flags, vcpu: vcpu, altp2mIndex: view, fastSinglestepView: fast)
            try xen { () throws(XenErrno) in try engine.respond(id, response) }
            let now = (try? engine.vcpuInfo(id, vcpu: vcpu)).map { JSONValue.int(Int64($0.view.rawValue)) } ?? .null
            return Reply(fields: ["view": now])
        default:
            throw .usage("unknown operation '\(op)'; see chanctl monitor --help")
        }
    }
}
