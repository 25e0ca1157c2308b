import AgentServices
import Logging
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// Serves any number of local connections over one channel, one after
/// another and at once (docs/PROTOCOL.md, "Forwarding"): the engine of
/// `guest-agent forward --listen/--connect`.
///
/// One thread: non-blocking socket I/O, `trySend`/`tryReceive`, and when
/// nothing moved a short `poll(2)` on every socket that has something to
/// wait for plus a short channel wait, so an idle forwarder does not spin.
/// Each connection has its own credit window, so a local reader that stalls
/// stops only its own connection: frames from the channel are always taken
/// (the peer may send no more than the window) and buffered per connection.
final class Multiplexer {
    enum Outcome { case peerClosed, stopped, finished }

    static let window = 256 * 1024
    static let defaultConnectTimeout = Duration.seconds(10)
    let ch: SecureChannel
    let channelName: String
    let listening: Bool
    let local: ForwardAddress
    let listener: Int32?
    let maxConnections: Int
    /// How long the connecting side waits for a local connect (--connect-timeout).
    let connectTimeout: Duration
    let log: Logger
    let shouldStop: () -> Bool

    var helloSent = false, helloReceived = false
    var peerWindow = 0
    var live: [MuxConnection] = []
    var nextId: UInt32 = 1
    var highestId: UInt32 = 0
    var control: [(MuxFrameType, UInt32, [UInt8])] = []
    let out: UnsafeMutableRawBufferPointer
    var outLength = 0
    let incoming: UnsafeMutableRawBufferPointer
    var rotate = 0
    var stdioStarted = false
    var stdioFailure: String? = nil
    var peak = 0
    var total = 0

