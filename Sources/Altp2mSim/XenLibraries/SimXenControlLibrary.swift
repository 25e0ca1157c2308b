import Altp2m
import XenInterface

/// ``XenControlLibrary`` on the simulator: each libxenctrl call is one
/// request to the daemon, which runs the same hypercall on the engine as
/// dom0 (the engine's permission checks, error numbers and journal apply).
///
/// `xc_hvm_param_get/set` reach only `HVM_PARAM_ALTP2M`, the one parameter
/// the simulator models; another index fails with `EINVAL`.
public final class SimXenControlLibrary: XenControlLibrary {
    let client: SimClient

    /// `xc_interface_open` as dom0 of the simulator at `stateDirectory`.
    public init(stateDirectory: StateDirectory = .resolve()) throws(SimClientError) {
        client = try SimClient(stateDirectory: stateDirectory)
    }

    deinit { client.close() }

    private static let hvmParamAltp2m: UInt32 = 35

    @discardableResult
    private func call(_ op: String, _ domain: DomainID? = nil,
                      _ arguments: [String: JSONValue] = [:]) throws(XenErrno) -> JSONValue {
        var all = arguments
        if let domain { all["domain"] = .int(Int64(domain.rawValue)) }
        return try asErrno { () throws(SimClientError) in try client.call(op, all) }
    }

    private func number<T: FixedWidthInteger>(_ value: JSONValue?, as: T.Type) throws(XenErrno) -> T {
        guard let raw = value?.int64, let result = T(exactly: raw) else { throw XenErrno(rawValue: 5) }
        return result
    }

    public func version() throws(XenErrno) -> (major: Int, minor: Int) {
        let text = try call("sim.status")["xen"]?.string ?? ""
        let parts = text.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 2 else { throw XenErrno(rawValue: 5) }
        return (parts[0], parts[1])
    }

    public func domainGetInfoList(first: DomainID, maximum: Int) throws(XenErrno) -> [XenDomainRecord] {
        guard maximum > 0 else { throw .invalid }
        let domains = try call("domain.list")["domains"]?.array ?? []
        var records: [XenDomainRecord] = []
        for entry in domains {
            let id = DomainID(rawValue: try number(entry["domid"], as: UInt16.self))
            guard id >= first else { continue }
            let state = entry["state"]?.string ?? "running"
            let pages = UInt64(try number(entry["pages"], as: Int64.self))
            let maximumPages = try entry["max_pages"].map { (value) throws(XenErrno) in
                UInt64(try number(value, as: Int64.self))
            } ?? pages
            records.append(XenDomainRecord(domain: id, isHVM: entry["type"]?.string != "pv",
                                           isPaused: state == "paused", isCrashed: state == "crashed",
                                           totalPages: pages, maximumPages: maximumPages,
                                           vcpuCount: try number(entry["vcpus"], as: UInt32.self)))
        }
        return Array(records.sorted { $0.domain < $1.domain }.prefix(maximum))
    }

    public func hvmParamGet(_ domain: DomainID, index: UInt32) throws(XenErrno) -> UInt64 {
        guard index == Self.hvmParamAltp2m else { throw .invalid }
        guard let value = try call("domain.get-param", domain)["value"]?.uint64 else { throw XenErrno(rawValue: 5) }
        return value
    }

    public func hvmParamSet(_ domain: DomainID, index: UInt32, value: UInt64) throws(XenErrno) {
        guard index == Self.hvmParamAltp2m else { throw .invalid }
        try call("domain.set-param", domain, ["value": .uint(value)])
    }

    public func altp2mGetDomainState(_ domain: DomainID) throws(XenErrno) -> Bool {
        try call("altp2m.get-state", domain)["active"]?.bool ?? false
    }

    public func altp2mSetDomainState(_ domain: DomainID, active: Bool) throws(XenErrno) {
        try call("altp2m.set-state", domain, ["state": .int(active ? 1 : 0)])
    }

    public func altp2mSetVCPUEnableNotify(_ domain: DomainID, vcpu: UInt32, gfn: UInt64) throws(XenErrno) {
        try call("altp2m.enable-notify", domain, ["vcpu": .int(Int64(vcpu)), "gfn": .uint(gfn)])
    }

    public func altp2mSetVCPUDisableNotify(_ domain: DomainID, vcpu: UInt32) throws(XenErrno) {
        try call("altp2m.disable-notify", domain, ["vcpu": .int(Int64(vcpu))])
    }

    public func altp2mCreateView(_ domain: DomainID, defaultAccess: UInt16) throws(XenErrno) -> UInt16 {
        try number(try call("altp2m.create-view", domain, ["default_access": .int(Int64(defaultAccess))])["view"],
                   as: UInt16.self)
    }

    public func altp2mDestroyView(_ domain: DomainID, view: UInt16) throws(XenErrno) {
        try call("altp2m.destroy-view", domain, ["view": .int(Int64(view))])
    }

