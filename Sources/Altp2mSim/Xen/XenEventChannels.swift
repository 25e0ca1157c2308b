import Altp2m

/// Xen's interdomain event channels as a guest process reaches them: the
/// hypervisor's per-domain port table (Xen 4.17 `xen/common/event_channel.c`)
/// seen through a handle of the Linux evtchn driver (`/dev/xen/evtchn`, what
/// libxenevtchn's `xenevtchn_open` opens; `tools/libs/evtchn/linux.c`).
///
/// A pure state machine: the daemon owns one, serves it to dom0 and to guest
/// processes (one handle per connection), journals what changes bindings and
/// turns ``Delivery`` values into readable descriptors. Only interdomain
/// channels are modelled (no VIRQs, PIRQs or IPIs: nothing here binds them).
///
/// Two layers, each as Xen and Linux split them:
/// - **the hypervisor**: ports are numbered per domain from 1 (port 0 is
///   reserved by `evtchn_init`), each free, unbound (waiting for a named
///   remote domain) or interdomain (connected to a remote domain's port),
///   with a pending and a mask bit;
/// - **the guest kernel's evtchn driver**: a port bound through a handle
///   belongs to that handle alone. Delivering an event masks the port, clears
///   its pending bit and queues it on the handle (`evtchn_interrupt`); the
///   process reads it (`xenevtchn_pending`) and unmasks it
///   (`xenevtchn_unmask`), which redelivers an event that arrived meanwhile.
///   Closing a handle closes every port it bound (`evtchn_release`).
public final class XenEventChannels {
    /// `DOMID_SELF`: "the calling domain" in `remote_dom` arguments.
    public static let domidSelf: UInt16 = 0x7FF0
    /// The highest port a domain may use: libxl's default `max_event_channels`
    /// (1023) as Xen's `max_evtchn_port`; a port above it is invalid.
    public static let maxPort: UInt32 = 1023

    /// A port's state (`ECS_*` in Xen's `struct evtchn`).
    public enum State: Equatable, Sendable {
        /// `ECS_RESERVED`: port 0.
        case reserved
        /// `ECS_UNBOUND`: waiting for `remote` to bind to it.
        case unbound(remote: DomainID)
        /// `ECS_INTERDOMAIN`: connected to `remotePort` of `remote`.
        case interdomain(remote: DomainID, remotePort: UInt32)
    }

    /// One allocated port.
    public struct Port: Equatable, Sendable {
        public var state: State
        /// The 2-level ABI's pending bit.
        public var pending = false
        /// The 2-level ABI's mask bit.
        public var masked = false
        /// The handle that bound it (nil: port 0, or a port whose handle is
        /// gone after a daemon restart and not yet resumed).
        public var handle: UInt32?
    }

    /// A handle: what one `xenevtchn_open` gives one process.
    struct Handle {
        let domain: DomainID
        /// The secret a process presents to take its handle back after a
        /// daemon restart.
        let key: String
        /// Ports the driver delivered and the process has not read yet.
        var ring: [UInt32] = []
        /// Whether a connection holds the handle now.
        var attached = true
    }

    /// A handle whose descriptor must now be readable (its ring has ports).
    public typealias Delivery = UInt32

    /// Ports by domain; a domain known here has a table (created with the
    /// domain, dropped by ``destroyDomain(_:)``).
    private(set) var tables: [DomainID: [UInt32: Port]] = [:]
    private(set) var handles: [UInt32: Handle] = [:]
    private var nextHandle: UInt32 = 1

    public init() {
        addDomain(.controlDomain)
    }

    // MARK: Domains

    /// `evtchn_init`: a new domain's table, with port 0 reserved.
    public func addDomain(_ id: DomainID) {
        tables[id] = [0: Port(state: .reserved)]
    }

    /// `evtchn_destroy` (from `domain_kill`): every port of a dying domain is
    /// closed, so each peer's port goes back to unbound (the peer gets no
    /// event: Xen sends none). The domain's handles go with it.
    public func destroyDomain(_ id: DomainID) {
        guard let table = tables[id] else { return }
        for port in table.keys.sorted() where port != 0 { try? close(id, port) }
        tables[id] = nil
        for (handleID, handle) in handles where handle.domain == id { handles[handleID] = nil }
    }

    // MARK: Handles

    /// `xenevtchn_open`: a new handle for a process of `domain`. `id` and
    /// `key` are given only when the journal is replayed.
    public func openHandle(domain: DomainID, id: UInt32? = nil, key: String) throws(XenErrno) -> UInt32 {
        guard tables[domain] != nil else { throw .notFound }
        let handleID = id ?? nextHandle
        nextHandle = max(nextHandle, handleID &+ 1)
        handles[handleID] = Handle(domain: domain, key: key)
        return handleID
    }

