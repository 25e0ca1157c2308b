import Altp2m

/// Code that runs inside the daemon, next to the engine, and answers a
/// family of operations: the grant module (`chanctl sim serve` registers it;
/// `Altp2mSim` itself does not depend on `Altp2mGrant`).
///
/// Everything runs on the daemon's one thread. An extension changes the
/// simulator only through ``SimDaemon/journaledChannelHost``, which journals
/// each state-changing call, so a restarted daemon rebuilds what the
/// extension did by replaying those calls (see docs/SIMULATOR-DAEMON.md,
/// "Journal and recovery").
public protocol SimDaemonExtension: AnyObject {
    /// Whether the extension answers `op` (the daemon asks before its own
    /// operations are looked up only for ops it does not know).
    func handles(_ op: String) -> Bool

    /// Answers a request from the control domain; returns the response fields
    /// (`ok` is added).
    func handle(_ op: String, arguments: [String: JSONValue]) throws(SimDaemonExtensionError) -> [String: JSONValue]

    /// A domain crashed (`domain crash`, Xen's `domain_shutdown` with
    /// `SHUTDOWN_crash`); its vCPUs no longer run.
    func domainDied(_ domain: DomainID)

    /// `domain destroy` is about to destroy a domain.
    func domainWillBeDestroyed(_ domain: DomainID)

    /// A guest process of `domain` went away (it exited, was killed, or
    /// detached) and the domain keeps running; `windows` are the windows it
    /// had mapped. The default does nothing.
    func guestProcessExited(_ domain: DomainID, windows: [GuestWindowMapping])
}

extension SimDaemonExtension {
    public func guestProcessExited(_ domain: DomainID, windows: [GuestWindowMapping]) {}
}

/// A window a guest process mapped with `guest.window`.
public struct GuestWindowMapping: Sendable, Equatable {
    /// The view whose frames it maps.
    public let view: ViewID
    /// Its first gfn.
    public let firstGFN: GFN
    /// Its length in pages.
    public let pageCount: Int

    public init(view: ViewID, firstGFN: GFN, pageCount: Int) {
        self.view = view
        self.firstGFN = firstGFN
        self.pageCount = pageCount
    }
}

/// How an extension's request failed; the daemon answers as for its own
/// operations (`chanctl` exits 3, 2 and 1 respectively).
public enum SimDaemonExtensionError: Error {
    /// The hypervisor refused with an error number.
    case hypervisor(XenErrno, String)
    /// A malformed argument.
    case usage(String)
    /// Anything else; the message names the problem and the fix.
    case failure(String)

    var requestError: RequestError {
        switch self {
        case .hypervisor(let errno, let message): .xen(errno, message)
        case .usage(let message): .usage(message)
        case .failure(let message): .refused(message)
        }
    }
}

extension SimDaemon {
    /// Registers an extension (before ``run()``).
    public func register(_ extension: any SimDaemonExtension) {
        extensions.append(`extension`)
    }

    /// The ``ChannelHost`` an in-daemon grant module uses: the daemon's
    /// ``channelHost``, journaling every call that changes state.
    public var journaledChannelHost: JournaledChannelHost { JournaledChannelHost(daemon: self) }

    /// The state directory the daemon serves.
    public var stateDirectory: StateDirectory { directory }

    func extensionFor(_ op: String) -> (any SimDaemonExtension)? {
        extensions.first { $0.handles(op) }
    }

    func runExtension(_ ext: any SimDaemonExtension, _ op: String, _ a: RequestArguments,
                      caller: Caller) throws(RequestError) -> Reply {
        try Self.requireControlDomain(caller, op)
        do {
            return Reply(fields: try ext.handle(op, arguments: a.fields))
        } catch {
            throw error.requestError
        }
    }

    /// Replays one journaled ``JournaledChannelHost`` call.
    func replayHostCall(_ f: [String: JSONValue]) {
        JournaledChannelHost.apply(f, to: channelHost)
    }
}

/// ``ChannelHost`` over the daemon's ``EngineChannelHost`` that appends an
/// `internal.host` record to the journal for every call that changes state
/// (failed calls too: the engine is deterministic, so the replay fails the
/// same way). Reads and wakes are not journaled.
public final class JournaledChannelHost: ChannelHost {
    unowned let daemon: SimDaemon
    var inner: EngineChannelHost { daemon.channelHost }

