import Altp2m
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Xen event channels served to dom0 and guest processes (`evtchn.*`).
///
/// A connection that sends `evtchn.open` becomes one libxenevtchn handle:
/// the ports it binds are its own, and it receives the read end of a pipe
/// (SCM_RIGHTS) that is readable exactly while the handle has delivered
/// ports to read, which is what `xenevtchn_fd` gives a process to `poll`.
/// Binding changes are journaled with the handle's id; a handle whose
/// connection closes is closed (`evtchn_release`), and a daemon restart
/// leaves every handle without a connection until its process resumes it
/// with the key it was given.
extension SimDaemon {

    func eventChannelOperation(_ op: String, _ a: RequestArguments, caller: Caller, connection: Connection?,
                               record: inout [String: JSONValue]) throws(RequestError) -> Reply {
        func xen<R>(_ body: () throws(XenErrno) -> R) throws(RequestError) -> R {
            do { return try body() } catch { throw .xen(error, "\(op): \(error.description)") }
        }
        let own = Self.callingDomain(caller)
        if op == "evtchn.open" { return try openEventChannelHandle(a, domain: own, connection: connection, record: &record) }
        if op == "evtchn.list" {
            let id = try resolveDomain(a, caller: caller)
            try Self.requireSelfOrControl(caller, target: id)
            let ports = try xen { () throws(XenErrno) in try eventChannels.ports(of: id) }
            return Reply(fields: ["domid": .int(Int64(id.rawValue)), "ports": .array(ports.map(Self.portJSON))])
        }
        // Every other operation acts through the connection's handle; a
        // replayed one names the handle it acted through.
        let handle: UInt32
        if replaying {
            handle = try a.bounded("handle", as: UInt32.self)
        } else {
            guard let own = connection?.eventChannelHandle else {
                throw .refused("\(op) needs an event-channel handle on this connection: send evtchn.open first")
            }
            handle = own
        }
        record["handle"] = .int(Int64(handle))
        defer { refreshEventChannelFD(handle) }
        switch op {
        case "evtchn.bind-unbound":
            let remote = try a.bounded("remote", as: UInt16.self)
            let port = try xen { () throws(XenErrno) in try eventChannels.bindUnbound(handle: handle, remote: remote) }
            return Reply(fields: ["port": .int(Int64(port))])
        case "evtchn.bind-interdomain":
            let remote = try a.bounded("remote", as: UInt16.self)
            let remotePort = try a.bounded("remote_port", as: UInt32.self)
            let bound = try xen { () throws(XenErrno) in
                try eventChannels.bindInterdomain(handle: handle, remote: remote, remotePort: remotePort)
            }
            wakeHandles(bound.deliveries)
            return Reply(fields: ["port": .int(Int64(bound.port))])
        case "evtchn.unbind":
            let port = try a.bounded("port", as: UInt32.self)
            try xen { () throws(XenErrno) in try eventChannels.unbind(handle: handle, port: port) }
            return Reply(fields: [:])
        case "evtchn.close":
            record["op"] = "internal.evtchn-close"
            eventChannels.closeHandle(handle)
            if let connection { releaseEventChannelHandle(of: connection) }
            return Reply(fields: [:])
        default:
            break
        }
        // Events are not journaled: pending and mask bits do not survive a
        // restart (a resumed handle gets every port pending instead).
        record["op"] = nil
        switch op {
        case "evtchn.notify":
            let port = try a.bounded("port", as: UInt32.self)
            wakeHandles(try xen { () throws(XenErrno) in try eventChannels.notify(handle: handle, port: port) })
            return Reply(fields: [:])
        case "evtchn.unmask":
            wakeHandles(eventChannels.unmask(handle: handle, port: try a.bounded("port", as: UInt32.self)))
            return Reply(fields: [:])
        case "evtchn.pending":
            let port = eventChannels.pending(handle: handle)
            return Reply(fields: ["port": port.map { .int(Int64($0)) } ?? .null])
        default:
            throw .usage("unknown operation '\(op)'; see docs/SIMULATOR-DAEMON.md")
        }
    }