    /// Takes back a handle left without a connection by a daemon restart.
    /// Its ports come back pending, as `evtchn_bind_interdomain` sets a new
    /// port pending, because an event may have been lost meanwhile.
    public func resumeHandle(_ id: UInt32, domain: DomainID, key: String) throws(XenErrno) -> [Delivery] {
        guard var handle = handles[id], handle.domain == domain, handle.key == key else { throw .noEntry }
        guard !handle.attached else { throw .busy }
        handle.attached = true
        handles[id] = handle
        var deliveries: [Delivery] = []
        for port in ports(of: id) { deliveries += setPending(domain, port) }
        return deliveries
    }

    /// Marks every handle as without a connection (after a restart). Pending
    /// and mask bits are not journaled: every port starts clear, and a
    /// resumed handle gets each of its ports delivered once.
    public func detachAllHandles() {
        for id in handles.keys {
            handles[id]?.attached = false
            handles[id]?.ring.removeAll()
        }
        for (domain, table) in tables {
            for port in table.keys {
                tables[domain]![port]!.pending = false
                tables[domain]![port]!.masked = false
            }
        }
    }

    /// The key of a handle (answered to the process that opened it).
    public func key(of handle: UInt32) -> String? { handles[handle]?.key }

    /// The domain a handle belongs to.
    public func domain(of handle: UInt32) -> DomainID? { handles[handle]?.domain }

    /// `evtchn_release`: the process closed the device (or died). Each port
    /// it bound is closed as by `evtchn_close`.
    public func closeHandle(_ id: UInt32) {
        guard let handle = handles[id] else { return }
        for port in ports(of: id) { try? close(handle.domain, port) }
        handles[id] = nil
    }

    private func ports(of handle: UInt32) -> [UInt32] {
        guard let domain = handles[handle]?.domain, let table = tables[domain] else { return [] }
        return table.filter { $0.value.handle == handle }.map(\.key).sorted()
    }

    // MARK: Binding

    /// `xenevtchn_bind_unbound_port`: `IOCTL_EVTCHN_BIND_UNBOUND_PORT` runs
    /// `evtchn_alloc_unbound` with `dom = DOMID_SELF` and binds the port to
    /// the handle.
    public func bindUnbound(handle: UInt32, remote: UInt16) throws(XenErrno) -> UInt32 {
        guard let owner = handles[handle] else { throw .invalid }
        let local = owner.domain
        // evtchn_alloc_unbound: the remote domain need not exist; DOMID_SELF
        // names the caller.
        let remoteID = remote == Self.domidSelf ? local : DomainID(rawValue: remote)
        let port = try freePort(local)
        tables[local]![port] = Port(state: .unbound(remote: remoteID), handle: handle)
        return port
    }

    /// `xenevtchn_bind_interdomain`: `evtchn_bind_interdomain` connects a new
    /// local port to `remotePort` of `remote`, which must be unbound and
    /// waiting for this domain; the new port is then set pending.
    public func bindInterdomain(handle: UInt32, remote: UInt16, remotePort: UInt32) throws(XenErrno) -> (port: UInt32, deliveries: [Delivery]) {
        guard let owner = handles[handle] else { throw .invalid }
        let local = owner.domain
        let remoteID = remote == Self.domidSelf ? local : DomainID(rawValue: remote)
        // rcu_lock_domain_by_any_id fails: ESRCH.
        guard tables[remoteID] != nil else { throw .notFound }
        let port = try freePort(local)
        // The remote port must exist, be unbound and name this domain: EINVAL.
        guard let remoteEntry = tables[remoteID]?[remotePort],
              case .unbound(let waitingFor) = remoteEntry.state, waitingFor == local
        else { throw .invalid }
        tables[local]![port] = Port(state: .interdomain(remote: remoteID, remotePort: remotePort), handle: handle)
        tables[remoteID]![remotePort]!.state = .interdomain(remote: local, remotePort: port)
        // "We may have lost notifications on the remote unbound port": Xen
        // conservatively sets the local port pending.
        return (port, setPending(local, port))
    }

    /// `get_free_port`: the lowest free port; `ENOSPC` when all are taken.
    private func freePort(_ domain: DomainID) throws(XenErrno) -> UInt32 {
        guard let table = tables[domain] else { throw .invalid }
        for port in 1...Self.maxPort where table[port] == nil { return port }
        throw .noSpace
    }

    // MARK: Events