    init(daemon: SimDaemon) { self.daemon = daemon }

    private func log(_ call: String, _ fields: [String: JSONValue]) {
        var record = fields
        record["op"] = "internal.host"
        record["call"] = .string(call)
        daemon.appendJournal(.object(record))
    }

    private func journaled<R>(_ call: String, _ fields: [String: JSONValue],
                              _ body: () throws(XenErrno) -> R) throws(XenErrno) -> R {
        defer { log(call, fields) }
        return try body()
    }

    private static func d(_ id: DomainID) -> JSONValue { .int(Int64(id.rawValue)) }
    private static func g(_ gfn: GFN) -> JSONValue { .uint(gfn.rawValue) }
    private static func v(_ view: ViewID) -> JSONValue { .int(Int64(view.rawValue)) }

    // MARK: Replay

    static func apply(_ f: [String: JSONValue], to host: EngineChannelHost) {
        func dom(_ key: String = "domain") -> DomainID { DomainID(rawValue: UInt16(truncatingIfNeeded: f[key]?.int64 ?? 0)) }
        func gfn(_ key: String = "gfn") -> GFN { GFN(f[key]?.uint64 ?? 0) }
        func view() -> ViewID { ViewID(UInt16(truncatingIfNeeded: f["view"]?.int64 ?? 0)) }
        func access() -> MemAccess { MemAccess(rawValue: UInt8(truncatingIfNeeded: f["access"]?.int64 ?? 0)) ?? .none }
        func int(_ key: String) -> Int { Int(f[key]?.int64 ?? 0) }
        func gfns(_ key: String) -> [GFN] { (f[key]?.array ?? []).map { GFN($0.uint64 ?? 0) } }
        func flag(_ key: String) -> Bool { f[key]?.bool ?? false }
        switch f["call"]?.string ?? "" {
        case "setAltp2mParam":
            if let mode = Altp2mMode(rawValue: UInt32(truncatingIfNeeded: f["mode"]?.int64 ?? 0)) {
                try? host.setAltp2mParam(dom(), mode: mode)
            }
        case "setDomainState": try? host.setDomainState(dom(), active: flag("active"))
        case "vcpuEnableNotify": try? host.vcpuEnableNotify(dom(), vcpu: VCPUID(UInt32(int("vcpu"))), gfn: gfn())
        case "vcpuDisableNotify": try? host.vcpuDisableNotify(dom(), vcpu: VCPUID(UInt32(int("vcpu"))))
        case "createView": _ = try? host.createView(dom(), defaultAccess: access())
        case "destroyView": try? host.destroyView(dom(), view: view())
        case "switchToView": try? host.switchToView(dom(), view: view())
        case "setMemAccess": try? host.setMemAccess(dom(), view: view(), gfn: gfn(), access: access())
        case "setMemAccessMulti":
            let entries = (f["entries"]?.array ?? []).map { entry in
                (gfn: GFN(entry.array?.first?.uint64 ?? 0),
                 access: MemAccess(rawValue: UInt8(truncatingIfNeeded: entry.array?.last?.int64 ?? 0)) ?? .none)
            }
            try? host.setMemAccessMulti(dom(), view: view(), entries: entries)
        case "changeGFN": try? host.changeGFN(dom(), view: view(), oldGFN: gfn("old"), newGFN: gfn("new"))
        case "setSuppressVE": try? host.setSuppressVE(dom(), view: view(), gfn: gfn(), suppress: flag("suppress"))
        case "setSuppressVEMulti":
            _ = try? host.setSuppressVEMulti(dom(), view: view(), firstGFN: gfn("first"), lastGFN: gfn("last"),
                                             suppress: flag("suppress"))
        case "setVisibility": try? host.setVisibility(dom(), view: view(), visible: flag("visible"))
        case "decreaseReservation": try? host.decreaseReservation(dom(), gfns: gfns("gfns"))
        case "setAccessRequired": try? host.setAccessRequired(dom(), flag("required"))
        case "pauseDomain": try? host.pauseDomain(dom())
        case "unpauseDomain": try? host.unpauseDomain(dom())
        case "obtainSharedFrames": _ = try? host.obtainSharedFrames(between: dom("first"), and: dom("second"), count: int("count"))
        case "releaseSharedFrames":
            let first = gfns("first_gfns"), second = gfns("second_gfns")
            if first.count == second.count {
                try? host.releaseSharedFrames(SharedFrames(first: dom("first"), second: dom("second"),
                                                           firstGFNs: first, secondGFNs: second))
            }
        case "reserveWindow": _ = try? host.reserveWindow(dom(), pageCount: int("pages"))
        case "releaseWindow": try? host.releaseWindow(dom(), firstGFN: gfn(), pageCount: int("pages"))
        case "reserveVEInfoPage": _ = try? host.reserveVEInfoPage(dom())
        case "releaseVEInfoPage": try? host.releaseVEInfoPage(dom(), gfn: gfn())
        case "publishDescriptor":
            if let bytes = SimGuestPlatform.bytes(hex: f["envelope"]?.string ?? "") {
                try? host.publishDescriptor(bytes, for: dom(), name: f["name"]?.string ?? "")
            }
        case "revokeDescriptor": try? host.revokeDescriptor(for: dom(), name: f["name"]?.string ?? "")
        case "allocateNotificationPort": _ = try? host.allocateNotificationPort(dom(), remote: dom("remote"))
        case "releaseNotificationPort":
            try? host.releaseNotificationPort(dom(), port: UInt32(truncatingIfNeeded: f["port"]?.int64 ?? 0))
        default: break
        }
    }

