import Altp2m
import Logging
import CPlatform
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Domain creation and destruction, tokens, and the event words.
extension SimDaemon {
    /// Table slots cover at least this many gfns (so small domains still
    /// describe the holes above their memory).
    static let minimumTableGFNs = 1024

    func createDomain(_ a: RequestArguments, record: inout [String: JSONValue]) throws(RequestError) -> Reply {
        let name = try a.string("name")
        guard !name.isEmpty, name.count <= 64, name != ".", name != "..",
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) })
        else {
            throw .usage("bad domain name '\(name)': use 1 to 64 letters, digits, '-', '_' or '.'")
        }
        guard !engine.domainList().contains(where: { $0.name == name }) else {
            throw .refused("a domain named \(name) already exists; see chanctl domain list, or chanctl domain destroy \(name)")
        }
        let vcpus = try a.bounded("vcpus", as: UInt32.self)
        let mib = try a.uint("memory_mib")
        guard mib >= 1, mib <= 4096 else { throw .usage("memory_mib must be 1...4096, not \(mib)") }
        let modeName = a.optionalString("altp2m") ?? "disabled"
        guard let mode = Altp2mMode(modeName) else {
            throw .usage("bad altp2m mode '\(modeName)': expected disabled, mixed, external or limited")
        }
        let kindName = a.optionalString("type") ?? "hvm"
        guard let kind = DomainKind(rawValue: kindName) else { throw .usage("bad type '\(kindName)': expected hvm or pv") }
        let views = try a.optionalUInt("views").map { value throws(RequestError) -> UInt16 in
            guard let count = UInt16(exactly: value) else { throw .usage("views must be 0...65535") }
            return count
        }
        if views != nil && !host.xen.configurableViewCount {
            throw .usage("--views needs the Xen 4.21 profile (chanctl sim start --xen 4.21); before 4.21 every domain has 10 views")
        }
        let pages = mib * 256
        let config = DomainConfig(name: name, vcpuCount: vcpus, pages: pages, kind: kind, hap: true,
                                  nestedVirt: try a.bool("nested_virt", default: false), altp2mMode: mode,
                                  altp2mViewCount: views)
        let recorded = replaying ? a.optionalString("token") : nil
        guard let token = recorded ?? Self.randomToken() else {
            throw .refused("cannot read /dev/urandom for the domain token; domain \(name) was not created")
        }
        record["token"] = .string(token)
        let id: DomainID
        do { id = try engine.createDomain(config) } catch {
            throw .xen(error, "domain create \(name): \(error.description)")
        }
        let status = try? engine.domainStatus(id)
        if replaying, (try? a.bool("undone", default: false)) == true {
            // The original failed after the engine created the domain; redo
            // both steps so the engine's id counter and frames stay in step.
            try? engine.destroyDomain(id)
            throw .refused("domain \(name) was created and undone")
        }

        let gfnCount = max(Self.minimumTableGFNs, Int((pages + 511) / 512 * 512))
        let domain: DaemonDomain
        do {
            domain = try DaemonDomain(id: id, name: name, token: token, vcpuCount: Int(vcpus),
                                      viewCount: status?.viewCount ?? 0, gfnCount: gfnCount, directory: directory)
            try writeToken(token, for: name)
        } catch {
            try? engine.destroyDomain(id)
            record["undone"] = true
            throw .refused("cannot create the files of domain \(name): \(error)")
        }
        domains[id] = domain
        eventChannels.addDomain(id)
        grantAndMemoryDomainCreated(id, pages: pages)
        // The toolstack's nodes and @introduceDomain; replaying this request
        // writes them again, so they are not journaled as xenstore changes.
        xenstore.introduceDomain(id, name: name, memoryKiB: mib * 1024)
        _ = xenstore.takeChanges()
        wakeXenstoreWatchers()
        setEventState(id, EventWordLayout.stateRunning)
        domain.refresh(from: engine, force: true)
        domain.publishViews(from: engine)
        return Reply(fields: ["domid": .int(Int64(id.rawValue)), "name": .string(name), "token": .string(token),
                              "token_path": .string(directory.tokenPath(domain: name))])
    }

    /// Cleans up after the engine destroyed a domain.
    func domainDestroyed(_ id: DomainID) {
        // evtchn_destroy: the domain's ports close, its peers' go unbound.
        eventChannels.destroyDomain(id)
        grantAndMemoryDomainDestroyed(id)
        // libxl's xs_rm and xenstored's destroy_domain, @releaseDomain.
        xenstore.releaseDomain(id)
        _ = xenstore.takeChanges()
        for connection in connections where connection.xenstoreConnection.map({ xenstore.connections[$0] == nil }) == true {
            xenstoreConnectionClosed(connection)
        }
        wakeXenstoreWatchers()
        for connection in connections {
            guard let handle = connection.eventChannelHandle, eventChannels.domain(of: handle) == nil else { continue }
            eventChannelPipes.removeValue(forKey: handle)?.close()
            connection.eventChannelHandle = nil
        }
        if let domain = domains.removeValue(forKey: id) {
            domain.markDestroyed()
            domain.removeFiles()
            unlink(directory.tokenPath(domain: domain.name))
            // The guest's memory is gone, and its claim table with it.
            unlink(directory.viewClaimsPath(domain: domain.name))
        }
        for connection in connections where connection.attachedDomain == id { connection.attachedDomain = nil }
        setEventState(id, EventWordLayout.stateDestroyed)
        wakeAllEventWaiters()
    }

    /// `domain crash`: what dom0's `xc_domain_shutdown(domid, SHUTDOWN_crash)`
    /// does in Xen 4.17 (`SCHEDOP_remote_shutdown` in `do_sched_op`, then
    /// `domain_shutdown`): the domain is shut down with reason crash, each
    /// vCPU paused for the shutdown, and `VIRQ_DOM_EXC` makes xenstored's
    /// `check_domains` fire `@releaseDomain`. A domain already shutting
    /// down is left as it is (`domain_shutdown` returns 0 at once); no
    /// such domain is `ESRCH`. Then the extensions hear of it: the grant
    /// module tears down the domain's channels, telling each peer.
    func crashDomain(_ id: DomainID) throws(RequestError) -> Reply {
        guard id != .controlDomain else {
            // domain_shutdown on the hardware domain calls hwdom_shutdown:
            // the host itself goes down.
            throw .refused("crashing dom0 would take the simulated host down; crash a guest domain, or run: chanctl sim stop")
        }
        let status: DomainStatus
        do { status = try engine.domainStatus(id) } catch {
            throw .xen(error, "domain crash: no domain \(id) (\(error.description)); see chanctl domain list")
        }
        var fields: [String: JSONValue] = ["domid": .int(Int64(id.rawValue)), "name": .string(status.name),
                                           "state": "crashed", "already": .bool(status.isCrashed)]
        guard !status.isCrashed else { return Reply(fields: fields) }
        do { try engine.crashDomain(id) } catch {
            throw .xen(error, "domain crash \(status.name): \(error.description)")
        }
        appendJournal(["op": "internal.crash", "domain": .int(Int64(id.rawValue))])
        domainCrashed(id)
        for ext in extensions { ext.domainDied(id) }
        fields["already"] = false
        log.notice("domain \(status.name) (\(id)) crashed on request")
        return Reply(fields: fields)
    }

    /// A domain has crashed (`domain crash`, or the fault handler crashed
    /// it): mark it, and wake every event waiter so that peers notice.
    func domainCrashed(_ id: DomainID) {
        // xenstored's check_domains sees the crash: @releaseDomain.
        xenstore.domainShutDown(id)
        wakeXenstoreWatchers()
        setEventState(id, EventWordLayout.stateCrashed)
        wakeAllEventWaiters()
    }

    private func writeToken(_ token: String, for name: String) throws(SystemCallError) {
        let path = directory.tokenPath(domain: name)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemCallError("open \(path)") }
        defer { _ = close(fd) }
        fchmod(fd, 0o600)
        let bytes = Array((token + "\n").utf8)
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw SystemCallError("write \(path)")
        }
    }

    /// 32 random bytes as 64 hex digits, from the kernel's CSPRNG; nil if
    /// it cannot be read.
    static func randomToken() -> String? {
        var bytes = [UInt8](repeating: 0, count: 32)
        var filled = 0
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            while filled < bytes.count {
                let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, 32 - filled) }
                if n <= 0 { break }
                filled += n
            }
            _ = close(fd)
        }
        guard filled == bytes.count else { return nil }
        return bytes.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }

    // MARK: Event words

    func eventWord(_ domain: DomainID, _ index: UInt32) -> UnsafeMutablePointer<Atomic<UInt32>>? {
        guard Int(domain.rawValue) < EventWordLayout.domainLimit else { return nil }
        return (events.base + EventWordLayout.offset(domain: domain, word: index)).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    func setEventState(_ domain: DomainID, _ state: UInt32) {
        guard let word = eventWord(domain, 0) else { return }
        word.pointee.store(state, ordering: .releasing)
        _ = cplatform_futex_wake(UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self), Int32.max)
    }

    /// Bumps and wakes every port of every domain: waiters recheck their
    /// condition and their peer's state.
    func wakeAllEventWaiters() {
        for id in engine.domainList().map(\.id) where id != .controlDomain {
            for port in 1...EventWordLayout.portsPerDomain {
                guard let word = eventWord(id, port) else { continue }
                _ = word.pointee.wrappingAdd(1, ordering: .releasing)
                _ = cplatform_futex_wake(UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self), Int32.max)
            }
        }
    }
}
