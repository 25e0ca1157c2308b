import Altp2m
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Request dispatch: who is calling, which operation, the journal record.
extension SimDaemon {
    /// Operations that change nothing, so they are not journaled.
    static let readOnlyOperations: Set<String> = [
        "hello", "sim.status", "sim.stop", "domain.list", "domain.get-param", "altp2m.get-state",
        "altp2m.get-access", "altp2m.get-suppress-ve", "altp2m.vcpu-view", "guest.ve-info",
        "sim.view-entry", "guest.attach", "guest.detach", "guest.sync",
        "guest.window", "guest.descriptor-names", "guest.descriptor", "evtchn.list",
        "gnttab.list", "domain.memory-map", "foreign.map",
    ]

    /// Answers one request from a connection.
    func handle(_ request: JSONValue, from connection: Connection) -> Reply {
        guard case .object(var fields) = request, let op = fields["op"]?.string else {
            return Reply(error: .refused("a request is a JSON object with an \"op\" field"))
        }
        let caller: Caller
        if let token = fields["token"]?.string {
            guard let domain = domains.values.first(where: { $0.token == token }) else {
                return Reply(error: .refused("unknown domain token: the domain was destroyed or the simulator restarted from scratch; see chanctl domain list"))
            }
            caller = fields["guest_user"]?.bool == true ? .guestUser(domain.id) : .guestKernel(domain.id)
        } else {
            caller = .controlDomain
        }
        fields["token"] = nil
        fields["guest_user"] = nil

        syncGuestViews()
        var record = fields
        record["caller"] = Self.encode(caller)
        var touched: [GFN] = []
        let reply: Reply
        requestPeer = RequestPeer(connection)
        defer { requestPeer = nil }
        let started = Self.now()
        var failure: RequestError?
        do {
            reply = try execute(op, RequestArguments(fields: fields), caller: caller, connection: connection,
                                record: &record, touched: &touched)
        } catch {
            failure = error
            reply = Reply(error: error)
        }
        logRequest(op, caller: caller, seconds: Self.now() - started, failure: failure)
        if !Self.readOnlyOperations.contains(op) && record["op"] != nil {
            appendJournal(.object(record))
        }
        publishAll(touched: touched)
        return reply
    }

    /// One line per request: changes at debug, reads at trace (a guest's
    /// polling would drown everything else), refusals with their reason.
    private func logRequest(_ op: String, caller: Caller, seconds: Double, failure: RequestError?) {
        let level: Logger.Level = Self.readOnlyOperations.contains(op) ? .trace : .debug
        guard log.logLevel <= level else { return }
        let outcome: String
        switch failure {
        case nil: outcome = "ok"
        case .xen(let errno, let message)?: outcome = "\(errno.name): \(message)"
        case .refused(let message)?, .usage(let message)?: outcome = "refused: \(message)"
        }
        log.log(level: level, "\(op) from \(caller) in \(Int(seconds * 1_000_000)) us: \(outcome)")
    }

    /// Appends a record; a failure is logged (the answer still goes out:
    /// the engine already changed, and the client should know it did).
    func appendJournal(_ record: JSONValue) {
        guard !replaying else { return }
        do {
            try journal.append(record)
            journalRecords += 1
        } catch {
            log.error("journal: \(error); this change may not survive a restart")
        }
    }

    /// Brings every domain's shared files in step with the engine.
    func publishAll(touched: [GFN] = []) {
        for domain in domains.values {
            domain.refresh(from: engine, gfns: touched)
            domain.publishViews(from: engine)
        }
    }

    // MARK: Callers

    static func encode(_ caller: Caller) -> JSONValue {
        switch caller {
        case .controlDomain: ["kind": "dom0"]
        case .deviceModel(let of): ["kind": "device_model", "domain": .int(Int64(of.rawValue))]
        case .guest(let id, let privilege):
            ["kind": "guest", "domain": .int(Int64(id.rawValue)), "user": .bool(privilege == .user)]
        }
    }

    static func decodeCaller(_ value: JSONValue?) -> Caller {
        guard let value, let kind = value["kind"]?.string else { return .controlDomain }
        let domain = DomainID(rawValue: UInt16(truncatingIfNeeded: value["domain"]?.int64 ?? 0))
        switch kind {
        case "device_model": return .deviceModel(of: domain)
        case "guest": return value["user"]?.bool == true ? .guestUser(domain) : .guestKernel(domain)
        default: return .controlDomain
        }
    }

    // MARK: Arguments