    /// `xenevtchn_open`, or taking back a handle after a daemon restart
    /// (`resume` and `key`).
    private func openEventChannelHandle(_ a: RequestArguments, domain: DomainID, connection: Connection?,
                                        record: inout [String: JSONValue]) throws(RequestError) -> Reply {
        if !replaying, connection?.eventChannelHandle != nil {
            throw .refused("this connection already holds an event-channel handle; open another connection for a second one")
        }
        let handle: UInt32
        if let resume = try a.optionalUInt("resume"), !replaying {
            let key = try a.string("key")
            guard let id = UInt32(exactly: resume) else { throw .usage("resume is a handle id") }
            do {
                // The resumed handle's own pipe is refreshed once created below.
                wakeHandles(try eventChannels.resumeHandle(id, domain: domain, key: key))
            } catch {
                throw .xen(error, "evtchn.open: handle \(id) cannot be resumed (\(error.name)): it is not this domain's, the key differs, or a connection holds it")
            }
            handle = id
            record["op"] = nil
        } else {
            let key = replaying ? try a.string("key") : (Self.randomToken().map { String($0.prefix(32)) } ?? "")
            let recorded = replaying ? try a.bounded("handle", as: UInt32.self) : nil
            do { handle = try eventChannels.openHandle(domain: domain, id: recorded, key: key) } catch {
                throw .xen(error, "evtchn.open: domain \(domain) has no event-channel table (\(error.name))")
            }
            record["handle"] = .int(Int64(handle))
            record["key"] = .string(key)
        }
        guard let connection else { return Reply(fields: ["handle": .int(Int64(handle))]) }
        guard let ends = ReadinessPipe.make() else {
            eventChannels.closeHandle(handle)
            throw .refused("cannot create the handle's descriptor: \(SystemCallError("pipe"))")
        }
        connection.eventChannelHandle = handle
        eventChannelPipes[handle] = ends
        refreshEventChannelFD(handle)
        return Reply(fields: ["handle": .int(Int64(handle)), "key": .string(eventChannels.key(of: handle) ?? ""),
                              "domid": .int(Int64(domain.rawValue)), "descriptors": ["evtchn"]],
                     fds: [ends.read])
    }

    /// The connection of a handle closed: `evtchn_release` closes its ports.
    func eventChannelConnectionClosed(_ connection: Connection) {
        guard let handle = connection.eventChannelHandle else { return }
        eventChannels.closeHandle(handle)
        appendJournal(["op": "internal.evtchn-close", "handle": .int(Int64(handle))])
        releaseEventChannelHandle(of: connection)
    }

    private func releaseEventChannelHandle(of connection: Connection) {
        guard let handle = connection.eventChannelHandle else { return }
        connection.eventChannelHandle = nil
        eventChannelPipes.removeValue(forKey: handle)?.close()
    }

    /// Makes each handle's descriptor readable (its ring has ports).
    func wakeHandles(_ handles: [UInt32]) {
        for handle in Set(handles) { refreshEventChannelFD(handle) }
    }

    /// One byte in the pipe while the handle has delivered ports, none
    /// otherwise: level-triggered, as `poll` on the evtchn device is.
    func refreshEventChannelFD(_ handle: UInt32) {
        eventChannelPipes[handle]?.set(readable: eventChannels.hasPending(handle: handle))
    }

    /// The domain a caller's handle belongs to.
    static func callingDomain(_ caller: Caller) -> DomainID {
        switch caller {
        case .guest(let id, _): id
        case .deviceModel(let of): of
        case .controlDomain: .controlDomain
        }
    }

    static func portJSON(_ item: (port: UInt32, entry: XenEventChannels.Port)) -> JSONValue {
        var fields: [String: JSONValue] = ["port": .int(Int64(item.port)), "pending": .bool(item.entry.pending),
                                           "masked": .bool(item.entry.masked),
                                           "handle": item.entry.handle.map { .int(Int64($0)) } ?? .null]
        switch item.entry.state {
        case .reserved:
            fields["state"] = "reserved"
        case .unbound(let remote):
            fields["state"] = "unbound"
            fields["remote"] = .int(Int64(remote.rawValue))
        case .interdomain(let remote, let remotePort):
            fields["state"] = "interdomain"
            fields["remote"] = .int(Int64(remote.rawValue))
            fields["remote_port"] = .int(Int64(remotePort))
        }
        return .object(fields)
    }
}
