import Altp2m
import Altp2mSim
import XenBackend

/// `chanctl altp2m ...` and `chanctl domain list|get-param|set-param` with
/// `--backend xen` or `xen-sim`: the same operations, with the same JSON,
/// through the Xen backend (`XenControl`) instead of the simulator daemon's
/// own requests. The simulator's
/// request names and arguments are the contract, so each command builds its
/// arguments once and either backend answers.
enum XenBridge {
    /// Performs `op` (an `altp2m.*` request) as dom0 on real Xen.
    static func call(_ op: String, _ arguments: [String: JSONValue], backend: BackendOptions,
                     _ options: GlobalOptions) throws(CommandFailure) -> JSONValue {
        guard op != "altp2m.raw" else {
            throw .usage("altp2m raw builds hypercall buffers by hand and exists only on the simulator (--backend sim)")
        }
        let control = try backend.openXenControl(options)
        if op == "domain.list" {
            do {
                return ["domains": .array(try control.listDomains().map { d in
                    let mode = (try? control.getAltp2mParam(d.id)).map { JSONValue.string($0.description) } ?? .null
                    let active = (try? control.getDomainState(d.id)).map { JSONValue.bool($0) } ?? .null
                    return ["domid": .int(Int64(d.id.rawValue)), "name": .string(d.name), "type": .string(d.kind.rawValue),
                            "vcpus": .int(Int64(d.vcpuCount)), "pages": .uint(d.pageCount),
                            "state": .string(d.isCrashed ? "crashed" : d.isPaused ? "paused" : "running"),
                            "altp2m": mode, "altp2m_active": active]
                })]
            } catch {
                throw .failure("cannot list Xen domains: \(error)")
            }
        }
        let domain = try resolveDomain(arguments["domain"]?.string ?? "", control)
        do {
            return try perform(op, domain, arguments, control)
        } catch let errno {
            throw CommandFailure(exitCode: 3, json: ["ok": false, "errno": .string(errno.name),
                                                     "code": .int(Int64(errno.code)),
                                                     "message": .string("\(op): \(errno)")],
                                 text: "\(op): \(errno)")
        }
    }

