import AgentServices
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// What the ``Multiplexer`` sends: each turn fills one channel message with
/// frames built from the connections' state (the order per connection is
/// OPEN/OPENED, CREDIT, DATA, FIN, so a FIN follows all data before it),
/// reading each socket straight into the message, round robin.
extension Multiplexer {
    private var room: Int { out.count - outLength }

    private func append(_ type: MuxFrameType, _ id: UInt32, _ payload: [UInt8]) -> Bool {
        guard room >= MuxCodec.headerBytes + payload.count else { return false }
        MuxCodec.writeHeader(type, id: id, length: payload.count, out, outLength)
        outLength += MuxCodec.headerBytes
        if !payload.isEmpty {
            (out.baseAddress! + outLength).copyMemory(from: payload, byteCount: payload.count)
            outLength += payload.count
        }
        return true
    }

    func build() {
        if !helloSent {
            helloSent = append(.hello, 0, MuxCodec.helloPayload(listening: listening, window: UInt32(Self.window)))
        }
        guard helloReceived else { return }
        while let first = control.first, append(first.0, first.1, first.2) { control.removeFirst() }
        guard !live.isEmpty else { return }
        // OPEN and OPENED first. OPEN in id order (live is): the peer checks
        // that ids only grow. OPENED whenever its connect completed (the
        // peer takes those in any order).
        for c in live {
            if c.needOpen { guard append(.open, c.id, []) else { return }; c.needOpen = false }
            if c.needOpened { guard append(.opened, c.id, []) else { return }; c.needOpened = false }
        }
        rotate = (rotate + 1) % live.count
        for k in 0..<live.count {
            let c = live[(rotate + k) % live.count]
            if c.pendingGrant >= Self.window / 4 || (c.pendingGrant > 0 && c.receiveCredit == 0) {
                var grant = [UInt8](repeating: 0, count: 4)
                grant.withUnsafeMutableBytes { MuxCodec.writeU32(UInt32(c.pendingGrant), $0, 0) }
                guard append(.credit, c.id, grant) else { return }
                c.receiveCredit += c.pendingGrant
                c.pendingGrant = 0
            }
            if c.state == .open, !c.localEOF, c.sendCredit > 0, room > MuxCodec.headerBytes {
                let want = min(c.sendCredit, room - MuxCodec.headerBytes, 64 * 1024)
                let n = read(c.inFd, out.baseAddress! + outLength + MuxCodec.headerBytes, want)
                if n > 0 {
                    MuxCodec.writeHeader(.data, id: c.id, length: n, out, outLength)
                    outLength += MuxCodec.headerBytes + n
                    c.sendCredit -= n
                } else if n == 0 {
                    c.localEOF = true
                } else if errno != EAGAIN && errno != EINTR {
                    let text = UnixSockets.errorText()
                    resetLater(c, "reading the local socket: \(text)")
                    continue
                }
            }
            if c.localEOF, !c.finSent {
                guard append(.fin, c.id, []) else { return }
                c.finSent = true
            }
        }
    }

    private func resetLater(_ c: MuxConnection, _ reason: String) {
        log.info("connection \(c.id) reset: \(reason)")
        control.append((.reset, c.id, Array(reason.utf8.prefix(MuxCodec.maximumReasonBytes))))
        c.close(abort: true)
        live.removeAll { $0 === c }
    }

    /// Nothing moved: a short poll on the sockets, then a short channel wait.
    func idle(milliseconds: Int32) throws {
        var fds: [pollfd] = []
        for c in live {
            if let pending = c.pending {
                if pending.awaitsWritable { fds.append(pollfd(fd: pending.fd, events: Int16(POLLOUT), revents: 0)) }
                continue
            }
            let wantsRead = c.state == .open && !c.localEOF && c.sendCredit > 0 && outLength == 0
            if c.inFd == c.outFd {
                let events = Int16((wantsRead ? POLLIN : 0) | (c.buffered > 0 ? POLLOUT : 0))
                if events != 0 { fds.append(pollfd(fd: c.inFd, events: events, revents: 0)) }
            } else {
                if wantsRead { fds.append(pollfd(fd: c.inFd, events: Int16(POLLIN), revents: 0)) }
                if c.buffered > 0 { fds.append(pollfd(fd: c.outFd, events: Int16(POLLOUT), revents: 0)) }
            }
        }
        if let listener, helloReceived { fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0)) }
        if !fds.isEmpty, poll(&fds, nfds_t(fds.count), milliseconds) > 0 { return }
        if outLength > 0 {
            if try sendWaiting(Int(milliseconds)) { outLength = 0 }
        } else if let n = try receiveWaiting(Int(milliseconds)) {
            try handle(UnsafeRawBufferPointer(rebasing: incoming[0..<n]))
        }
    }

    private func sendWaiting(_ milliseconds: Int) throws(ChannelError) -> Bool {
        do {
            try ch.send(UnsafeRawBufferPointer(rebasing: out[0..<outLength]), timeout: .milliseconds(milliseconds))
            return true
        } catch .timeout {
            return false
        }
    }

    private func receiveWaiting(_ milliseconds: Int) throws(ChannelError) -> Int? {
        do {
            return try ch.receive(into: incoming, timeout: .milliseconds(milliseconds))
        } catch .timeout {
            return nil
        }
    }

    /// A stop signal: every connection is reset, the frames saying so are
    /// sent (briefly), the channel closed.
    func stop() -> Outcome {
        for c in live { resetLater(c, "the forwarder is stopping") }
        for _ in 0..<4 where outLength > 0 || !control.isEmpty {
            if outLength == 0 { build() }
            guard (try? ch.send(UnsafeRawBufferPointer(rebasing: out[0..<outLength]), timeout: .milliseconds(100))) != nil else { break }
            outLength = 0
        }
        try? ch.close(timeout: .milliseconds(500))
        return .stopped
    }

    func channelFailure(_ what: String, _ error: ChannelError) -> AgentFailure {
        if case .peerDied(let why) = error {
            return .failure("peerDied: the peer on channel \(channelName) died while \(what) (\(why)); its connections are cut")
        }
        return .failure("\(what) on channel \(channelName): \(error)")
    }

    func protocolFailure(_ error: MuxProtocolError) -> AgentFailure {
        endAll("protocol error")
        try? ch.close(timeout: .milliseconds(200))
        return .failure("protocol error on channel \(channelName): \(error.description); the session is ended")
    }
}
