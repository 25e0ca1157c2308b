import Altp2m
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What happens inside guests: memory accesses, VMFUNC, #VE pages, host p2m
/// changes, table inspection (guest processes attaching and leaving are in
/// SimDaemon+GuestProcess.swift).
extension SimDaemon {
    func guestOperation(_ op: String, _ a: RequestArguments, caller: Caller, connection: Connection?,
                        record: inout [String: JSONValue], touched: inout [GFN]) throws(RequestError) -> Reply {
        switch op {
        case "guest.attach":
            return try attach(a, caller: caller, connection: connection)
        case "guest.detach":
            if let connection { guestProcessLeft(connection, how: "detached") }
            return Reply(fields: [:])
        case "guest.sync":
            return Reply(fields: [:])
        default:
            break
        }
        let id = try resolveDomain(a, caller: caller)
        try Self.requireSelfOrControl(caller, target: id)
        func xen<R>(_ body: () throws(XenErrno) -> R) throws(RequestError) -> R {
            do { return try body() } catch { throw .xen(error, "\(op) on \(id): \(error.description)") }
        }

        switch op {
        case "guest.access":
            let vcpu = VCPUID(try a.bounded("vcpu", as: UInt32.self))
            let gfn = GFN(try a.uint("gfn"))
            let kind: AccessKind
            switch a.optionalString("kind") ?? "r" {
            case "r", "read": kind = .read
            case "w", "write": kind = .write
            case "x", "execute": kind = .execute
            case let other: throw .usage("bad access kind '\(other)': expected r, w or x")
            }
            let offset = try a.optionalUInt("offset") ?? 0
            let gla = try a.optionalUInt("gla")
            let pageWalk = try a.bool("page_walk", default: false)
            // The #VE semaphore is guest memory the engine reads: record what
            // it was, so a replay decides the same way (docs: journal).
            if replaying, let recorded = try a.optionalUInt("ve_semaphore"),
               let info = try? engine.vcpuInfo(id, vcpu: vcpu), let mfn = info.notifyMFN {
                memory.store(UInt32(truncatingIfNeeded: recorded), mfn: mfn, offset: VEInfo.Offset.semaphore)
            } else if let info = try? engine.vcpuInfo(id, vcpu: vcpu), let mfn = info.notifyMFN {
                record["ve_semaphore"] = .int(Int64(memory.load(UInt32.self, mfn: mfn, offset: VEInfo.Offset.semaphore)))
            }
            let outcome = try xen { () throws(XenErrno) in
                try engine.guestAccess(id, vcpu: vcpu, gfn: gfn, kind: kind, offset: offset, gla: gla,
                                       duringPageWalk: pageWalk)
            }
            touched.append(gfn)
            if case .domainCrashed = outcome { domainCrashed(id) }
            var fields = Self.outcomeJSON(outcome)
            if fields["view"] == nil, let info = try? engine.vcpuInfo(id, vcpu: vcpu) {
                fields["view"] = info.view.isInvalid ? .null : .int(Int64(info.view.rawValue))
            }
            return Reply(fields: fields)

        case "guest.vmfunc":
            let vcpu = VCPUID(try a.bounded("vcpu", as: UInt32.self))
            let index = try a.bounded("index", as: UInt32.self)
            let eax = try a.optionalUInt("eax").map { UInt32(truncatingIfNeeded: $0) } ?? 0
            let outcome = try xen { () throws(XenErrno) in try engine.vmfunc(id, vcpu: vcpu, eax: eax, ecx: index) }
            let view = (try? engine.vcpuInfo(id, vcpu: vcpu)).map { Int64($0.view.rawValue) }
            var fields: [String: JSONValue] = ["view": view.map { .int($0) } ?? .null]
            switch outcome {
            case .switched: fields["outcome"] = "ok"
            case .invalidOpcode(let cause):
                fields["outcome"] = "ud"
                fields["cause"] = switch cause {
                case .vmfuncDisabled: "vmfunc_disabled"
                case .vmExit: "vm_exit"
                case .emulationRefused: "emulation_refused"
                }
            case .vcpuNotRunning: fields["outcome"] = "not_running"
            }
            return Reply(fields: fields)

        case "guest.ve-info":
            let vcpu = VCPUID(try a.bounded("vcpu", as: UInt32.self))
            let info = try xen { () throws(XenErrno) in try engine.vcpuInfo(id, vcpu: vcpu) }
            guard let mfn = info.notifyMFN, let gfn = info.notifyGFN else {
                throw .refused("vCPU \(vcpu.rawValue) of \(id) has no #VE information page; run: chanctl altp2m enable-notify")
            }
            var fields = Self.veInfoJSON(VEInfo(reading: mfn, of: memory))
            fields["gfn"] = gfn.json
            return Reply(fields: fields)

        case "guest.ve-rearm":
            let vcpu = VCPUID(try a.bounded("vcpu", as: UInt32.self))
            let info = try xen { () throws(XenErrno) in try engine.vcpuInfo(id, vcpu: vcpu) }
            guard let mfn = info.notifyMFN else {
                throw .refused("vCPU \(vcpu.rawValue) of \(id) has no #VE information page; run: chanctl altp2m enable-notify")
            }
            memory.store(UInt32(0), mfn: mfn, offset: VEInfo.Offset.semaphore)
            return Reply(fields: [:])

        case "guest.window":
            // The frames a window's gfns map in a view of the caller's own
            // domain (a guest maps them from the memory file it holds).
            let view = ViewID(try a.bounded("view", as: UInt16.self))
            let first = GFN(try a.uint("first_gfn"))
            let pages = Int(try a.bounded("pages", as: UInt32.self))
            guard pages >= 1, pages <= 4096 else { throw .usage("pages must be 1...4096, not \(pages)") }
            var mfns: [JSONValue] = []
            for offset in 0..<pages {
                let gfn = first.advanced(by: offset)
                let entry = try xen { () throws(XenErrno) in try engine.translate(id, view: view, gfn: gfn) }
                guard let entry, !entry.mfn.isInvalid else {
                    throw .xen(.invalid, "guest.window: gfn \(gfn) has no frame in view \(view.rawValue) of \(id)")
                }
                mfns.append(entry.mfn.json)
            }
            // Remembered for when the process goes (the grant module tells
            // the channel's peer then).
            if let connection, connection.attachedDomain == id {
                connection.mappedWindows.append(GuestWindowMapping(view: view, firstGFN: first, pageCount: pages))
            }
            return Reply(fields: ["mfns": .array(mfns)])

        case "guest.descriptor-names", "guest.descriptor":
            // Only a guest's own descriptors, and only to that guest.
            guard case .guest(let own, _) = caller, own == id else {
                throw .refused("\(op) is asked by a guest (with its token) for its own domain")
            }
            if op == "guest.descriptor-names" {
                return Reply(fields: ["names": .array(channelHost.descriptorNames(for: own).map { .string($0) })])
            }
            let name = try a.string("name")
            let bytes = try xen { () throws(XenErrno) in try channelHost.readDescriptor(for: own, name: name, as: own) }
            return Reply(fields: ["name": .string(name), "envelope": .string(SimGuestPlatform.hex(bytes))])

        case "host.drop":
            try Self.requireControlDomain(caller, "sim host drop")
            let gfn = GFN(try a.uint("gfn"))
            try xen { () throws(XenErrno) in try engine.dropPage(id, gfn: gfn) }
            return Reply(fields: ["gfn": gfn.json])

        case "host.populate":
            try Self.requireControlDomain(caller, "sim host populate")
            let gfn = GFN(try a.uint("gfn"))
            let mfn = try xen { () throws(XenErrno) in try engine.populate(id, gfn: gfn) }
            return Reply(fields: ["gfn": gfn.json, "mfn": mfn.json])

        case "sim.view-entry":
            let gfn = GFN(try a.uint("gfn"))
            let table: P2MTable
            if a.optionalString("table") == "host" {
                table = .host
            } else {
                table = .view(ViewID(try a.bounded("view", as: UInt16.self)))
            }
            let found = try xen { () throws(XenErrno) in try engine.entry(id, table, gfn: gfn) }
            var fields: [String: JSONValue] = ["table": .string(table.description), "gfn": gfn.json,
                                               "present": .bool(found != nil)]
            if let entry = found {
                fields["mfn"] = entry.mfn.json
                fields["type"] = .string(entry.type.description)
                fields["access"] = .string(entry.access.description)
                fields["suppress_ve"] = .bool(entry.suppressVE)
                // The frame's M2P entry: a change_gfn revert clears it (docs/SIMULATOR.md).
                fields["m2p"] = engine.m2pEntry(of: entry.mfn).map(\.json) ?? "invalid"
            }
            if case .view(let view) = table, let info = try? engine.viewInfo(id, view: view) {
                fields["view_active"] = .bool(info.isActive)
                fields["view_visible"] = .bool(info.isVisible)
                fields["view_active_vcpus"] = .int(Int64(info.activeVCPUs))
                fields["view_default_access"] = .string(info.defaultAccess.description)
                fields["view_access_required"] = .bool(info.accessRequired)
                fields["remapped_range"] = info.remappedRange.map { .array([$0.lowerBound.json, $0.upperBound.json]) } ?? .null
            }
            return Reply(fields: fields)

        default:
            throw .usage("unknown operation '\(op)'; see docs/SIMULATOR-DAEMON.md")
        }
    }