    // MARK: ChannelHost (state-changing calls are journaled)

    public var supportsVirtualizationExceptions: Bool { inner.supportsVirtualizationExceptions }
    public var xenVersion: XenVersion { inner.xenVersion }
    public func vcpuCount(_ domain: DomainID) throws(XenErrno) -> UInt32 { try inner.vcpuCount(domain) }
    public func activeViews(_ domain: DomainID) throws(XenErrno) -> [ActiveView] { try inner.activeViews(domain) }
    public func accessRequired(_ domain: DomainID) throws(XenErrno) -> Bool? { try inner.accessRequired(domain) }
    public func logDirtyMode(_ domain: DomainID) throws(XenErrno) -> Bool? { try inner.logDirtyMode(domain) }

    public func setAccessRequired(_ domain: DomainID, _ required: Bool) throws(XenErrno) {
        try journaled("setAccessRequired", ["domain": Self.d(domain), "required": .bool(required)]) { () throws(XenErrno) in
            try inner.setAccessRequired(domain, required)
        }
    }
    public func pauseDomain(_ domain: DomainID) throws(XenErrno) {
        try journaled("pauseDomain", ["domain": Self.d(domain)]) { () throws(XenErrno) in try inner.pauseDomain(domain) }
    }
    public func unpauseDomain(_ domain: DomainID) throws(XenErrno) {
        try journaled("unpauseDomain", ["domain": Self.d(domain)]) { () throws(XenErrno) in try inner.unpauseDomain(domain) }
    }
    public func obtainSharedFrames(between first: DomainID, and second: DomainID, count: Int) throws(XenErrno) -> SharedFrames {
        try journaled("obtainSharedFrames", ["first": Self.d(first), "second": Self.d(second), "count": .int(Int64(count))]) {
            () throws(XenErrno) in try inner.obtainSharedFrames(between: first, and: second, count: count)
        }
    }
    public func releaseEffect(on domain: DomainID, of frames: SharedFrames) -> FrameReleaseEffect {
        inner.releaseEffect(on: domain, of: frames)
    }
    public func releaseSharedFrames(_ frames: SharedFrames) throws(XenErrno) {
        try journaled("releaseSharedFrames", [
            "first": Self.d(frames.first), "second": Self.d(frames.second),
            "first_gfns": .array(frames.firstGFNs.map(Self.g)), "second_gfns": .array(frames.secondGFNs.map(Self.g)),
        ]) { () throws(XenErrno) in try inner.releaseSharedFrames(frames) }
    }
    /// Not journaled: guest memory is the memory file, which survives a restart.
    public func writeGuestMemory(_ domain: DomainID, gfn: GFN, offset: Int, bytes: [UInt8]) throws(XenErrno) {
        try inner.writeGuestMemory(domain, gfn: gfn, offset: offset, bytes: bytes)
    }
    public func reserveWindow(_ domain: DomainID, pageCount: Int) throws(XenErrno) -> GFN {
        try journaled("reserveWindow", ["domain": Self.d(domain), "pages": .int(Int64(pageCount))]) {
            () throws(XenErrno) in try inner.reserveWindow(domain, pageCount: pageCount)
        }
    }
    public func releaseWindow(_ domain: DomainID, firstGFN: GFN, pageCount: Int) throws(XenErrno) {
        try journaled("releaseWindow", ["domain": Self.d(domain), "gfn": Self.g(firstGFN), "pages": .int(Int64(pageCount))]) {
            () throws(XenErrno) in try inner.releaseWindow(domain, firstGFN: firstGFN, pageCount: pageCount)
        }
    }
    public func reserveVEInfoPage(_ domain: DomainID) throws(XenErrno) -> GFN {
        try journaled("reserveVEInfoPage", ["domain": Self.d(domain)]) { () throws(XenErrno) in try inner.reserveVEInfoPage(domain) }
    }
    public func releaseVEInfoPage(_ domain: DomainID, gfn: GFN) throws(XenErrno) {
        try journaled("releaseVEInfoPage", ["domain": Self.d(domain), "gfn": Self.g(gfn)]) {
            () throws(XenErrno) in try inner.releaseVEInfoPage(domain, gfn: gfn)
        }
    }
    public func publishDescriptor(_ envelope: [UInt8], for domain: DomainID, name: String) throws(XenErrno) {
        try journaled("publishDescriptor", ["domain": Self.d(domain), "name": .string(name),
                                            "envelope": .string(SimGuestPlatform.hex(envelope))]) {
            () throws(XenErrno) in try inner.publishDescriptor(envelope, for: domain, name: name)
        }
    }
    public func revokeDescriptor(for domain: DomainID, name: String) throws(XenErrno) {
        try journaled("revokeDescriptor", ["domain": Self.d(domain), "name": .string(name)]) {
            () throws(XenErrno) in try inner.revokeDescriptor(for: domain, name: name)
        }
    }
    public func allocateNotificationPort(_ domain: DomainID, remote: DomainID) throws(XenErrno) -> UInt32 {
        try journaled("allocateNotificationPort", ["domain": Self.d(domain), "remote": Self.d(remote)]) {
            () throws(XenErrno) in try inner.allocateNotificationPort(domain, remote: remote)
        }
    }
    public func releaseNotificationPort(_ domain: DomainID, port: UInt32) throws(XenErrno) {
        try journaled("releaseNotificationPort", ["domain": Self.d(domain), "port": .int(Int64(port))]) {
            () throws(XenErrno) in try inner.releaseNotificationPort(domain, port: port)
        }
    }
    public func wake(_ domain: DomainID, gfn: GFN, offset: Int, port: UInt32) {
        inner.wake(domain, gfn: gfn, offset: offset, port: port)
    }

