import Altp2m
import XenInterface

/// ``XenEventChannelLibrary`` on the simulator's event channels, through a
/// ``SimEventChannel`` handle: ports belong to this handle, as to an open
/// `/dev/xen/evtchn`.
public final class SimXenEventChannelLibrary: XenEventChannelLibrary {
    public let handle: SimEventChannel

    /// `xenevtchn_open` on the simulator at `stateDirectory`, as the domain
    /// whose `token` is given, or as dom0.
    public init(stateDirectory: StateDirectory = .resolve(), token: String? = nil) throws(SimClientError) {
        handle = try SimEventChannel(stateDirectory: stateDirectory, token: token)
    }

    public var fileDescriptor: Int32 { handle.fileDescriptor }

    public func bindUnboundPort(remote: DomainID) throws(XenErrno) -> UInt32 {
        try asErrno { () throws(SimClientError) in try handle.bindUnboundPort(remote: remote.rawValue) }
    }

    public func bindInterdomain(remote: DomainID, remotePort: UInt32) throws(XenErrno) -> UInt32 {
        try asErrno { () throws(SimClientError) in try handle.bindInterdomain(remote: remote.rawValue, remotePort: remotePort) }
    }

    public func notify(_ port: UInt32) throws(XenErrno) {
        try asErrno { () throws(SimClientError) in try handle.notify(port) }
    }

    public func pending() throws(XenErrno) -> UInt32? {
        try asErrno { () throws(SimClientError) in try handle.pending() }
    }

    public func unmask(_ port: UInt32) throws(XenErrno) {
        try asErrno { () throws(SimClientError) in try handle.unmask(port) }
    }

    public func unbind(_ port: UInt32) throws(XenErrno) {
        try asErrno { () throws(SimClientError) in try handle.unbind(port) }
    }
}
