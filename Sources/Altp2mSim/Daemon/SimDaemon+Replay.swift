import Altp2m
import Logging

/// Recovery: a daemon that finds a journal replays it into a fresh engine.
///
/// The engine is deterministic (frames are handed out lowest first, domain
/// ids counting on, no clock, no randomness), so replaying the same requests
/// rebuilds the same domains, views, entries, vCPU views and monitor rings.
/// Guest memory is not rebuilt: it lives in the memory file, which survived.
/// Replay therefore runs on a private copy-on-write view of that file, so
/// that the scrubs and #VE writes of the past cannot overwrite what guests
/// wrote later; the one piece of guest memory the engine reads (the #VE
/// semaphore) is journaled with each access and restored before it.
extension SimDaemon {
    func replay(_ records: [JSONValue]) throws(SystemCallError) {
        try memory.beginReplay()
        replaying = true
        defer {
            replaying = false
            memory.endReplay()
        }
        var applied = 0
        for record in records {
            guard case .object(var fields) = record, let op = fields["op"]?.string else { continue }
            switch op {
            case "internal.vmfunc":
                let domain = DomainID(rawValue: UInt16(truncatingIfNeeded: fields["domain"]?.int64 ?? 0))
                let vcpu = VCPUID(UInt32(truncatingIfNeeded: fields["vcpu"]?.int64 ?? 0))
                let index = UInt32(truncatingIfNeeded: fields["index"]?.int64 ?? 0)
                _ = try? engine.vmfunc(domain, vcpu: vcpu, eax: 0, ecx: index)
            case "internal.host":
                replayHostCall(fields)
            case "internal.xenstore":
                replayXenstore(fields)
            case "internal.grant-close":
                grantTables.closeHandle(UInt32(truncatingIfNeeded: fields["handle"]?.int64 ?? 0), engine: engine)
            case "internal.evtchn-close":
                eventChannels.closeHandle(UInt32(truncatingIfNeeded: fields["handle"]?.int64 ?? 0))
            case "internal.crash":
                let domain = DomainID(rawValue: UInt16(truncatingIfNeeded: fields["domain"]?.int64 ?? 0))
                if (try? engine.crashDomain(domain)) != nil { domainCrashed(domain) }
            default:
                let caller = Self.decodeCaller(fields["caller"])
                var touched: [GFN] = []
                _ = try? execute(op, RequestArguments(fields: fields), caller: caller, connection: nil,
                                 record: &fields, touched: &touched)
            }
            applied += 1
        }
        // No connection survived the restart: every handle waits to be resumed.
        eventChannels.detachAllHandles()
        grantTables.detachAllHandles()
        for domain in domains.values {
            domain.refresh(from: engine, force: true)
            domain.publishViews(from: engine)
        }
        log.info("recovered \(applied) journal records: \(engine.domainList().count - 1) domains")
    }
}
