#if canImport(Glibc)
import Glibc
#endif

/// One forwarded connection of a ``Multiplexer``: its local descriptors,
/// both directions' credit, and the bytes from the peer not yet written
/// (at most one window: the peer may send no more than it was granted).
final class MuxConnection {
    /// `opening`: OPEN sent, OPENED awaited (listening side);
    /// `connecting`: the local connect under way (connecting side, see
    /// ``PendingConnect``), OPENED not yet sent; `open`: both ways.
    enum State { case opening, connecting, open }

    let id: UInt32
    var inFd: Int32
    var outFd: Int32
    /// While `connecting`: the connect under way (it owns its socket).
    var pending: PendingConnect?
    /// Sockets are half-closed with shutdown; standard output is closed.
    let isSocket: Bool
    var state: State
    /// Bytes this side may still send (granted by the peer).
    var sendCredit: Int
    /// Bytes the peer may still send (granted by this side).
    var receiveCredit: Int
    /// Written to the local socket but not yet granted back.
    var pendingGrant = 0
    var localEOF = false      // read returned 0
    var finSent = false
    var peerFin = false
    var shutDone = false
    var needOpened = false    // connecting side: OPENED still to send
    var needOpen = false      // listening side: OPEN still to send
    let inbound: UnsafeMutableRawBufferPointer
    var head = 0, tail = 0

    init(id: UInt32, inFd: Int32, outFd: Int32, isSocket: Bool, state: State, window: Int, peerWindow: Int) {
        self.id = id; self.inFd = inFd; self.outFd = outFd; self.isSocket = isSocket; self.state = state
        sendCredit = peerWindow
        receiveCredit = window
        inbound = .allocate(byteCount: window, alignment: 16)
    }

    deinit { inbound.deallocate() }

    var buffered: Int { tail - head }

    /// Both directions closed and everything written.
    var finished: Bool { finSent && peerFin && buffered == 0 && shutDone }

    /// Keeps the peer's bytes (within the credit the caller checked).
    func store(_ bytes: UnsafeRawBufferPointer) {
        if tail + bytes.count > inbound.count {
            // Within one window in all: moving the rest to the front makes room.
            if buffered > 0 { memmove(inbound.baseAddress!, inbound.baseAddress! + head, buffered) }
            tail = buffered; head = 0
        }
        (inbound.baseAddress! + tail).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        tail += bytes.count
    }

    /// Writes what it can; the count written, or nil on an error (errno).
    func flush() -> Int? {
        guard buffered > 0 else { return 0 }
        let n = isSocket ? send(outFd, inbound.baseAddress! + head, buffered, Int32(MSG_NOSIGNAL))
                         : write(outFd, inbound.baseAddress! + head, buffered)
        if n < 0 { return errno == EAGAIN || errno == EINTR ? 0 : nil }
        head += n
        if head == tail { head = 0; tail = 0 }
        pendingGrant += n
        return n
    }

    /// The peer's FIN: half-close the local side once its bytes are written.
    func shutIfDone() -> Bool {
        guard peerFin, buffered == 0, !shutDone else { return false }
        if isSocket { _ = shutdown(outFd, Int32(SHUT_WR)) } else { Glibc.close(outFd) }
        shutDone = true
        return true
    }

    /// Closes the descriptors; `abort` resets a socket (SO_LINGER 0).
    func close(abort: Bool) {
        // A connect under way: its PendingConnect owns (and closes) the socket.
        guard state != .connecting else { pending = nil; return }
        if abort && isSocket {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(inFd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
        if isSocket { Glibc.close(inFd) } else {
            Glibc.close(inFd)
            if !shutDone { Glibc.close(outFd) }
        }
    }
}