    /// The `domain` argument: a name, or an id (decimal or 0x hex). A guest
    /// that gives none means itself.
    func resolveDomain(_ arguments: RequestArguments, caller: Caller) throws(RequestError) -> DomainID {
        guard let value = arguments.fields["domain"] else {
            if case .guest(let own, _) = caller { return own }
            throw .usage("missing argument 'domain' (a domain name or id)")
        }
        if let number = value.uint64 {
            guard number <= 0xFFFF else { throw .usage("domain id \(number) is out of range") }
            return DomainID(rawValue: UInt16(number))
        }
        guard let text = value.string, !text.isEmpty else { throw .usage("argument 'domain' must be a name or an id") }
        let lower = text.lowercased()
        if let number = lower.hasPrefix("0x") ? UInt64(lower.dropFirst(2), radix: 16) : UInt64(lower) {
            guard number <= 0xFFFF else { throw .usage("domain id \(text) is out of range") }
            return DomainID(rawValue: UInt16(number))
        }
        if let match = engine.domainList().first(where: { $0.name == text }) { return match.id }
        throw .refused("no domain named \(text); see chanctl domain list")
    }

    /// An access argument (a name, or a raw ABI number) as this host's ABI value.
    func accessABI(_ arguments: RequestArguments, _ key: String) throws(RequestError) -> UInt16 {
        guard let value = arguments.fields[key] else { throw .usage("missing argument '\(key)'") }
        if let number = value.uint64 {
            guard let raw = UInt16(exactly: number) else { throw .usage("access number \(number) is out of range") }
            return raw
        }
        guard let name = value.string else { throw .usage("argument '\(key)' must be an access name") }
        if let number = UInt16(name) { return number }
        guard let access = MemAccess(name) else {
            throw .usage("bad access '\(name)': expected one of n r w rw x rx wx rwx rx2rw n2rwx default (r_pw on the --xen 4.20 and 4.21 profiles)")
        }
        guard let abi = access.abiValue(for: host.xen) else {
            throw .usage("access \(name) exists from Xen 4.20 on; this simulator runs Xen \(host.xen) (chanctl sim start --xen 4.20 or 4.21)")
        }
        return abi
    }

    func accessName(_ abi: UInt16) -> JSONValue {
        MemAccess(abiValue: abi, for: host.xen).map { .string($0.description) } ?? .int(Int64(abi))
    }

    static func requireControlDomain(_ caller: Caller, _ what: String) throws(RequestError) {
        guard caller == .controlDomain else {
            throw .refused("\(what) is a control-domain operation; run it without --as-guest")
        }
    }

    /// Guests may act only on their own domain through simulator-only operations.
    static func requireSelfOrControl(_ caller: Caller, target: DomainID) throws(RequestError) {
        if case .guest(let own, _) = caller, own != target {
            throw .refused("a guest may only act on its own domain (\(own)), not \(target)")
        }
    }

    // MARK: Dispatch