    /// `xenevtchn_notify`: `IOCTL_EVTCHN_NOTIFY` refuses a port this handle
    /// did not bind (`ENOTCONN`, `EINVAL` beyond the last port), then
    /// `evtchn_send`: an interdomain port sets the remote port pending, an
    /// unbound one drops the notification silently.
    public func notify(handle: UInt32, port: UInt32) throws(XenErrno) -> [Delivery] {
        let entry = try owned(handle, port)
        switch entry.state {
        case .interdomain(let remote, let remotePort): return setPending(remote, remotePort)
        case .unbound: return []
        case .reserved: throw .invalid
        }
    }

    /// `xenevtchn_unmask`: the driver re-enables a port of this handle that
    /// it masked when it delivered (ports of other handles are ignored, as
    /// `evtchn_write` ignores them); `evtchn_unmask` then clears the mask
    /// bit and delivers an event that arrived while it was set.
    public func unmask(handle: UInt32, port: UInt32) -> [Delivery] {
        guard let domain = handles[handle]?.domain, var entry = tables[domain]?[port],
              entry.handle == handle, entry.masked else { return [] }
        entry.masked = false
        tables[domain]![port] = entry
        return entry.pending ? deliver(domain, port) : []
    }

    /// `xenevtchn_pending`: the next port the driver delivered to this
    /// handle, or nil (the C call's -1 with `EAGAIN`).
    public func pending(handle: UInt32) -> UInt32? {
        guard var entry = handles[handle], !entry.ring.isEmpty else { return nil }
        let port = entry.ring.removeFirst()
        handles[handle] = entry
        return port
    }

    /// Whether the handle's descriptor should be readable.
    public func hasPending(handle: UInt32) -> Bool { !(handles[handle]?.ring.isEmpty ?? true) }

    /// `xenevtchn_unbind`: `IOCTL_EVTCHN_UNBIND` (`ENOTCONN` for a port this
    /// handle did not bind), then `evtchn_close`.
    public func unbind(handle: UInt32, port: UInt32) throws(XenErrno) {
        let domain = handles[handle]?.domain ?? .controlDomain
        _ = try owned(handle, port)
        try close(domain, port)
        handles[handle]?.ring.removeAll { $0 == port }
    }

    /// The port if this handle bound it: the driver's `get_port_user` check.
    private func owned(_ handle: UInt32, _ port: UInt32) throws(XenErrno) -> Port {
        guard let domain = handles[handle]?.domain else { throw .invalid }
        guard port <= Self.maxPort else { throw .invalid }
        guard let entry = tables[domain]?[port], entry.handle == handle else { throw .notConnected }
        return entry
    }

    /// `evtchn_close`: a free or reserved port is `EINVAL`; an interdomain
    /// port's peer goes back to unbound, waiting for this domain again.
    func close(_ domain: DomainID, _ port: UInt32) throws(XenErrno) {
        guard let entry = tables[domain]?[port] else { throw .invalid }
        switch entry.state {
        case .reserved: throw .invalid
        case .unbound: break
        case .interdomain(let remote, let remotePort):
            tables[remote]?[remotePort]?.state = .unbound(remote: domain)
        }
        // evtchn_free clears the pending bit so a re-bind starts clean.
        tables[domain]![port] = nil
    }

    /// `evtchn_port_set_pending`: an already pending port stays as it is;
    /// otherwise it becomes pending and, unless masked, is delivered.
    private func setPending(_ domain: DomainID, _ port: UInt32) -> [Delivery] {
        guard let entry = tables[domain]?[port], !entry.pending else { return [] }
        tables[domain]![port]!.pending = true
        return entry.masked ? [] : deliver(domain, port)
    }

    /// The guest kernel takes the upcall for a port bound by a handle: it
    /// masks the port, acknowledges it (clears pending) and queues it on the
    /// handle (`evtchn_interrupt`). A port no handle holds stays pending.
    private func deliver(_ domain: DomainID, _ port: UInt32) -> [Delivery] {
        guard let handleID = tables[domain]?[port]?.handle, handles[handleID] != nil else { return [] }
        tables[domain]![port]!.masked = true
        tables[domain]![port]!.pending = false
        handles[handleID]!.ring.append(port)
        return [handleID]
    }

    // MARK: Inspection

    /// The allocated ports of a domain (port 0 included), lowest first.
    public func ports(of domain: DomainID) throws(XenErrno) -> [(port: UInt32, entry: Port)] {
        guard let table = tables[domain] else { throw .notFound }
        return table.keys.sorted().map { ($0, table[$0]!) }
    }
}
