import Altp2m
import XenInterface
internal import CXenGuest

/// ``XenEventChannelLibrary`` over libxenevtchn (the `/dev/xen/evtchn`
/// driver): a negative return with `errno` becomes a thrown ``XenErrno``.
final class CXenEventChannelLibrary: XenEventChannelLibrary {
    private let handle: OpaquePointer

    /// `xenevtchn_open`.
    init() throws(XenErrno) {
        guard let handle = xenevtchn_open(nil, 0) else { throw currentXenErrno() }
        self.handle = handle
    }

    deinit { xenevtchn_close(handle) }

    var fileDescriptor: Int32 { xenevtchn_fd(handle) }

    private func port(_ result: Int32) throws(XenErrno) -> UInt32 {
        guard result >= 0 else { throw currentXenErrno() }
        return UInt32(result)
    }

    func bindUnboundPort(remote: DomainID) throws(XenErrno) -> UInt32 {
        try port(xenevtchn_bind_unbound_port(handle, UInt32(remote.rawValue)))
    }

    func bindInterdomain(remote: DomainID, remotePort: UInt32) throws(XenErrno) -> UInt32 {
        try port(xenevtchn_bind_interdomain(handle, UInt32(remote.rawValue), remotePort))
    }

    func notify(_ port: UInt32) throws(XenErrno) {
        if xenevtchn_notify(handle, port) < 0 { throw currentXenErrno() }
    }

    func pending() throws(XenErrno) -> UInt32? {
        clearErrno()
        let result = xenevtchn_pending(handle)
        if result >= 0 { return UInt32(result) }
        // The driver's read of an empty ring answers EAGAIN on a
        // non-blocking descriptor: nothing has fired.
        if errnoValue() == 11 /* EAGAIN */ { return nil }
        throw currentXenErrno()
    }

    func unmask(_ port: UInt32) throws(XenErrno) {
        if xenevtchn_unmask(handle, port) < 0 { throw currentXenErrno() }
    }

    func unbind(_ port: UInt32) throws(XenErrno) {
        if xenevtchn_unbind(handle, port) < 0 { throw currentXenErrno() }
    }
}