    func execute(_ op: String, _ a: RequestArguments, caller: Caller, connection: Connection?,
                 record: inout [String: JSONValue], touched: inout [GFN]) throws(RequestError) -> Reply {
        func xen(_ body: () throws(XenErrno) -> Void) throws(RequestError) {
            do { try body() } catch { throw .xen(error, "\(op): \(error.description)") }
        }
        switch op {
        case "hello":
            return Reply(fields: ["server": "altp2m-sim", "protocol": 1, "pid": .int(Int64(getpid())),
                                  "caller": Self.encode(caller)])
        case "sim.status":
            return Reply(fields: statusFields())
        case "sim.stop":
            try Self.requireControlDomain(caller, "sim stop")
            stopRequested = true
            return Reply(fields: ["stopping": true])
        case "domain.create":
            try Self.requireControlDomain(caller, "domain create")
            return try createDomain(a, record: &record)
        case "domain.list":
            return Reply(fields: ["domains": .array(domainListJSON())])
        case "domain.destroy":
            try Self.requireControlDomain(caller, "domain destroy")
            let id = try resolveDomain(a, caller: caller)
            // Channels first: the grant module tears them down (its calls
            // are journaled before this request's record).
            if engine.domains[id] != nil {
                for ext in extensions { ext.domainWillBeDestroyed(id) }
            }
            try xen { () throws(XenErrno) in try engine.destroyDomain(id) }
            domainDestroyed(id)
            return Reply(fields: ["domid": .int(Int64(id.rawValue))])
        case "domain.crash":
            try Self.requireControlDomain(caller, "domain crash")
            let id = try resolveDomain(a, caller: caller)
            // Journaled as `internal.crash` before the grant module's
            // teardown calls, in the order they happened.
            record["op"] = nil
            return try crashDomain(id)
        case "domain.set-param":
            let id = try resolveDomain(a, caller: caller)
            let value = try a.uint("value")
            try xen { () throws(XenErrno) in
                try engine.hvmSetParam(id, index: Altp2mEngine.hvmParamAltp2m, value: value, caller: caller)
            }
            return Reply(fields: [:])
        case "domain.get-param":
            let id = try resolveDomain(a, caller: caller)
            var value: UInt64 = 0
            try xen { () throws(XenErrno) in
                value = try engine.hvmGetParam(id, index: Altp2mEngine.hvmParamAltp2m, caller: caller)
            }
            let mode = Altp2mMode(rawValue: UInt32(truncatingIfNeeded: value)).map { JSONValue.string($0.description) } ?? .null
            return Reply(fields: ["altp2m": mode, "value": .uint(value)])
        case "domain.pause", "domain.unpause", "domain.set-access-required":
            return try domainControlOperation(op, a, caller: caller)
        case _ where op.hasPrefix("altp2m."):
            return try altp2mOperation(String(op.dropFirst("altp2m.".count)), a, caller: caller)
        case _ where op.hasPrefix("guest.") || op.hasPrefix("host.") || op == "sim.view-entry":
            return try guestOperation(op, a, caller: caller, connection: connection, record: &record, touched: &touched)
        case _ where op.hasPrefix("monitor."):
            try Self.requireControlDomain(caller, op)
            return try monitorOperation(op, a, caller: caller)
        case _ where extensionFor(op) != nil:
            // The extension journals the hypervisor calls it makes
            // (`internal.host`), not the request itself.
            record["op"] = nil
            return try runExtension(extensionFor(op)!, op, a, caller: caller)
        case _ where op.hasPrefix("evtchn."):
            return try eventChannelOperation(op, a, caller: caller, connection: connection, record: &record)
        case _ where op.hasPrefix("xs."):
            return try xenstoreOperation(op, a, caller: caller, connection: connection, record: &record)
        case _ where op.hasPrefix("gntshr.") || op.hasPrefix("gnttab."):
            return try grantOperation(op, a, caller: caller, connection: connection, record: &record, touched: &touched)
        case "domain.set-max-mem", "domain.mem-set", "domain.memory-map", "memory.populate", "memory.decrease",
             "foreign.map":
            return try memoryOperation(op, a, caller: caller, touched: &touched)
        case "internal.vmfunc", "internal.crash", "internal.host", "internal.evtchn-close", "internal.xenstore",
             "internal.grant-close":
            // Journal-only records: replayed, never accepted from a client.
            throw .refused("\(op) is internal to the daemon's journal")
        default:
            throw .usage("unknown operation '\(op)'; see docs/SIMULATOR-DAEMON.md")
        }
    }

    func statusFields() -> [String: JSONValue] {
        let counts = engine.frameCounts
        return [
            "pid": .int(Int64(getpid())), "state_dir": .string(directory.path),
            "host": .string(host.description), "cpu": .string(host.cpu.name), "xen": .string(host.xen.description),
            "altp2m_boot": .bool(host.altp2mBootOption), "machine_frames": .int(Int64(counts.total)),
            "free_frames": .int(Int64(counts.free)), "domains": .int(Int64(engine.domainList().count)),
            "journal_records": .int(Int64(journalRecords)), "uptime_s": .double((Self.now() - startedAt) * 1000).rounded3,
            "attached_guests": .int(Int64(connections.filter { $0.attachedDomain != nil }.count)),
        ]
    }

    func domainListJSON() -> [JSONValue] {
        engine.domainList().map { info in
            let status = try? engine.domainStatus(info.id)
            let state = info.isCrashed ? "crashed" : info.isPaused ? "paused" : "running"
            var fields: [String: JSONValue] = [
                "domid": .int(Int64(info.id.rawValue)), "name": .string(info.name), "type": .string(info.kind.rawValue),
                "vcpus": .int(Int64(info.vcpuCount)), "pages": .int(Int64(info.pageCount)), "state": .string(state),
            ]
            if let maxPages = try? engine.maxPages(info.id) { fields["max_pages"] = .uint(maxPages) }
            if let status {
                fields["altp2m"] = .string(status.mode.description)
                fields["altp2m_active"] = .bool(status.isActive)
                fields["views"] = .int(Int64(status.viewCount))
                fields["monitor"] = .bool(status.hasMonitorRing)
            }
            fields["attached"] = .int(Int64(connections.filter { $0.attachedDomain == info.id }.count))
            return .object(fields)
        }
    }
}

extension JSONValue {
    /// A duration in milliseconds, turned to seconds with 3 decimals.
    var rounded3: JSONValue {
        guard case .double(let ms) = self else { return self }
        return .double((ms).rounded() / 1000)
    }
}