    // MARK: JSON

    static func outcomeJSON(_ outcome: GuestAccessOutcome) -> [String: JSONValue] {
        func view(_ v: ViewID?) -> JSONValue { v.map { .int(Int64($0.rawValue)) } ?? .null }
        switch outcome {
        case .ok(let mfn, let v):
            return ["outcome": "ok", "mfn": mfn.json, "view": view(v)]
        case .lazyCopyThenOK(let mfn, let v):
            return ["outcome": "lazy_copy_then_ok", "mfn": mfn.json, "view": view(v)]
        case .relaxed(let mfn, let v, let from, let to):
            return ["outcome": "relaxed", "mfn": mfn.json, "view": view(v), "from": .string(from.description),
                    "to": .string(to.description)]
        case .virtualizationException(let info):
            return ["outcome": "ve", "vector": .int(Int64(VEInfo.vector)), "ve": .object(veInfoJSON(info)),
                    "view": .int(Int64(info.eptpIndex))]
        case .vmEvent(let request, let completedAt):
            var fields: [String: JSONValue] = ["outcome": "vm_event", "vm_event": vmEventJSON(request),
                                               "paused": .bool(request.isSynchronous)]
            if let completedAt { fields["mfn"] = completedAt.json }
            return fields
        case .emulated(let mfn, let v):
            return ["outcome": "emulated", "mfn": mfn.json, "view": view(v)]
        case .writeDiscarded(let mfn, let v):
            return ["outcome": "write_discarded", "mfn": mfn.json, "view": view(v)]
        case .faultSwallowed(let v):
            return ["outcome": "fault_swallowed", "view": view(v)]
        case .noMapping:
            return ["outcome": "no_mapping"]
        case .domainCrashed:
            return ["outcome": "domain_crashed"]
        case .vcpuPaused:
            return ["outcome": "vcpu_paused"]
        }
    }