    public func altp2mSwitchToView(_ domain: DomainID, view: UInt16) throws(XenErrno) {
        try call("altp2m.switch-view", domain, ["view": .int(Int64(view))])
    }

    public func altp2mSetMemAccess(_ domain: DomainID, view: UInt16, gfn: UInt64, access: UInt16) throws(XenErrno) {
        try call("altp2m.set-access", domain, ["view": .int(Int64(view)), "gfn": .uint(gfn), "access": .int(Int64(access))])
    }

    public func altp2mSetMemAccessMulti(_ domain: DomainID, view: UInt16, accesses: [UInt8],
                                        gfns: [UInt64]) throws(XenErrno) {
        guard accesses.count == gfns.count else { throw .invalid }
        let entries: [JSONValue] = zip(gfns, accesses).map { ["gfn": .uint($0.0), "access": .int(Int64($0.1))] }
        try call("altp2m.set-access-multi", domain, ["view": .int(Int64(view)), "entries": .array(entries)])
    }

    public func altp2mGetMemAccess(_ domain: DomainID, view: UInt16, gfn: UInt64) throws(XenErrno) -> UInt16 {
        try number(try call("altp2m.get-access", domain, ["view": .int(Int64(view)), "gfn": .uint(gfn)])["access_value"],
                   as: UInt16.self)
    }

    public func altp2mChangeGFN(_ domain: DomainID, view: UInt16, oldGFN: UInt64, newGFN: UInt64) throws(XenErrno) {
        try call("altp2m.change-gfn", domain, ["view": .int(Int64(view)), "old_gfn": .uint(oldGFN), "new_gfn": .uint(newGFN)])
    }

    public func altp2mSetSuppressVE(_ domain: DomainID, view: UInt16, gfn: UInt64, suppress: Bool) throws(XenErrno) {
        try call("altp2m.set-suppress-ve", domain, ["view": .int(Int64(view)), "gfn": .uint(gfn),
                                                    "suppress_ve": .bool(suppress)])
    }

    public func altp2mSetSuppressVEMulti(_ domain: DomainID, view: UInt16, firstGFN: UInt64, lastGFN: UInt64,
                                         suppress: Bool) throws(XenErrno) -> (errorGFN: UInt64, errorCode: Int32) {
        let reply = try call("altp2m.set-suppress-ve-multi", domain,
                             ["view": .int(Int64(view)), "first_gfn": .uint(firstGFN), "last_gfn": .uint(lastGFN),
                              "suppress_ve": .bool(suppress)])
        let code = try number(reply["first_error_code"], as: Int32.self)
        guard code != 0 else { return (0, 0) }
        return (Self.gfn(reply["first_error_gfn"]) ?? 0, code)
    }

    public func altp2mGetSuppressVE(_ domain: DomainID, view: UInt16, gfn: UInt64) throws(XenErrno) -> Bool {
        try call("altp2m.get-suppress-ve", domain, ["view": .int(Int64(view)), "gfn": .uint(gfn)])["suppress_ve"]?.bool
            ?? false
    }

    public func altp2mGetVCPUP2MIndex(_ domain: DomainID, vcpu: UInt32) throws(XenErrno) -> UInt16 {
        try number(try call("altp2m.vcpu-view", domain, ["vcpu": .int(Int64(vcpu))])["view"], as: UInt16.self)
    }

    public func altp2mSetVisibility(_ domain: DomainID, view: UInt16, visible: Bool) throws(XenErrno) {
        try call("altp2m.set-visibility", domain, ["view": .int(Int64(view)), "visible": .bool(visible)])
    }

    public func domainSetAccessRequired(_ domain: DomainID, required: Bool) throws(XenErrno) {
        try call("domain.set-access-required", domain, ["required": .bool(required)])
    }

    public func domainPause(_ domain: DomainID) throws(XenErrno) {
        try call("domain.pause", domain)
    }

    public func domainUnpause(_ domain: DomainID) throws(XenErrno) {
        try call("domain.unpause", domain)
    }

    public func domainSetMaxMem(_ domain: DomainID, kibibytes: UInt64) throws(XenErrno) {
        try call("domain.set-max-mem", domain, ["max_kb": .uint(kibibytes)])
    }

    public func domainPopulatePhysmapExact(_ domain: DomainID, gfns: [UInt64]) throws(XenErrno) {
        guard !gfns.isEmpty else { return }
        try call("memory.populate", domain, ["gfns": .array(gfns.map { .uint($0) })])
    }

    public func domainDecreaseReservationExact(_ domain: DomainID, gfns: [UInt64]) throws(XenErrno) {
        guard !gfns.isEmpty else { return }
        try call("memory.decrease", domain, ["gfns": .array(gfns.map { .uint($0) })])
    }

    /// A gfn the daemon printed (`"0x1f"`) or sent as a number.
    static func gfn(_ value: JSONValue?) -> UInt64? {
        if let number = value?.uint64 { return number }
        guard let text = value?.string else { return nil }
        return text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }
}