    // MARK: HypervisorControl

    public func listDomains() throws(XenErrno) -> [DomainInfo] { try inner.listDomains() }
    public func getAltp2mParam(_ domain: DomainID) throws(XenErrno) -> Altp2mMode { try inner.getAltp2mParam(domain) }
    public func setAltp2mParam(_ domain: DomainID, mode: Altp2mMode) throws(XenErrno) {
        try journaled("setAltp2mParam", ["domain": Self.d(domain), "mode": .int(Int64(mode.rawValue))]) {
            () throws(XenErrno) in try inner.setAltp2mParam(domain, mode: mode)
        }
    }
    public func getDomainState(_ domain: DomainID) throws(XenErrno) -> Bool { try inner.getDomainState(domain) }
    public func setDomainState(_ domain: DomainID, active: Bool) throws(XenErrno) {
        try journaled("setDomainState", ["domain": Self.d(domain), "active": .bool(active)]) {
            () throws(XenErrno) in try inner.setDomainState(domain, active: active)
        }
    }
    public func vcpuEnableNotify(_ domain: DomainID, vcpu: VCPUID, gfn: GFN) throws(XenErrno) {
        try journaled("vcpuEnableNotify", ["domain": Self.d(domain), "vcpu": .int(Int64(vcpu.rawValue)), "gfn": Self.g(gfn)]) {
            () throws(XenErrno) in try inner.vcpuEnableNotify(domain, vcpu: vcpu, gfn: gfn)
        }
    }
    public func vcpuDisableNotify(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) {
        try journaled("vcpuDisableNotify", ["domain": Self.d(domain), "vcpu": .int(Int64(vcpu.rawValue))]) {
            () throws(XenErrno) in try inner.vcpuDisableNotify(domain, vcpu: vcpu)
        }
    }
    public func createView(_ domain: DomainID, defaultAccess: MemAccess) throws(XenErrno) -> ViewID {
        try journaled("createView", ["domain": Self.d(domain), "access": .int(Int64(defaultAccess.rawValue))]) {
            () throws(XenErrno) in try inner.createView(domain, defaultAccess: defaultAccess)
        }
    }
    public func destroyView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        try journaled("destroyView", ["domain": Self.d(domain), "view": Self.v(view)]) {
            () throws(XenErrno) in try inner.destroyView(domain, view: view)
        }
    }
    public func switchToView(_ domain: DomainID, view: ViewID) throws(XenErrno) {
        try journaled("switchToView", ["domain": Self.d(domain), "view": Self.v(view)]) {
            () throws(XenErrno) in try inner.switchToView(domain, view: view)
        }
    }
    public func setMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN, access: MemAccess) throws(XenErrno) {
        try journaled("setMemAccess", ["domain": Self.d(domain), "view": Self.v(view), "gfn": Self.g(gfn),
                                       "access": .int(Int64(access.rawValue))]) {
            () throws(XenErrno) in try inner.setMemAccess(domain, view: view, gfn: gfn, access: access)
        }
    }
    public func setMemAccessMulti(_ domain: DomainID, view: ViewID,
                                  entries: [(gfn: GFN, access: MemAccess)]) throws(XenErrno) {
        let list: [JSONValue] = entries.map { .array([Self.g($0.gfn), .int(Int64($0.access.rawValue))]) }
        try journaled("setMemAccessMulti", ["domain": Self.d(domain), "view": Self.v(view), "entries": .array(list)]) {
            () throws(XenErrno) in try inner.setMemAccessMulti(domain, view: view, entries: entries)
        }
    }
    public func getMemAccess(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> MemAccess {
        try inner.getMemAccess(domain, view: view, gfn: gfn)
    }
    public func changeGFN(_ domain: DomainID, view: ViewID, oldGFN: GFN, newGFN: GFN) throws(XenErrno) {
        try journaled("changeGFN", ["domain": Self.d(domain), "view": Self.v(view), "old": Self.g(oldGFN), "new": Self.g(newGFN)]) {
            () throws(XenErrno) in try inner.changeGFN(domain, view: view, oldGFN: oldGFN, newGFN: newGFN)
        }
    }
    public func setSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN, suppress: Bool) throws(XenErrno) {
        try journaled("setSuppressVE", ["domain": Self.d(domain), "view": Self.v(view), "gfn": Self.g(gfn),
                                        "suppress": .bool(suppress)]) {
            () throws(XenErrno) in try inner.setSuppressVE(domain, view: view, gfn: gfn, suppress: suppress)
        }
    }
    public func setSuppressVEMulti(_ domain: DomainID, view: ViewID, firstGFN: GFN, lastGFN: GFN,
                                   suppress: Bool) throws(XenErrno) -> SuppressVEMultiResult {
        try journaled("setSuppressVEMulti", ["domain": Self.d(domain), "view": Self.v(view), "first": Self.g(firstGFN),
                                             "last": Self.g(lastGFN), "suppress": .bool(suppress)]) {
            () throws(XenErrno) in
            try inner.setSuppressVEMulti(domain, view: view, firstGFN: firstGFN, lastGFN: lastGFN, suppress: suppress)
        }
    }
    public func getSuppressVE(_ domain: DomainID, view: ViewID, gfn: GFN) throws(XenErrno) -> Bool {
        try inner.getSuppressVE(domain, view: view, gfn: gfn)
    }
    public func getVCPUView(_ domain: DomainID, vcpu: VCPUID) throws(XenErrno) -> ViewID {
        try inner.getVCPUView(domain, vcpu: vcpu)
    }
    public func setVisibility(_ domain: DomainID, view: ViewID, visible: Bool) throws(XenErrno) {
        try journaled("setVisibility", ["domain": Self.d(domain), "view": Self.v(view), "visible": .bool(visible)]) {
            () throws(XenErrno) in try inner.setVisibility(domain, view: view, visible: visible)
        }
    }
    public func decreaseReservation(_ domain: DomainID, gfns: [GFN]) throws(XenErrno) {
        try journaled("decreaseReservation", ["domain": Self.d(domain), "gfns": .array(gfns.map(Self.g))]) {
            () throws(XenErrno) in try inner.decreaseReservation(domain, gfns: gfns)
        }
    }
}