    private static func perform(_ op: String, _ d: DomainID, _ a: [String: JSONValue],
                                _ x: XenControl) throws(XenErrno) -> JSONValue {
        func view() -> ViewID { ViewID(UInt16(truncatingIfNeeded: a["view"]?.int64 ?? 0)) }
        func gfn(_ key: String = "gfn") -> GFN { GFN(a[key]?.uint64 ?? UInt64(bitPattern: a[key]?.int64 ?? -1)) }
        func vcpu() -> VCPUID { VCPUID(UInt32(truncatingIfNeeded: a["vcpu"]?.int64 ?? 0)) }
        // An access name in this release's numbering; a number is passed
        // to Xen as it is, so a bad one gets the hypervisor's own answer.
        func access(_ value: JSONValue?) throws(XenErrno) -> UInt16 {
            if let name = value?.string, let parsed = MemAccess(name) {
                guard let abi = parsed.abiValue(for: x.xenVersion) else { throw .invalid }
                return abi
            }
            if let raw = value?.int64, let number = UInt16(exactly: raw) { return number }
            throw .invalid
        }
        let xc = x.controlLibrary
        switch op {
        case "altp2m.get-state":
            let on = try x.getDomainState(d)
            return ["state": .string(on ? "on" : "off"), "active": .bool(on)]
        case "altp2m.set-state":
            try x.setDomainState(d, active: (a["state"]?.int64 ?? 0) != 0)
        case "altp2m.create-view":
            let defaultAccess = a["default_access"] == nil ? x.xenVersion.accessDefaultABIValue : try access(a["default_access"])
            return ["view": .int(Int64(try xc.altp2mCreateView(d, defaultAccess: defaultAccess)))]
        case "altp2m.destroy-view":
            try x.destroyView(d, view: view())
        case "altp2m.switch-view":
            try x.switchToView(d, view: view())
        case "altp2m.set-access":
            try xc.altp2mSetMemAccess(d, view: view().rawValue, gfn: gfn().rawValue, access: try access(a["access"]))
        case "altp2m.set-access-multi":
            var gfns: [UInt64] = []
            var accesses: [UInt8] = []
            for entry in a["entries"]?.array ?? [] {
                gfns.append(entry["gfn"]?.uint64 ?? 0)
                accesses.append(UInt8(truncatingIfNeeded: try access(entry["access"])))
            }
            try xc.altp2mSetMemAccessMulti(d, view: view().rawValue, accesses: accesses, gfns: gfns)
        case "altp2m.get-access":
            let value = try x.getMemAccess(d, view: view(), gfn: gfn())
            return ["access": .string(value.description),
                    "access_value": .int(Int64(value.abiValue(for: x.xenVersion) ?? UInt16(value.rawValue)))]
        case "altp2m.change-gfn":
            try x.changeGFN(d, view: view(), oldGFN: gfn("old_gfn"), newGFN: gfn("new_gfn"))
        case "altp2m.set-suppress-ve":
            try x.setSuppressVE(d, view: view(), gfn: gfn(), suppress: a["suppress_ve"]?.bool ?? true)
        case "altp2m.set-suppress-ve-multi":
            let result = try x.setSuppressVEMulti(d, view: view(), firstGFN: gfn("first_gfn"), lastGFN: gfn("last_gfn"),
                                                  suppress: a["suppress_ve"]?.bool ?? true)
            return ["first_error": result.firstError.map { .string($0.name) } ?? .null,
                    "first_error_code": .int(Int64(result.firstError?.code ?? 0)),
                    "first_error_gfn": result.firstErrorGFN.map { .string("0x" + String($0.rawValue, radix: 16)) } ?? .null]
        case "altp2m.get-suppress-ve":
            return ["suppress_ve": .bool(try x.getSuppressVE(d, view: view(), gfn: gfn()))]
        case "altp2m.set-visibility":
            try x.setVisibility(d, view: view(), visible: a["visible"]?.bool ?? true)
        case "altp2m.vcpu-view":
            return ["view": .int(Int64(try x.getVCPUView(d, vcpu: vcpu()).rawValue))]
        case "altp2m.enable-notify":
            try x.vcpuEnableNotify(d, vcpu: vcpu(), gfn: gfn())
        case "altp2m.disable-notify":
            try x.vcpuDisableNotify(d, vcpu: vcpu())
        case "domain.set-access-required":
            try x.setAccessRequired(d, a["required"]?.bool ?? true)
        case "domain.get-param":
            let mode = try x.getAltp2mParam(d)
            return ["altp2m": .string(mode.description), "value": .int(Int64(mode.rawValue))]
        case "domain.set-param":
            guard let raw = a["value"]?.uint64, let mode = Altp2mMode(rawValue: UInt32(truncatingIfNeeded: raw)), raw <= 3 else {
                throw .invalid
            }
            try x.setAltp2mParam(d, mode: mode)
        default:
            throw .notSupported
        }
        return .object([:])
    }

    /// A domain id (passed to Xen as it is, so an unknown one gets Xen's
    /// `ESRCH`), or a name looked up in Xen's domain list.
    private static func resolveDomain(_ text: String, _ x: XenControl) throws(CommandFailure) -> DomainID {
        let lower = text.lowercased()
        if let id = lower.hasPrefix("0x") ? UInt16(lower.dropFirst(2), radix: 16) : UInt16(lower) {
            return DomainID(rawValue: id)
        }
        let domains: [DomainInfo]
        do { domains = try x.listDomains() } catch { throw .failure("cannot list Xen domains: \(error)") }
        if let match = domains.first(where: { $0.name == text }) { return match.id }
        throw .failure("no domain named \(text); see xl list")
    }
}