    init(channel: SecureChannel, channelName: String, listening: Bool, local: ForwardAddress, listener: Int32?,
         maxConnections: Int, connectTimeout: Duration = Multiplexer.defaultConnectTimeout,
         log: Logger, shouldStop: @escaping () -> Bool) {
        ch = channel; self.channelName = channelName; self.listening = listening; self.local = local
        self.listener = listener; self.maxConnections = maxConnections; self.connectTimeout = connectTimeout
        self.log = log; self.shouldStop = shouldStop
        out = .allocate(byteCount: channel.maximumMessageBytes, alignment: 16)
        incoming = .allocate(byteCount: channel.maximumMessageBytes, alignment: 16)
        if let listener { _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK) }
    }

    deinit { out.deallocate(); incoming.deallocate() }

    /// Runs one session; throws a failure naming the problem when the
    /// channel fails or the peer breaks the protocol (every local
    /// connection is then reset).
    func run() throws(AgentFailure) -> Outcome {
        var idleRounds = 0
        while true {
            if shouldStop() { return stop() }
            var progressed = false
            do {
                progressed = try receiveSome()
            } catch {
                return try ended(by: error, while: "receiving")
            }
            progressed = serviceLocal() || progressed
            if listening, helloReceived { progressed = acceptSome() || progressed }
            if outLength == 0 { build() }
            if outLength > 0 {
                do {
                    if try ch.trySend(UnsafeRawBufferPointer(rebasing: out[0..<outLength])) { outLength = 0; progressed = true }
                } catch {
                    // peerClosed here: the peer stopped reading (a full ring tells trySend so).
                    return try ended(by: error, while: "sending")
                }
            }
            if case .stdio = local, listening, stdioStarted, live.isEmpty, outLength == 0, control.isEmpty {
                try? ch.close(timeout: .milliseconds(500))
                if let stdioFailure { throw .failure(stdioFailure) }
                return .finished
            }
            if progressed { idleRounds = 0; continue }
            idleRounds += 1
            do {
                try idle(milliseconds: idleRounds < 100 ? 2 : 10)
            } catch {
                return try ended(by: error, while: "waiting")
            }
        }
    }

    /// The session's end by `error`: the peer closing it is an outcome;
    /// a failing channel or a protocol violation a failure naming it.
    /// Every local connection is reset either way.
    private func ended(by error: any Error, while what: String) throws(AgentFailure) -> Outcome {
        switch error {
        case ChannelError.peerClosed:
            endAll("the peer closed the channel")
            try? ch.close(timeout: .milliseconds(200))
            return .peerClosed
        case let error as ChannelError:
            endAll("the channel failed")
            throw channelFailure(what, error)
        case let error as MuxProtocolError:
            throw protocolFailure(error)
        default:
            endAll("an unexpected error")
            throw .failure("\(what) on channel \(channelName): \(error)")
        }
    }

    // MARK: Channel -> connections

    func receiveSome() throws -> Bool {
        var any = false
        for _ in 0..<64 {
            guard let n = try ch.tryReceive(into: incoming) else { break }
            try handle(UnsafeRawBufferPointer(rebasing: incoming[0..<n]))
            any = true
        }
        return any
    }

    func handle(_ message: UnsafeRawBufferPointer) throws {
        if !helloReceived {
            let isHello = message.count >= MuxCodec.headerBytes + MuxCodec.helloBytes
                && message[0] == MuxFrameType.hello.rawValue
                && Array(message[MuxCodec.headerBytes..<MuxCodec.headerBytes + MuxCodec.magic.count]) == MuxCodec.magic
            guard isHello else {
                throw MuxProtocolError(description: "the peer does not speak the forwarding protocol: its first message (\(message.count) bytes) is not a HELLO; the other end must be guest-agent forward --listen/--connect, not cat, ping or an echo service")
            }
        }
        try MuxCodec.parse(message) { (frame) throws(MuxProtocolError) in try self.handle(frame) }
    }

    func connection(_ id: UInt32, _ type: MuxFrameType) throws(MuxProtocolError) -> MuxConnection? {
        if let c = live.first(where: { $0.id == id }) { return c }
        // A connection this side ended (RESET) may still get frames the peer
        // sent before it learnt of it: ignored. Ids never used are an error.
        guard id != 0, id <= highestId else {
            throw MuxProtocolError(description: "\(type) frame for unknown connection \(id)")
        }
        return nil
    }

    func handle(_ frame: MuxFrame) throws(MuxProtocolError) {
        let id = frame.id, type = frame.type
        switch type {
        case .hello:
            guard !helloReceived else { throw MuxProtocolError(description: "a second HELLO frame") }
            let p = frame.payload
            guard p[MuxCodec.magic.count] == MuxCodec.version else {
                throw MuxProtocolError(description: "HELLO of forwarding protocol version \(p[MuxCodec.magic.count]); this forwarder speaks version \(MuxCodec.version): run the same guest-agent version on both ends")
            }
            guard (p[MuxCodec.magic.count + 1] == 0) != listening else {
                throw MuxProtocolError(description: "HELLO says the peer also \(listening ? "listens" : "connects"); one end must use --listen and the other --connect (an echo service sends this side's HELLO back)")
            }
            let window = Int(MuxCodec.readU32(p, MuxCodec.magic.count + 2))
            guard window >= 1024, window <= 1 << 24 else {
                throw MuxProtocolError(description: "HELLO grants a window of \(window) bytes; expected 1 KiB...16 MiB")
            }
            peerWindow = window
            helloReceived = true
            if case .stdio = local, listening { startStdio() }
        case .open:
            guard !listening else { throw MuxProtocolError(description: "OPEN frame from the connecting side (connection \(id))") }
            guard id > highestId else {
                throw MuxProtocolError(description: "OPEN frame for connection \(id) reuses an id (the last was \(highestId); ids only grow)")
            }
            highestId = id
            // Refusals wait in `control` while the channel is full: bound them.
            guard control.count < 4 * maxConnections + 64 else {
                throw MuxProtocolError(description: "OPEN frame for connection \(id): the peer opens connections faster than it reads the refusals (\(control.count) waiting)")
            }
            open(id)
        case .opened, .refused:
            guard listening else { throw MuxProtocolError(description: "\(type) frame from the listening side (connection \(id))") }
            guard let c = try connection(id, type) else { return }
            guard c.state == .opening else { throw MuxProtocolError(description: "\(type) frame for connection \(id), which is already open") }
            if type == .opened { c.state = .open; return }
            log.notice("connection \(id) refused by the peer: \(frame.text)")
            if case .stdio = local { stdioFailure = "the peer refused the connection: \(frame.text)" }
            remove(c, abort: true)
        case .data:
            guard let c = try connection(id, type) else { return }
            guard c.state == .open else { throw MuxProtocolError(description: "DATA frame for connection \(id) before it was open") }
            guard !c.peerFin else { throw MuxProtocolError(description: "DATA frame for connection \(id) after its FIN") }
            guard frame.payload.count <= c.receiveCredit else {
                throw MuxProtocolError(description: "DATA frame of \(frame.payload.count) bytes for connection \(id) beyond the granted window (\(c.receiveCredit) bytes left)")
            }
            c.receiveCredit -= frame.payload.count
            c.store(frame.payload)
        case .credit:
            guard let c = try connection(id, type) else { return }
            // Credit is granted back for DATA taken, and no DATA flows before
            // the connection is open.
            guard c.state == .open else { throw MuxProtocolError(description: "CREDIT frame for connection \(id) before it was open") }
            let grant = Int(MuxCodec.readU32(frame.payload, 0))
            // The peer grants back only bytes it took, so this side can never
            // hold more than the window the peer announced in its HELLO.
            guard grant > 0, c.sendCredit + grant <= peerWindow else {
                throw MuxProtocolError(description: "CREDIT frame of \(grant) bytes for connection \(id): the credit would be \(c.sendCredit + grant) bytes, past the \(peerWindow)-byte window the peer announced")
            }
            c.sendCredit += grant
        case .fin:
            guard let c = try connection(id, type) else { return }
            guard !c.peerFin else { throw MuxProtocolError(description: "a second FIN frame for connection \(id)") }
            guard c.state == .open else { throw MuxProtocolError(description: "FIN frame for connection \(id) before it was open") }
            c.peerFin = true
        case .reset:
            guard let c = try connection(id, type) else { return }
            log.info("connection \(id) reset by the peer: \(frame.text)")
            if case .stdio = local, listening { stdioFailure = "the peer reset the connection: \(frame.text)" }
            remove(c, abort: true)
        }
    }

    /// The connecting side's answer to OPEN: connect, then OPENED or REFUSED.
    func open(_ id: UInt32) {
        func refuse(_ reason: String) {
            log.notice("connection \(id) refused: \(reason)")
            control.append((.refused, id, Array(reason.utf8.prefix(MuxCodec.maximumReasonBytes))))
        }
        guard live.count < maxConnections else { return refuse("\(live.count) connections open already (--max-connections)") }
        let c: MuxConnection
        if case .stdio = local {
            guard !stdioStarted else { return refuse("busy: standard input and output carry one connection") }
            stdioStarted = true
            c = stdioConnection(id: id, state: .open)
        } else {
            let pending: PendingConnect
            do { pending = try PendingConnect(local, timeout: connectTimeout) } catch { return refuse(error.description) }
            switch pending.start() {
            case .failed(let reason):
                return refuse(reason)
            case .connected(let fd):
                c = MuxConnection(id: id, inFd: fd, outFd: fd, isSocket: true, state: .open,
                                  window: Self.window, peerWindow: peerWindow)
            case .waiting:
                // OPENED (or REFUSED) once the connect ends: see advanceConnect.
                c = MuxConnection(id: id, inFd: -1, outFd: -1, isSocket: true, state: .connecting,
                                  window: Self.window, peerWindow: peerWindow)
                c.pending = pending
                added(c)
                return
            }
        }
        c.needOpened = true
        added(c)
    }

    /// Moves a connect under way on; true when it ended (OPENED or
    /// REFUSED to send).
    func advanceConnect(_ c: MuxConnection) -> Bool {
        guard let pending = c.pending else { return false }
        switch pending.advance() {
        case .waiting:
            return false
        case .connected(let fd):
            c.inFd = fd; c.outFd = fd
            c.pending = nil
            c.state = .open
            c.needOpened = true
            log.info("connection \(c.id) open (connected to \(local))")
        case .failed(let reason):
            log.notice("connection \(c.id) refused: \(reason)")
            control.append((.refused, c.id, Array(reason.utf8.prefix(MuxCodec.maximumReasonBytes))))
            c.pending = nil
            live.removeAll { $0 === c }
        }
        return true
    }

    func stdioConnection(id: UInt32, state: MuxConnection.State) -> MuxConnection {
        _ = fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK)
        _ = fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK)
        return MuxConnection(id: id, inFd: 0, outFd: 1, isSocket: false, state: state, window: Self.window, peerWindow: peerWindow)
    }

    func startStdio() {
        stdioStarted = true
        let c = stdioConnection(id: nextId, state: .opening)
        highestId = nextId; nextId += 1
        c.needOpen = true
        added(c)
    }

    func added(_ c: MuxConnection) {
        live.append(c)
        total += 1
        peak = max(peak, live.count)
        let what = c.state == .connecting ? "connecting to \(local)" : "open"
        log.info("connection \(c.id) \(what) (\(live.count) at once, at most \(peak) so far)")
    }

    // MARK: Connections -> local sockets

    func serviceLocal() -> Bool {
        var any = false
        for c in live {
            if c.state == .connecting {
                if advanceConnect(c) { any = true }
                continue
            }
            guard let n = c.flush() else {
                reset(c, "writing to the local socket: \(UnixSockets.errorText())")
                any = true
                continue
            }
            if n > 0 { any = true }
            if c.shutIfDone() { any = true }
            if c.finished { remove(c, abort: false); any = true }
        }
        return any
    }

    func acceptSome() -> Bool {
        guard let listener else { return false }
        var any = false
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return any }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            any = true
            guard live.count < maxConnections else {
                log.warning("refused a connection on \(local): \(live.count) connections open already (--max-connections \(maxConnections))")
                close(fd)
                continue
            }
            var one: Int32 = 1
            if case .tcp = local { setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) }
            let c = MuxConnection(id: nextId, inFd: fd, outFd: fd, isSocket: true, state: .opening,
                                  window: Self.window, peerWindow: peerWindow)
            highestId = nextId; nextId += 1
            c.needOpen = true
            added(c)
        }
    }

    func reset(_ c: MuxConnection, _ reason: String) {
        log.info("connection \(c.id) reset: \(reason)")
        control.append((.reset, c.id, Array(reason.utf8.prefix(MuxCodec.maximumReasonBytes))))
        remove(c, abort: true)
    }

    func remove(_ c: MuxConnection, abort: Bool) {
        c.close(abort: abort)
        live.removeAll { $0 === c }
    }

    /// Ends every connection (abortively) when the session ends.
    func endAll(_ why: String) {
        if !live.isEmpty { log.notice("\(why): resetting \(live.count) connection(s)") }
        for c in live { c.close(abort: true) }
        live.removeAll()
    }
}
