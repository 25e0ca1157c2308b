import Altp2m

/// The `altp2m.*` operations: each is one `HVMOP_altp2m` hypercall through
/// the engine's dispatch, made by the caller (dom0 or the guest itself), so
/// the permission matrix and every check apply exactly as in Xen.
extension SimDaemon {
    func altp2mOperation(_ name: String, _ a: RequestArguments, caller: Caller) throws(RequestError) -> Reply {
        let id = try resolveDomain(a, caller: caller)
        var buffers = HypercallBuffers()
        var op: HVMAltp2mOp
        switch name {
        case "get-state":
            op = .getDomainState(id)
        case "set-state":
            op = .setDomainState(id, state: try a.bounded("state", as: UInt8.self))
        case "create-view":
            let access: UInt16 = a.fields["default_access"] == nil
                ? host.xen.accessDefaultABIValue : try accessABI(a, "default_access")
            op = .createP2M(id, defaultAccess: access)
        case "destroy-view":
            op = .destroyP2M(id, view: try a.bounded("view", as: UInt16.self))
        case "switch-view":
            op = .switchP2M(id, view: try a.bounded("view", as: UInt16.self))
        case "set-access":
            op = .setMemAccess(id, view: try a.bounded("view", as: UInt16.self), gfn: try a.uint("gfn"),
                               access: try accessABI(a, "access"))
        case "set-access-multi":
            guard let entries = a.fields["entries"]?.array, !entries.isEmpty else {
                throw .usage("missing argument 'entries' (a list of {gfn, access})")
            }
            var gfns: [UInt64] = []
            var accesses: [UInt8] = []
            for entry in entries {
                let pair = RequestArguments(fields: entry.object ?? [:])
                gfns.append(try pair.uint("gfn"))
                accesses.append(UInt8(truncatingIfNeeded: try accessABI(pair, "access")))
            }
            let pfnList = buffers.add(words: gfns)
            let accessList = buffers.add(accesses)
            op = .setMemAccessMulti(id, view: try a.bounded("view", as: UInt16.self), count: UInt32(entries.count),
                                    pfnList: pfnList, accessList: accessList)
        case "get-access":
            op = .getMemAccess(id, view: try a.bounded("view", as: UInt16.self), gfn: try a.uint("gfn"))
        case "change-gfn":
            op = .changeGFN(id, view: try a.bounded("view", as: UInt16.self), oldGFN: try a.uint("old_gfn"),
                            newGFN: try a.uint("new_gfn"))
        case "set-suppress-ve":
            op = .setSuppressVE(id, view: try a.bounded("view", as: UInt16.self), gfn: try a.uint("gfn"),
                                suppress: try a.bool("suppress_ve") ? 1 : 0)
        case "set-suppress-ve-multi":
            op = .setSuppressVEMulti(id, view: try a.bounded("view", as: UInt16.self),
                                     suppress: try a.bool("suppress_ve") ? 1 : 0,
                                     firstGFN: try a.uint("first_gfn"), lastGFN: try a.uint("last_gfn"))
        case "get-suppress-ve":
            op = .getSuppressVE(id, view: try a.bounded("view", as: UInt16.self), gfn: try a.uint("gfn"))
        case "set-visibility":
            op = .setVisibility(id, view: try a.bounded("view", as: UInt16.self), visible: try a.bool("visible") ? 1 : 0)
        case "vcpu-view":
            op = .getP2MIndex(id, vcpu: try a.bounded("vcpu", as: UInt32.self))
        case "enable-notify":
            op = .vcpuEnableNotify(id, vcpu: try a.bounded("vcpu", as: UInt32.self), gfn: try a.uint("gfn"))
        case "disable-notify":
            op = .vcpuDisableNotify(id, vcpu: try a.bounded("vcpu", as: UInt32.self))
        case "raw":
            let domainField = try a.optionalUInt("domid_field").map { UInt16(truncatingIfNeeded: $0) } ?? id.rawValue
            op = HVMAltp2mOp(command: try a.bounded("cmd", as: UInt32.self), domain: DomainID(rawValue: domainField),
                             version: try a.bounded("version", as: UInt32.self),
                             pad1: try a.bounded("pad1", as: UInt16.self), pad2: try a.bounded("pad2", as: UInt32.self))
            let hex = a.optionalString("payload") ?? ""
            var bytes: [UInt8] = []
            var index = hex.startIndex
            while index < hex.endIndex, bytes.count < 64 {
                let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) ?? hex.endIndex
                guard let byte = UInt8(hex[index..<next], radix: 16) else { throw .usage("payload must be hex bytes") }
                bytes.append(byte)
                index = next
            }
            for (offset, byte) in bytes.enumerated() { op.payload[offset] = byte }
        default:
            throw .usage("unknown operation 'altp2m.\(name)'; see chanctl altp2m --help")
        }

        do {
            try engine.hvmAltp2mOp(&op, caller: caller, buffers: buffers)
        } catch {
            throw .xen(error, "altp2m \(name) on \(id): \(error.description)")
        }

        switch name {
        case "get-state":
            let on = op.stateOutput != 0
            return Reply(fields: ["state": on ? "on" : "off", "active": .bool(on)])
        case "create-view":
            return Reply(fields: ["view": .int(Int64(op.viewOutput))])
        case "get-access":
            return Reply(fields: ["access": accessName(op.accessOutput), "access_value": .int(Int64(op.accessOutput))])
        case "get-suppress-ve":
            return Reply(fields: ["suppress_ve": .bool(op.suppressVEOutput != 0)])
        case "set-suppress-ve-multi":
            let errno = XenErrno(code: op.firstErrorOutput)
            return Reply(fields: [
                "first_error": errno.map { .string($0.name) } ?? .null,
                "first_error_code": .int(Int64(op.firstErrorOutput)),
                "first_error_gfn": errno != nil ? GFN(op.firstErrorGFNOutput).json : .null,
                "first_gfn": GFN(op.firstGFNOutput).json,
            ])
        case "vcpu-view":
            return Reply(fields: ["view": .int(Int64(op.p2mIndexOutput))])
        case "raw":
            return Reply(fields: ["payload": .string(op.payload.map { byte in
                let h = String(byte, radix: 16)
                return byte < 16 ? "0" + h : h
            }.joined())])
        default:
            return Reply(fields: [:])
        }
    }
}
