import Altp2m
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An event-channel handle on the simulator: what `xenevtchn_open` gives a
/// process, with libxenevtchn's calls as methods (each names the C function
/// it mirrors).
///
/// A handle is its own connection to the daemon; the ports it binds belong
/// to it alone (another handle of the same domain gets `ENOTCONN` for
/// them), and closing it, or the process dying, closes them. Without a
/// token the handle is dom0's. Hypervisor errors are thrown as
/// ``SimClientError/hypervisor(_:message:)`` with Xen's error number.
public final class SimEventChannel {
    /// The handle's id in the daemon (for ``resume(stateDirectory:token:handle:key:)``).
    public let handle: UInt32
    /// The secret that takes this handle back after a daemon restart.
    public let key: String
    /// The domain the handle belongs to.
    public let domain: DomainID
    /// `xenevtchn_fd`: readable while delivered ports wait to be read with
    /// ``pending()``. Poll it; do not read it (the daemon keeps its level).
    public let fileDescriptor: Int32
    let client: SimClient

    /// `xenevtchn_open`: a new handle, as the domain whose `token` is given
    /// or as dom0.
    public convenience init(stateDirectory: StateDirectory = .resolve(), token: String? = nil) throws(SimClientError) {
        try self.init(stateDirectory: stateDirectory, token: token, arguments: [:])
    }

    /// Takes back a handle that lost its connection when the daemon
    /// restarted: its ports are still bound and come back pending.
    public static func resume(stateDirectory: StateDirectory = .resolve(), token: String? = nil,
                              handle: UInt32, key: String) throws(SimClientError) -> SimEventChannel {
        try SimEventChannel(stateDirectory: stateDirectory, token: token,
                            arguments: ["resume": .int(Int64(handle)), "key": .string(key)])
    }

    private init(stateDirectory: StateDirectory, token: String?, arguments: [String: JSONValue]) throws(SimClientError) {
        client = try SimClient(stateDirectory: stateDirectory, token: token)
        let (response, fds) = try client.exchange("evtchn.open", arguments)
        guard let fd = fds.first, let id = response["handle"]?.int64, let domid = response["domid"]?.int64 else {
            WireFrame.closeAll(fds)
            client.close()
            throw .connection("evtchn.open answered without a handle and its descriptor")
        }
        WireFrame.closeAll(Array(fds.dropFirst()))
        fileDescriptor = fd
        handle = UInt32(truncatingIfNeeded: id)
        key = response["key"]?.string ?? ""
        domain = DomainID(rawValue: UInt16(truncatingIfNeeded: domid))
    }

    deinit {
        client.close()
        _ = systemClose(fileDescriptor)
    }

    /// `xenevtchn_close`: closes every port this handle bound.
    public func close() {
        _ = try? client.call("evtchn.close")
        client.close()
    }

    /// `xenevtchn_bind_unbound_port`: a new port of this domain waiting for
    /// `remote` (`XenEventChannels.domidSelf` for this domain).
    public func bindUnboundPort(remote: UInt16) throws(SimClientError) -> UInt32 {
        try port(client.call("evtchn.bind-unbound", ["remote": .int(Int64(remote))]))
    }

    /// `xenevtchn_bind_interdomain`: a new port connected to `remotePort` of
    /// `remote`, which must be unbound and waiting for this domain.
    public func bindInterdomain(remote: UInt16, remotePort: UInt32) throws(SimClientError) -> UInt32 {
        try port(client.call("evtchn.bind-interdomain", ["remote": .int(Int64(remote)),
                                                         "remote_port": .int(Int64(remotePort))]))
    }

    /// `xenevtchn_notify`: sends an event through a port this handle bound.
    public func notify(_ port: UInt32) throws(SimClientError) {
        _ = try client.call("evtchn.notify", ["port": .int(Int64(port))])
    }

    /// `xenevtchn_unmask`: lets the port deliver again.
    public func unmask(_ port: UInt32) throws(SimClientError) {
        _ = try client.call("evtchn.unmask", ["port": .int(Int64(port))])
    }

    /// `xenevtchn_pending`: the next delivered port, or nil where the C call
    /// returns -1 with `EAGAIN`.
    public func pending() throws(SimClientError) -> UInt32? {
        try client.call("evtchn.pending")["port"]?.int64.map { UInt32(truncatingIfNeeded: $0) }
    }

    /// `xenevtchn_unbind`: closes a port this handle bound.
    public func unbind(_ port: UInt32) throws(SimClientError) {
        _ = try client.call("evtchn.unbind", ["port": .int(Int64(port))])
    }

    /// Waits until ``fileDescriptor`` is readable (`poll`), at most
    /// `timeoutMilliseconds`; returns whether it is.
    public func waitReadable(timeoutMilliseconds: Int32) -> Bool {
        var poller = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, timeoutMilliseconds) > 0 && poller.revents & Int16(POLLIN) != 0
    }

    private func port(_ response: JSONValue) throws(SimClientError) -> UInt32 {
        guard let port = response["port"]?.int64 else { throw .connection("the daemon answered without a port") }
        return UInt32(truncatingIfNeeded: port)
    }
}