    static func veInfoJSON(_ info: VEInfo) -> [String: JSONValue] {
        ["exit_reason": .int(Int64(info.exitReason)), "semaphore": .uint(UInt64(info.semaphore)),
         "exit_qualification": .string("0x" + String(info.exitQualification.rawValue, radix: 16)),
         "gla": .string("0x" + String(info.guestLinearAddress, radix: 16)),
         "gpa": .string("0x" + String(info.guestPhysicalAddress, radix: 16)),
         "eptp_index": .int(Int64(info.eptpIndex))]
    }

    static func vmEventJSON(_ request: VMEventRequest) -> JSONValue {
        var flagNames: [JSONValue] = []
        if request.flags.contains(.vcpuPaused) { flagNames.append("vcpu_paused") }
        if request.flags.contains(.toggleSinglestep) { flagNames.append("toggle_singlestep") }
        if request.flags.contains(.alternateP2M) { flagNames.append("alternate_p2m") }
        if request.flags.contains(.fastSinglestep) { flagNames.append("fast_singlestep") }
        var fields: [String: JSONValue] = [
            "version": .int(Int64(request.version)), "flags": .int(Int64(request.flags.rawValue)),
            "flag_names": .array(flagNames), "reason": .string(request.reason.description),
            "reason_code": .int(Int64(request.reason.rawValue)), "vcpu": .int(Int64(request.vcpu.rawValue)),
            "altp2m_idx": .int(Int64(request.altp2mIndex.rawValue)),
        ]
        if let access = request.memAccess {
            var names: [JSONValue] = []
            if access.flags.contains(.read) { names.append("r") }
            if access.flags.contains(.write) { names.append("w") }
            if access.flags.contains(.execute) { names.append("x") }
            fields["mem_access"] = [
                "gfn": access.gfn.json, "offset": .string("0x" + String(access.offset, radix: 16)),
                "gla": .string("0x" + String(access.gla, radix: 16)), "flags": .int(Int64(access.flags.rawValue)),
                "access": .array(names),
            ]
        }
        return .object(fields)
    }
}
