import Altp2m

/// The calls of libxenevtchn (`xenevtchn.h`), one method per C function.
/// A port belongs to the handle that bound it: only that handle notifies
/// through it, and its notifications make only that handle's descriptor
/// readable (the Linux evtchn driver's rule).
public protocol XenEventChannelLibrary: AnyObject {
    /// `xenevtchn_fd`: readable while a bound port has fired.
    var fileDescriptor: Int32 { get }
    /// `xenevtchn_bind_unbound_port`: a new local port `remote` may bind to.
    func bindUnboundPort(remote: DomainID) throws(XenErrno) -> UInt32
    /// `xenevtchn_bind_interdomain`: the local end of `remote`'s unbound port.
    func bindInterdomain(remote: DomainID, remotePort: UInt32) throws(XenErrno) -> UInt32
    /// `xenevtchn_notify`.
    func notify(_ port: UInt32) throws(XenErrno)
    /// `xenevtchn_pending`: the next port that fired, `nil` when none.
    func pending() throws(XenErrno) -> UInt32?
    /// `xenevtchn_unmask`.
    func unmask(_ port: UInt32) throws(XenErrno)
    /// `xenevtchn_unbind`.
    func unbind(_ port: UInt32) throws(XenErrno)
}
