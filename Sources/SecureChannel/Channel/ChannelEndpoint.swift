import Altp2m
import CPlatform
import ChannelCrypto
import Synchronization

/// One side of an open channel: the rings of a mapped window, the Noise
/// session, and the synchronous send/receive operations everything else is
/// built on.
///
/// Every ring operation is bracketed by `enterView(channelView)` and
/// `enterView(0)`, so the window is reachable only for the moment of the
/// operation. On the data path (`trySend`, `tryReceive`, and their waiting
/// forms with `.spin`) nothing is allocated, no lock is taken and no system
/// call is made.
///
/// A one-way channel (``RingGeometry/isOneWay``) has a single ring: the
/// initiator is its writer and can only send, the responder its reader and
/// can only receive. The reader writes nothing into the window but its
/// consumer index (no state line, no close flag, no liveness counter), so
/// the handshake is the one-way Noise pattern `Kpsk0` and nothing ever
/// answers the writer. Receiving on the writer end throws
/// ``ChannelError/sendOnly``, sending on the reader end ``ChannelError/receiveOnly``.
///
/// An endpoint is used by one thread at a time; it is not `Sendable`.
public final class ChannelEndpoint {
    /// Settings that do not come from the descriptor.
    public struct Options: Sendable {
        /// How to wait for the peer.
        public var wait: WaitStrategy
        /// Send a `rekey` frame and switch keys (Noise `Rekey()`) after this
        /// many messages in one direction.
        public var rekeyInterval: UInt64
        /// The initiator starts a fresh in-band handshake (new ephemeral
        /// keys: forward secrecy) after this many messages under one handshake...
        public var rehandshakeAfterMessages: UInt64
        /// ...or once the session keys are this old, whichever comes first.
        public var rehandshakeAfter: Duration
        /// Hard limits: a side refuses to send under keys this old (or after
        /// `rehandshakeAfterMessages` plus 2^20 messages), which only
        /// happens when the peer never completes a fresh handshake.
        public var rejectAfter: Duration
        /// How long `open` waits for the peer's handshake.
        public var handshakeTimeout: Duration
        /// When set, a side waiting for its peer reports `peerDied` if the
        /// peer's liveness counter does not move for this long. The peer
        /// moves it whenever it waits on the channel, so enable this only
        /// between agents that call into the channel at least this often.
        public var livenessTimeout: Duration?

        public init(wait: WaitStrategy = .adaptive, rekeyInterval: UInt64 = 1 << 20,
                    rehandshakeAfterMessages: UInt64 = 1 << 32, rehandshakeAfter: Duration = .seconds(120),
                    rejectAfter: Duration = .seconds(180), handshakeTimeout: Duration = .seconds(10),
                    livenessTimeout: Duration? = nil) {
            self.wait = wait
            self.rekeyInterval = rekeyInterval
            self.rehandshakeAfterMessages = rehandshakeAfterMessages
            self.rehandshakeAfter = rehandshakeAfter
            self.rejectAfter = rejectAfter
            self.handshakeTimeout = handshakeTimeout
            self.livenessTimeout = livenessTimeout
        }
    }

    /// What the two ends agreed on out of band (the descriptor).
    public struct Parameters {
        public var side: ChannelSide
        public var view: ViewID
        public var geometry: RingGeometry
        public var mode: ChannelMode
        public var suite: ChannelSuite
        public var notificationPort: UInt32
        /// Bound into the handshake as the Noise prologue: both ends must
        /// compute the same bytes (channel id and the shared descriptor fields).
        public var prologue: [UInt8]
        public var staticKey: Curve25519.KeyAgreement.PrivateKey
        public var peerStaticKey: Curve25519.KeyAgreement.PublicKey
        public var presharedKey: SymmetricKey

        public init(side: ChannelSide, view: ViewID, geometry: RingGeometry, mode: ChannelMode,
                    suite: ChannelSuite, notificationPort: UInt32, prologue: [UInt8],
                    staticKey: Curve25519.KeyAgreement.PrivateKey,
                    peerStaticKey: Curve25519.KeyAgreement.PublicKey, presharedKey: SymmetricKey) {
            self.side = side
            self.view = view
            self.geometry = geometry
            self.mode = mode
            self.suite = suite
            self.notificationPort = notificationPort
            self.prologue = prologue
            self.staticKey = staticKey
            self.peerStaticKey = peerStaticKey
            self.presharedKey = presharedKey
        }
    }

    /// Flags of `handshake` frames after the first handshake (all encrypted
    /// under the current session keys, so they are authenticated and ordered).
    enum HandshakeFlag {
        /// The initiator's key confirmation (its first transport frame).
        static let confirmation: UInt8 = 1
        /// Re-handshake, initiator to responder: Noise message 1.
        static let rehandshakeRequest: UInt8 = 2
        /// Re-handshake, responder to initiator: Noise message 2; the
        /// responder sends under the new key from the next frame on.
        static let rehandshakeReply: UInt8 = 3
        /// The initiator sends under the new key from the next frame on.
        static let rehandshakeSwitch: UInt8 = 4
        /// One-way channels: a fresh `Kpsk0` handshake message from the
        /// writer, which sends under the new key from the next frame on (the
        /// reader cannot answer, and a one-message pattern needs no answer).
        static let oneWayRehandshake: UInt8 = 5
    }

    public let side: ChannelSide
    public let mode: ChannelMode
    public let geometry: RingGeometry
    public let options: Options
    /// Whether the channel carries data one way only (from the initiator).
    public let isOneWay: Bool
    /// False on the reading end of a one-way channel.
    public var canSend: Bool { producer != nil }
    /// False on the writing end of a one-way channel.
    public var canReceive: Bool { consumer != nil }
    /// The Noise handshake hash: identical on both ends, unique per session.
    public private(set) var handshakeHash: [UInt8] = []

    private let platform: GuestPlatform
    private let view: ViewID
    private let window: UnsafeMutableRawPointer
    private let control: ControlPage
    /// The ring this end writes; nil on the reader of a one-way channel.
    private let producer: RingProducer?
    /// The ring this end reads; nil on the writer of a one-way channel.
    private let consumer: RingConsumer?
    private let port: UInt32
    /// Private copy of each received frame (copy-then-verify).
    private let scratch: UnsafeMutableRawBufferPointer
    /// Private memory where every encrypted frame is sealed before it is
    /// copied into the ring (seal-then-copy), and where an encrypted
    /// zero-copy send lets the caller write its plaintext. The AEAD reads
    /// the ciphertext back to compute the tag, so sealing in the window
    /// would let anyone who can write there (the peer, or code that reached
    /// the view) change bytes the tag then authenticates.
    private let sealScratch: UnsafeMutableRawBufferPointer
    private var sendCipher: CipherState?
    private var receiveCipher: CipherState?
    /// Plaintext sequence numbers in isolated mode (the cipher nonce otherwise).
    private var isolatedSendSequence: UInt64 = 0
    private var isolatedReceiveSequence: UInt64 = 0
    private var sentSinceRekey: UInt64 = 0
    private var receivedSinceRekey: UInt64 = 0
    /// A rekey frame is due and not yet out (the ring was full): it goes
    /// before the next data frame.
    private var rekeyOwed = false
    /// Responder, during the first handshake: the initiator's one key
    /// confirmation is still expected. Any other confirmation is a violation.
    private var awaitingConfirmation = false
    private var messagesSent: UInt64 = 0
    private var establishedAt: UInt64 = 0
    private let rehandshakeAfterNanoseconds: UInt64
    private let rejectAfterNanoseconds: UInt64
    /// When this side first sent with the fresh handshake due (for session
    /// number `session`): the start of the renewal's grace.
    private var renewalDue: (session: Int, since: UInt64)?
    /// What the handshakes bind (static keys, PSK, prologue), for re-handshakes.
    private let parameters: Parameters
    /// Initiator: a re-handshake whose request is sent and whose reply is awaited.
    private var rehandshake: HandshakeState?
    /// Initiator: the new sending key, used once the switch frame is out.
    private var nextSendCipher: CipherState?
    /// Responder: the reply to send, and the new keys that go with it.
    private var pendingReply: (message: [UInt8], keys: HandshakeResult)?
    /// Responder: the new receiving key, used once the switch frame arrives.
    private var nextReceiveCipher: CipherState?
    /// Handshakes completed on this channel (1 after open).
    public private(set) var handshakeCount = 0
    /// Liveness: the last value seen of the peer's counter and when it moved.
    private var peerLiveness: UInt64 = 0
    private var peerLivenessChangedAt: UInt64 = 0
    private var ownLiveness: UInt64 = 0
    private var lastLivenessBump: UInt64 = 0
    /// A received message that did not fit the caller's buffer, kept in
    /// `scratch` until a larger buffer asks for it.
    private var pendingLength = -1
    private var sendClosed = false
    private var peerClosed = false
    /// The reader of a one-way channel closed its end: it stopped reading.
    private var receiveClosed = false
    private var failure: ChannelError?
    /// Set from another thread to make an interruptible receive
    /// (``receiveMessage(interruptible:)``) give up: how a `messages`
    /// iteration stops its receiving thread without closing the channel.
    let receiveInterrupt = Atomic<Bool>(false)

    /// Largest message `send` accepts.
    public var maximumMessageBytes: Int {
        geometry.maximumPayloadBytes - (mode == .encrypted ? CipherState.tagByteCount : 0)
    }

    /// Opens one side of a channel over an already mapped window and runs
    /// the handshake; returns once the session is authenticated and keyed.
    ///
    /// On a one-way channel the writer sends its handshake message and
    /// returns at once: it is keyed, but nothing can tell it that the reader
    /// exists or holds the right keys (the reader detects a wrong key or PSK
    /// when it reads the message, and then stops consuming). The reader
    /// returns once the writer's message has authenticated it.
    ///
    /// - Throws: `ChannelError.handshakeFailed`, `.authenticationFailed`
    ///   (wrong keys or PSK on either side), `.timeout`, `.peerDied`,
    ///   `.protocolViolation`, `.platform`.
    public convenience init(platform: GuestPlatform, window: UnsafeMutableRawPointer, parameters: Parameters,
                            options: Options = Options()) throws(ChannelError) {
        try self.init(platform: platform, window: window, parameters: parameters, options: options, keys: nil)
    }

    /// Sets the endpoint up; runs the handshake over the ring unless `keys`
    /// are given. Only tests pass keys (to build many sessions quickly
    /// from one thread); the parameter is internal.
    init(platform: GuestPlatform, window: UnsafeMutableRawPointer, parameters: Parameters,
         options: Options, keys: HandshakeResult?) throws(ChannelError) {
        self.platform = platform
        self.window = window
        self.view = parameters.view
        self.side = parameters.side
        self.mode = parameters.mode
        self.geometry = parameters.geometry
        self.options = options
        self.port = parameters.notificationPort
        self.control = ControlPage(base: window)
        // One-way: ring 0 is the only ring; the initiator writes it and the
        // responder reads it, exactly as in a two-way channel.
        self.isOneWay = geometry.isOneWay
        let writes = !geometry.isOneWay || side == .initiator
        // The rings start from the published indices: read them inside the
        // channel view, like every access to the window (under mprotect
        // enforcement a read outside it faults).
        guard platform.enterView(parameters.view) else {
            throw .platform("VMFUNC into channel view \(parameters.view.rawValue) was refused (#UD): the view is not visible or VMFUNC is not enabled on this vCPU")
        }
        // The indices are the peer's to write too, also before this side
        // opens: a bad one ends the open with a violation naming it.
        do throws(RingViolation) {
            self.producer = writes ? try RingProducer(window: window, geometry: geometry, ring: side.sendRing) : nil
            self.consumer = !geometry.isOneWay || side == .responder
                ? try RingConsumer(window: window, geometry: geometry, ring: side.receiveRing) : nil
        } catch {
            _ = platform.enterView(.hostOrView0)
            throw .protocolViolation(error.reason)
        }
        _ = platform.enterView(.hostOrView0)
        self.scratch = .allocate(byteCount: geometry.maximumPayloadBytes, alignment: 16)
        self.sealScratch = .allocate(byteCount: geometry.maximumPayloadBytes, alignment: 16)
        self.rehandshakeAfterNanoseconds = Self.nanoseconds(options.rehandshakeAfter)
        self.rejectAfterNanoseconds = Self.nanoseconds(options.rejectAfter)
        self.parameters = parameters

        try withChannelView { () throws(ChannelError) in
            if let problem = control.validateHeader(against: geometry) {
                throw .descriptorRejected(problem)
            }
        }
        if let keys {
            sendCipher = producer != nil ? keys.sending : nil
            receiveCipher = consumer != nil ? keys.receiving : nil
            handshakeHash = keys.handshakeHash
            establishedAt = Self.keyClock()
            handshakeCount = 1
        } else {
            try handshake(parameters)
        }
    }

    deinit {
        secureZero(scratch)
        scratch.deallocate()
        secureZero(sealScratch)
        sealScratch.deallocate()
    }

    // MARK: Handshake

    /// The Noise protocol of every handshake on this channel: `KKpsk2`, or
    /// `Kpsk0` on a one-way channel, whose reader may not answer.
    static func noiseProtocol(_ p: Parameters) -> NoiseProtocol {
        NoiseProtocol(pattern: p.geometry.isOneWay ? .kpsk0 : .kkpsk2,
                      cipher: p.suite == .aesgcm ? .aesGCM : .chaChaPoly, hash: .blake2b)
    }

    private func handshake(_ p: Parameters) throws(ChannelError) {
        let noise = Self.noiseProtocol(p)
        let deadline = cplatform_monotonic_ns() + Self.nanoseconds(options.handshakeTimeout)
        let state: HandshakeState
        do {
            state = try HandshakeState(noise, role: side == .initiator ? .initiator : .responder,
                                       prologue: p.prologue, staticKey: p.staticKey,
                                       remoteStaticKey: p.peerStaticKey, presharedKeys: [p.presharedKey])
        } catch {
            throw .handshakeFailed("cannot start \(noise.name): \(error)")
        }
        if isOneWay {
            try oneWayHandshake(state, deadline: deadline)
            return
        }
        do {
            if side == .initiator {
                try sendHandshakeFrame(state.writeMessage(), flags: 0, deadline: deadline)
                let reply = try receiveHandshakeFrame(deadline: deadline)
                _ = try state.readMessage(reply)
            } else {
                let first = try receiveHandshakeFrame(deadline: deadline)
                _ = try state.readMessage(first)
                try sendHandshakeFrame(state.writeMessage(), flags: 0, deadline: deadline)
            }
            let result = try state.finish()
            sendCipher = result.sending
            receiveCipher = result.receiving
            handshakeHash = result.handshakeHash
        } catch {
            throw Self.handshakeError(error)
        }
        // Key confirmation: the responder sends no data until it has seen
        // the initiator's first transport frame, which proves the initiator
        // derived the same keys.
        if side == .initiator {
            try sendFrame(UnsafeRawBufferPointer(start: nil, count: 0), type: .handshake,
                          flags: HandshakeFlag.confirmation, deadline: deadline)
        } else {
            awaitingConfirmation = true
            guard let (header, _) = try receiveFrame(deadline: deadline),
                  header.type == .handshake, header.flags == HandshakeFlag.confirmation
            else { throw .protocolViolation("expected the initiator's key confirmation") }
        }
        establishedAt = Self.keyClock()
        handshakeCount = 1
    }

    /// The one-way handshake: `Kpsk0`'s single message, from the writer.
    /// There is no key confirmation (the reader may not write); the
    /// reader's first successful decryption of a frame is its confirmation,
    /// and the writer never gets one.
    private func oneWayHandshake(_ state: HandshakeState, deadline: UInt64) throws(ChannelError) {
        do {
            if side == .initiator {
                try sendHandshakeFrame(state.writeMessage(), flags: 0, deadline: deadline)
            } else {
                _ = try state.readMessage(try receiveHandshakeFrame(deadline: deadline))
            }
            let result = try state.finish()
            if side == .initiator { sendCipher = result.sending } else { receiveCipher = result.receiving }
            handshakeHash = result.handshakeHash
        } catch {
            throw Self.handshakeError(error)
        }
        establishedAt = Self.keyClock()
        handshakeCount = 1
    }

    private func sendHandshakeFrame(_ message: [UInt8], flags: UInt8, deadline: UInt64) throws(ChannelError) {
        guard message.count <= geometry.maximumPayloadBytes else {
            throw .handshakeFailed("handshake message of \(message.count) bytes does not fit the ring")
        }
        while true {
            let sent = try withChannelView { () throws(ChannelError) -> Bool in
                guard let slot = try ringCall({ () throws(RingViolation) in try producer!.reserve(payloadBytes: message.count) }) else { return false }
                message.withUnsafeBytes { if $0.count > 0 { slot.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
                producer!.commit(FrameHeader(length: UInt32(message.count), type: .handshake, flags: flags, sequence: 0))
                return true
            }
            if sent { wakePeerIfWaiting(dataWaiting: true); return }
            try waitForPeer(forSpace: true, deadline: deadline)
        }
    }

    private func receiveHandshakeFrame(deadline: UInt64) throws(ChannelError) -> [UInt8] {
        while true {
            let frame = try withChannelView { () throws(ChannelError) -> FrameHeader? in
                try ringCall { () throws(RingViolation) in try consumer!.receive(into: scratch) }
            }
            if let frame {
                wakePeerIfWaiting(dataWaiting: false)
                guard frame.type == .handshake, frame.sequence == 0, frame.flags == 0 else {
                    throw .protocolViolation("expected a handshake frame, got \(frame.type) with sequence \(frame.sequence)")
                }
                return Array(UnsafeRawBufferPointer(rebasing: scratch[0..<Int(frame.length)]))
            }
            try waitForPeer(forSpace: false, deadline: deadline)
        }
    }

    // MARK: Sending

    /// Sends `message` if the ring has room now; returns false when it is
    /// full (nothing was sent). Never waits: a control frame this side owes
    /// first (a rekey, a step of a fresh handshake) that does not fit either
    /// is sent on a later call. Allocates nothing.
    public func trySend(_ message: UnsafeRawBufferPointer) throws(ChannelError) -> Bool {
        var never: WaitDeadline? = nil
        try checkCanSend(message.count, wait: &never)
        return try sendFrameNow(message, type: .data, flags: 0)
    }

    /// Sends the bytes of an array if the ring has room now.
    public func trySend(_ message: [UInt8]) throws(ChannelError) -> Bool {
        let result: Result<Bool, ChannelError> = message.withUnsafeBytes { b in
            Result { () throws(ChannelError) -> Bool in try trySend(b) }
        }
        return try result.get()
    }

    /// Sends `message`, waiting for room with the channel's wait strategy.
    /// Every wait of the call, for the message and for any control frame
    /// owed before it, ends at `timeout` (nil waits as long as it takes).
    public func send(_ message: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(ChannelError) {
        // The clock is read only when something has to wait.
        var limit: WaitDeadline? = WaitDeadline(timeout: timeout)
        try checkCanSend(message.count, wait: &limit)
        if try sendFrameNow(message, type: .data, flags: 0) { return }
        try sendFrame(message, type: .data, flags: 0, deadline: &limit!)
    }

    /// Sends the bytes of an array.
    public func send(_ message: [UInt8], timeout: Duration? = nil) throws(ChannelError) {
        let result: Result<Void, ChannelError> = message.withUnsafeBytes { b in
            Result { () throws(ChannelError) in try send(b, timeout: timeout) }
        }
        try result.get()
    }

    /// Zero-copy send: lets `body` write a message of up to `capacity`
    /// bytes and sends the number of bytes `body` returns.
    ///
    /// In isolated mode `body` writes straight into the ring (the channel
    /// view is entered for the duration). In encrypted mode it writes into
    /// this endpoint's private sealing buffer, which is sealed in place and
    /// then copied into the ring: plaintext never reaches the window, also
    /// when `body` throws or returns a bad length (the buffer is zeroed).
    ///
    /// `body` must not keep the pointer, and must not call the channel.
    /// Waits for room like `send`.
    /// - Throws: ``ChannelError/invalidArgument(_:)`` for a negative
    ///   capacity, ``ChannelError/messageTooLarge(limit:)`` when `capacity`
    ///   exceeds ``maximumMessageBytes`` or `body` returns more than it.
    public func withSendBuffer(capacity: Int, timeout: Duration? = nil,
                               _ body: (UnsafeMutableRawBufferPointer) throws -> Int) throws(ChannelError) {
        guard capacity >= 0 else {
            throw .invalidArgument("withSendBuffer needs a capacity of 0 or more bytes, not \(capacity)")
        }
        var limit: WaitDeadline? = WaitDeadline(timeout: timeout)
        try checkCanSend(capacity, wait: &limit)
        if mode == .encrypted {
            try sendFromSealBuffer(capacity: capacity, deadline: &limit!, body)
            return
        }
        while true {
            var wake = false
            let sent = try withChannelView { () throws(ChannelError) -> Bool in
                guard let slot = try ringCall({ () throws(RingViolation) in try producer!.reserve(payloadBytes: capacity) }) else {
                    return false
                }
                let length: Int
                do {
                    length = try body(UnsafeMutableRawBufferPointer(start: slot, count: capacity))
                } catch {
                    throw .platform("the send buffer's writer failed: \(error); nothing was sent")
                }
                guard (0...capacity).contains(length) else {
                    throw .messageTooLarge(limit: capacity)
                }
                producer!.commit(FrameHeader(length: UInt32(length), type: .data, sequence: isolatedSendSequence))
                isolatedSendSequence &+= 1
                wake = !isOneWay && peerIsWaitingInView(dataWaiting: true)
                return true
            }
            if sent {
                if isOneWay { wakeOneWayReader() } else if wake { notifyPeer(dataWaiting: true) }
                messagesSent &+= 1
                sentSinceRekey &+= 1
                return
            }
            try waitForPeer(forSpace: true, deadline: &limit!)
        }
    }

    /// The encrypted zero-copy send: `body` writes into private memory,
    /// which is sealed in place and copied into the ring by `sendFrameNow`.
    private func sendFromSealBuffer(capacity: Int, deadline: inout WaitDeadline,
                                    _ body: (UnsafeMutableRawBufferPointer) throws -> Int) throws(ChannelError) {
        // A rekey owed from an earlier send would be sealed in this same
        // buffer, over the caller's message: send it first.
        while rekeyOwed {
            if try !sendRekeyNow() { try waitForPeer(forSpace: true, deadline: &deadline) }
        }
        let buffer = UnsafeMutableRawBufferPointer(rebasing: sealScratch[0..<capacity])
        var sealedBytes = 0
        // Whatever plaintext is left (all of it when nothing was sent; the
        // bytes past the message otherwise) is zeroed on every way out.
        defer {
            if sealedBytes < capacity {
                secureZero(UnsafeMutableRawBufferPointer(rebasing: sealScratch[sealedBytes..<capacity]))
            }
        }
        let length: Int
        do {
            length = try body(buffer)
        } catch {
            throw .platform("the send buffer's writer failed: \(error); nothing was sent")
        }
        guard (0...capacity).contains(length) else {
            throw .messageTooLarge(limit: capacity)
        }
        let plaintext = UnsafeRawBufferPointer(rebasing: sealScratch[0..<length])
        if try !sendFrameNow(plaintext, type: .data, flags: 0) {
            try sendFrame(plaintext, type: .data, flags: 0, deadline: &deadline)
        }
        sealedBytes = length + CipherState.tagByteCount
    }

    /// Closes this end: on an end that sends, ``closeSending(timeout:)``
    /// (flushing); on the reader of a one-way channel, it just stops
    /// reading (later receives throw ``ChannelError/closed``) and writes
    /// nothing: the writer cannot learn of it, and its own close then waits
    /// for the flush until its timeout.
    public func close(timeout: Duration? = .seconds(5)) throws(ChannelError) {
        guard producer != nil else {
            receiveClosed = true
            return
        }
        // Say first that this side will read nothing more, so a peer that
        // waits for room (or flushes its own close) stops waiting instead of
        // running into its timeout.
        receiveClosed = true
        if failure == nil {
            try withChannelView { () throws(ChannelError) in
                _ = control.u32(at: sideOffset(side) + ControlPage.SideField.closed).pointee
                    .bitwiseOr(ControlPage.ClosedBits.stoppedReading, ordering: .sequentiallyConsistent)
            }
        }
        try closeSending(timeout: timeout)
    }

    /// Closes this side's sending direction: every message sent before is
    /// delivered (the call waits until the peer consumed it) or an error says
    /// it could not be. Receiving continues until the peer closes.
    /// - Throws: ``ChannelError/receiveOnly`` on the reader of a one-way
    ///   channel (use ``close(timeout:)``), `.timeout` when the peer did not
    ///   consume everything in time.
    public func closeSending(timeout: Duration? = .seconds(5)) throws(ChannelError) {
        guard producer != nil else { throw .receiveOnly }
        if sendClosed { return }
        if let failure { throw failure }
        let limit = deadline(timeout)
        let closeFrameAt = producer!.publishedIndex
        try sendFrame(UnsafeRawBufferPointer(start: nil, count: 0), type: .close, flags: 0, deadline: limit)
        sendClosed = true
        try withChannelView { () throws(ChannelError) in
            _ = control.u32(at: sideOffset(side) + ControlPage.SideField.closed).pointee
                .bitwiseOr(ControlPage.ClosedBits.sendingClosed, ordering: .sequentiallyConsistent)
        }
        wakePeerIfWaiting(dataWaiting: true)
        // Flush: wait until the peer consumed every frame before the close
        // (the close frame itself carries no message: the peer finds it, or
        // the closed flag, whenever it reads next).
        while true {
            let delivered = try withChannelView { () throws(ChannelError) -> Bool in
                try ringCall { () throws(RingViolation) in try producer!.consumed(through: closeFrameAt) }
            }
            if delivered { return }
            do {
                try waitForPeer(forSpace: true, deadline: limit, allowPeerClosed: true)
            } catch .peerClosed {
                // The peer closed its end; that is only a failure if it left
                // messages unread (it may have read them all, close frame
                // included, just before closing).
                let delivered = try withChannelView { () throws(ChannelError) -> Bool in
                    try ringCall { () throws(RingViolation) in try producer!.consumed(through: closeFrameAt) }
                }
                if delivered { return }
                throw .peerClosed
            }
        }
    }

    /// Checks a send of `count` bytes may go ahead and sends the control
    /// frames this side owes first. `wait` is the caller's deadline, or nil
    /// for a call that never waits (a control frame that does not fit then
    /// waits for the next call).
    private func checkCanSend(_ count: Int, wait: inout WaitDeadline?) throws(ChannelError) {
        guard producer != nil else { throw .receiveOnly }
        if let failure { throw failure }
        if sendClosed { throw .closed }
        guard count <= maximumMessageBytes else { throw .messageTooLarge(limit: maximumMessageBytes) }
        if isOneWay {
            // The writer renews the keys on its own, so it does that before
            // any limit could refuse it.
            try advanceOneWayRehandshake(wait: &wait)
        }
        let now = Self.keyClock()
        let age = now &- establishedAt
        if keysExpired(age: age, now: now) || messagesSent >= Self.hardMessageLimit(options) {
            throw .keyLimitReached("the session keys are older than \(options.rejectAfter) or carried \(messagesSent) messages and the peer did not complete a fresh handshake")
        }
        try advanceRehandshake(age: age, wait: &wait)
    }

    /// Messages one session's keys may carry at most: the renewal point
    /// plus 2^20 of grace (`UInt64.max`, never, when that overflows).
    static func hardMessageLimit(_ options: Options) -> UInt64 {
        saturatingAdd(options.rehandshakeAfterMessages, 1 << 20)
    }

    /// The time limit on the session keys. Keys count as expired once they
    /// are older than `rejectAfter` and the fresh handshake has been due for
    /// longer than the grace `rejectAfter - rehandshakeAfter` *while this side
    /// was sending*: the renewal needs both sides active, so time a channel
    /// spent idle (nothing encrypted under the keys) does not use up the
    /// grace, and the first send after a long pause starts the renewal
    /// instead of failing. A peer that keeps the channel busy but never
    /// completes the handshake still hits the limit after the grace.
    private func keysExpired(age: UInt64, now: UInt64) -> Bool {
        guard age > min(rehandshakeAfterNanoseconds, rejectAfterNanoseconds) else { return false }
        if renewalDue?.session != handshakeCount { renewalDue = (handshakeCount, now) }
        guard age > rejectAfterNanoseconds else { return false }
        let grace = rejectAfterNanoseconds > rehandshakeAfterNanoseconds ? rejectAfterNanoseconds - rehandshakeAfterNanoseconds : 0
        return now &- renewalDue!.since >= grace
    }

    // MARK: Re-handshake (forward secrecy for long-lived channels)

    /// Drives the in-band re-handshake: the initiator starts one when the
    /// keys are old or have carried many messages; either side sends what it
    /// owes (the responder's reply, the initiator's switch) before its next
    /// data frame, so the peer always knows which key a frame uses.
    ///
    /// The exchange, all in `handshake` frames under the current keys:
    /// initiator → request (Noise message 1); responder → reply (message 2),
    /// then sends under the new key; initiator → switch, then sends under
    /// the new key; the responder receives under the new key after the switch.
    private func advanceRehandshake(age ageAtCall: UInt64, wait: inout WaitDeadline?) throws(ChannelError) {
        if isOneWay { return }   // the writer renews in checkCanSend; the reader never sends
        var age = ageAtCall
        if side == .initiator, rehandshake != nil, pendingLength < 0 {
            // A sender that never receives would never see the reply: take it
            // from the head of the ring if it is there (data before it stays
            // for the application). The header is fetched once: the copy
            // that says "reply" is the one the frame is taken by.
            let reply = try receiveFrameNow(output: nil, delivered: nil, only: { header in
                header.type == .handshake && header.flags == HandshakeFlag.rehandshakeReply
            })
            if reply != nil {
                age = Self.keyClock() &- establishedAt   // a new session began
            }
        }
        if side == .initiator {
            if let next = nextSendCipher {
                // The switch must precede any frame under the new key.
                guard try sendControl(UnsafeRawBufferPointer(start: nil, count: 0), flags: HandshakeFlag.rehandshakeSwitch, wait: &wait) else { return }
                sendCipher = next
                nextSendCipher = nil
                sentSinceRekey = 0
                rekeyOwed = false
            } else if rehandshake == nil,
                      age > rehandshakeAfterNanoseconds || messagesSent >= options.rehandshakeAfterMessages {
                let state: HandshakeState
                let message: [UInt8]
                do {
                    state = try HandshakeState(Self.noiseProtocol(parameters), role: .initiator,
                                               prologue: rehandshakePrologue, staticKey: parameters.staticKey,
                                               remoteStaticKey: parameters.peerStaticKey,
                                               presharedKeys: [parameters.presharedKey])
                    message = try state.writeMessage()
                } catch {
                    throw .handshakeFailed("cannot start a fresh handshake: \(error)")
                }
                if try sendControl(message, flags: HandshakeFlag.rehandshakeRequest, wait: &wait) {
                    rehandshake = state
                }
            }
        } else if let reply = pendingReply {
            guard try sendControl(reply.message, flags: HandshakeFlag.rehandshakeReply, wait: &wait) else { return }
            pendingReply = nil
            sendCipher = reply.keys.sending
            nextReceiveCipher = reply.keys.receiving
            sentSinceRekey = 0
            rekeyOwed = false
            completeSession(hash: reply.keys.handshakeHash)
        }
    }

    /// One-way channels: the writer starts a fresh `Kpsk0` handshake (a new
    /// ephemeral key) when the keys are old or have carried many messages.
    /// Its single message goes out in a `handshake` frame (flags 5)
    /// encrypted under the current key, and the writer sends under the new
    /// key from the next frame on; the reader switches after that frame.
    /// Nothing is owed back, so the exchange completes in one frame and the
    /// writer never runs into the hard limits.
    private func advanceOneWayRehandshake(wait: inout WaitDeadline?) throws(ChannelError) {
        let age = Self.keyClock() &- establishedAt
        guard age > rehandshakeAfterNanoseconds || messagesSent >= options.rehandshakeAfterMessages else { return }
        let message: [UInt8]
        let keys: HandshakeResult
        do {
            let state = try HandshakeState(Self.noiseProtocol(parameters), role: .initiator,
                                           prologue: rehandshakePrologue, staticKey: parameters.staticKey,
                                           remoteStaticKey: parameters.peerStaticKey,
                                           presharedKeys: [parameters.presharedKey])
            message = try state.writeMessage()
            keys = try state.finish()
        } catch {
            throw .handshakeFailed("cannot start a fresh handshake: \(error)")
        }
        guard try sendControl(message, flags: HandshakeFlag.oneWayRehandshake, wait: &wait) else { return }
        sendCipher = keys.sending
        sentSinceRekey = 0
        rekeyOwed = false
        completeSession(hash: keys.handshakeHash)
    }

    /// The prologue of re-handshakes: the channel's, chained to the previous
    /// session's handshake hash so a re-handshake cannot be moved to another
    /// session.
    private var rehandshakePrologue: [UInt8] {
        parameters.prologue + Array("rehandshake".utf8) + handshakeHash
    }

    private func completeSession(hash: [UInt8]) {
        handshakeHash = hash
        handshakeCount += 1
        establishedAt = Self.keyClock()
        messagesSent = 0
    }

    /// Sends one encrypted handshake-type frame, waiting for room until
    /// `wait`'s deadline; with no deadline, false when the ring is full.
    ///
    /// Leaving a control frame for a later call is always safe: each one
    /// switches a key only once it is out, so data sent meanwhile still
    /// uses the key the peer expects.
    private func sendControl(_ payload: UnsafeRawBufferPointer, flags: UInt8,
                             wait: inout WaitDeadline?) throws(ChannelError) -> Bool {
        if try sendFrameNow(payload, type: .handshake, flags: flags) { return true }
        guard wait != nil else { return false }
        try sendFrame(payload, type: .handshake, flags: flags, deadline: &wait!)
        return true
    }

    private func sendControl(_ message: [UInt8], flags: UInt8, wait: inout WaitDeadline?) throws(ChannelError) -> Bool {
        // (The deadline goes in and out of the closure by value.)
        var deadline = wait
        let result: Result<Bool, ChannelError> = message.withUnsafeBytes { b in
            Result { () throws(ChannelError) -> Bool in try sendControl(b, flags: flags, wait: &deadline) }
        }
        wait = deadline
        return try result.get()
    }

    /// Handles a re-handshake frame from the peer (already decrypted in `scratch`).
    private func receiveRehandshake(flags: UInt8, length: Int) throws(ChannelError) {
        let message = Array(UnsafeRawBufferPointer(rebasing: scratch[0..<length]))
        do {
            // On a one-way channel only the reader receives, and the writer's
            // fresh handshake is the only exchange (the two-way ones would
            // need the reader to answer).
            if isOneWay, flags != HandshakeFlag.oneWayRehandshake {
                throw ChannelError.protocolViolation("unexpected handshake frame (flags \(flags)) on a one-way channel")
            }
            switch (side, flags) {
            case (.responder, HandshakeFlag.oneWayRehandshake) where isOneWay:
                let state = try HandshakeState(Self.noiseProtocol(parameters), role: .responder,
                                               prologue: rehandshakePrologue, staticKey: parameters.staticKey,
                                               remoteStaticKey: parameters.peerStaticKey,
                                               presharedKeys: [parameters.presharedKey])
                _ = try state.readMessage(message)
                let keys = try state.finish()
                receiveCipher = keys.receiving
                receivedSinceRekey = 0
                completeSession(hash: keys.handshakeHash)
            case (.responder, HandshakeFlag.rehandshakeRequest):
                guard pendingReply == nil, nextReceiveCipher == nil else {
                    throw ChannelError.protocolViolation("a fresh handshake was requested while one is in progress")
                }
                let state = try HandshakeState(Self.noiseProtocol(parameters), role: .responder,
                                               prologue: rehandshakePrologue, staticKey: parameters.staticKey,
                                               remoteStaticKey: parameters.peerStaticKey,
                                               presharedKeys: [parameters.presharedKey])
                _ = try state.readMessage(message)
                let reply = try state.writeMessage()
                pendingReply = (reply, try state.finish())
                var never: WaitDeadline? = nil
                try advanceRehandshake(age: 0, wait: &never)
            case (.initiator, HandshakeFlag.rehandshakeReply):
                guard let state = rehandshake else {
                    throw ChannelError.protocolViolation("a handshake reply arrived without a request")
                }
                _ = try state.readMessage(message)
                let keys = try state.finish()
                rehandshake = nil
                receiveCipher = keys.receiving
                receivedSinceRekey = 0
                nextSendCipher = keys.sending
                completeSession(hash: keys.handshakeHash)
                var never: WaitDeadline? = nil
                try advanceRehandshake(age: 0, wait: &never)
            case (.responder, HandshakeFlag.rehandshakeSwitch):
                guard let next = nextReceiveCipher, length == 0 else {
                    throw ChannelError.protocolViolation("a key switch arrived without a completed handshake")
                }
                receiveCipher = next
                nextReceiveCipher = nil
                receivedSinceRekey = 0
            default:
                throw ChannelError.protocolViolation("unexpected handshake frame (flags \(flags)) after the handshake")
            }
        } catch {
            failure = Self.handshakeError(error, context: "fresh handshake: ")
            throw failure!
        }
    }

    private func sendFrame(_ payload: UnsafeRawBufferPointer, type: FrameType, flags: UInt8,
                           deadline: UInt64) throws(ChannelError) {
        var fixed = WaitDeadline(absolute: deadline)
        try sendFrame(payload, type: type, flags: flags, deadline: &fixed)
    }

    private func sendFrame(_ payload: UnsafeRawBufferPointer, type: FrameType, flags: UInt8,
                           deadline: inout WaitDeadline) throws(ChannelError) {
        while true {
            if try sendFrameNow(payload, type: type, flags: flags) { return }
            try waitForPeer(forSpace: true, deadline: &deadline)
        }
    }

    /// Writes one frame if it fits now.
    ///
    /// An encrypted frame is sealed into private memory (`sealScratch`) and
    /// the sealed bytes are copied into the ring: the AEAD reads back what
    /// it wrote to compute the tag, so a writer racing in the window could
    /// otherwise alter ciphertext that the tag then vouches for.
    private func sendFrameNow(_ payload: UnsafeRawBufferPointer, type: FrameType, flags: UInt8) throws(ChannelError) -> Bool {
        // A rekey frame owed from an earlier send goes first: the data after
        // it is sealed under the next key.
        if type == .data, rekeyOwed, try !sendRekeyNow() { return false }
        let encrypted = mode == .encrypted || type == .handshake || type == .rekey || type == .close
        let wire = payload.count + (encrypted ? CipherState.tagByteCount : 0)
        // One visit to the view: write the frame, publish it, and see whether
        // the reader sleeps waiting for it.
        var wake = false   // (no tuple result: a generic tuple costs a metadata lookup per call)
        let sent = try withChannelView { () throws(ChannelError) -> Bool in
            guard let slot = try ringCall({ () throws(RingViolation) in try producer!.reserve(payloadBytes: wire) }) else {
                return false
            }
            if encrypted {
                let cipher = sendCipher!
                let header = FrameHeader(length: UInt32(wire), type: type, flags: flags, sequence: cipher.nonce)
                try seal(payload, header: header, with: cipher)
                slot.copyMemory(from: sealScratch.baseAddress!, byteCount: wire)
                producer!.commit(header)
            } else {
                if payload.count > 0 { slot.copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
                producer!.commit(FrameHeader(length: UInt32(wire), type: type, flags: flags, sequence: isolatedSendSequence))
                isolatedSendSequence &+= 1
            }
            wake = !isOneWay && peerIsWaitingInView(dataWaiting: true)
            return true
        }
        guard sent else { return false }
        if isOneWay { wakeOneWayReader() } else if wake { notifyPeer(dataWaiting: true) }
        if type == .data {
            messagesSent &+= 1
            sentSinceRekey &+= 1
            if sentSinceRekey >= options.rekeyInterval, mode == .encrypted {
                // Owed from now on: sent here if it fits, else before the
                // next data frame, by a call that may wait for it.
                rekeyOwed = true
                _ = try sendRekeyNow()
            }
        }
        return true
    }

    /// Seals `payload` with `header` as associated data into `sealScratch`
    /// (in place when `payload` already is there).
    @inline(__always)
    private func seal(_ payload: UnsafeRawBufferPointer, header: FrameHeader, with cipher: CipherState) throws(ChannelError) {
        var aad = (UInt64(0), UInt64(0))
        try withUnsafeMutableBytes(of: &aad) { (a) throws(ChannelError) in
            header.store(to: a.baseAddress!)
            do throws(CryptoError) {
                try cipher.encrypt(plaintext: payload, authenticating: UnsafeRawBufferPointer(a),
                                   into: UnsafeMutableRawBufferPointer(rebasing: sealScratch[0..<Int(header.length)]))
            } catch {
                throw Self.map(error)
            }
        }
    }

    /// Sends the rekey frame this side owes if it fits now, and then
    /// switches its sending key (Noise `Rekey()`): the peer switches when
    /// it reads the frame, so the two always agree on the key of a frame.
    private func sendRekeyNow() throws(ChannelError) -> Bool {
        guard try sendFrameNow(UnsafeRawBufferPointer(start: nil, count: 0), type: .rekey, flags: 0) else { return false }
        do throws(CryptoError) { try sendCipher!.rekey() } catch { throw Self.map(error) }
        sentSinceRekey = 0
        rekeyOwed = false
        return true
    }

    // MARK: Receiving

    /// Copies the next message into `buffer` if one is waiting; returns its
    /// length, or nil when the ring is empty. Allocates nothing.
    /// - Throws: `.peerClosed` once the peer closed and everything it sent
    ///   was received; `.bufferTooSmall` (the message is kept) when `buffer`
    ///   is too small.
    public func tryReceive(into buffer: UnsafeMutableRawBufferPointer) throws(ChannelError) -> Int? {
        try checkCanReceive()
        if pendingLength >= 0 { return try deliverPending(into: buffer) }
        if let failure { throw failure }
        var controlFrames = 0
        while true {
            var delivered = false
            guard let (header, length) = try receiveFrameNow(output: buffer, delivered: &delivered) else {
                if peerClosed { throw .peerClosed }
                // Nothing to read: a poller must still learn that the host
                // tore the channel down (the peer's domain died).
                try withChannelView { () throws(ChannelError) in try checkPeerAlive(allowPeerClosed: true) }
                // An idle moment: the initiator may owe (or start) a fresh handshake.
                if side == .initiator || pendingReply != nil {
                    var never: WaitDeadline? = nil
                    try advanceRehandshake(age: Self.keyClock() &- establishedAt, wait: &never)
                }
                return nil
            }
            switch header.type {
            case .data:
                if delivered { return length }
                pendingLength = length
                return try deliverPending(into: buffer)
            case .close:
                peerClosed = true
                throw .peerClosed
            case .rekey, .handshake, .padding:
                // A peer may send control frames without end; a call that
                // takes only those returns like an empty ring, so the caller
                // (and its deadline) gets control back.
                controlFrames += 1
                if controlFrames >= Self.controlFramesPerCall { return nil }
                continue
            }
        }
    }

    /// Control frames (rekeys, handshake steps) one receive call takes
    /// before it returns to look at its deadline.
    static let controlFramesPerCall = 64

    /// Receives the next message into `buffer`, waiting with the channel's
    /// wait strategy; returns its length.
    public func receive(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(ChannelError) -> Int {
        if let n = try tryReceive(into: buffer) { return n }
        // The clock is read only once the wait has polled for a while.
        var limit = WaitDeadline(timeout: timeout)
        while true {
            try waitForPeer(forSpace: false, deadline: &limit)
            if let n = try tryReceive(into: buffer) { return n }
            // Woken for frames that were not a message (control frames):
            // the deadline counts all the same.
            let now = cplatform_monotonic_ns()
            if now >= limit.resolve(now: now) { throw .timeout }
        }
    }

    /// For `messages`: like `receive(into:)` without a deadline, but returns
    /// nil once ``receiveInterrupt`` is set (a waiting receive notices within
    /// one sleep, at most 10 ms). A message already waiting is still
    /// returned; the flag stays set for the caller to clear.
    func receiveInterruptibly(into buffer: UnsafeMutableRawBufferPointer) throws(ChannelError) -> Int? {
        while true {
            if let n = try tryReceive(into: buffer) { return n }
            if receiveInterrupt.load(ordering: .acquiring) { return nil }
            try waitForPeer(forSpace: false, deadline: .max, interruptible: true)
        }
    }

    /// Receives the next message as a new array.
    public func receive(timeout: Duration? = nil) throws(ChannelError) -> [UInt8] {
        try checkCanReceive()
        let limit = deadline(timeout)
        var controlFrames = 0
        while true {
            if pendingLength < 0 {
                if let failure { throw failure }
                guard let (header, length) = try receiveFrameNow() else {
                    if peerClosed { throw .peerClosed }
                    try waitForPeer(forSpace: false, deadline: limit)
                    continue
                }
                if header.type == .close { peerClosed = true; throw .peerClosed }
                guard header.type == .data else {
                    try checkDeadline(limit, afterControlFrames: &controlFrames)
                    continue
                }
                pendingLength = length
            }
            var out = [UInt8](repeating: 0, count: pendingLength)
            let result: Result<Int, ChannelError> = out.withUnsafeMutableBytes { b in
                Result { () throws(ChannelError) -> Int in try deliverPending(into: b) }
            }
            _ = try result.get()
            return out
        }
    }

    /// Zero-copy receive: waits for the next message and lends it to `body`
    /// without copying it into a buffer of the caller's.
    ///
    /// In isolated mode the bytes are read in place in the channel window
    /// (the channel view is entered for the duration of `body`), and the
    /// peer can change them while `body` runs: isolated mode trusts view
    /// isolation alone. In encrypted mode `body` sees the verified plaintext
    /// in the channel's private buffer. Either way the pointer is valid only
    /// inside `body`, which must not call the channel.
    public func withNextMessage<R>(timeout: Duration? = nil, _ body: (UnsafeRawBufferPointer) -> R) throws(ChannelError) -> R {
        try checkCanReceive()
        let limit = deadline(timeout)
        var controlFrames = 0
        while true {
            if pendingLength >= 0 {
                let n = pendingLength
                pendingLength = -1
                return body(UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
            }
            if let failure { throw failure }
            if mode == .isolated {
                let inPlace = try withChannelView { () throws(ChannelError) -> R? in
                    guard let (header, payload) = try ringCall({ () throws(RingViolation) in try consumer!.peekFrame() }),
                          header.type == .data
                    else { return nil }
                    guard header.sequence == isolatedReceiveSequence else {
                        return try fail(.protocolViolation("frame sequence \(header.sequence), expected \(isolatedReceiveSequence)"))
                    }
                    let result = body(UnsafeRawBufferPointer(start: payload, count: Int(header.length)))
                    consumer!.release(header)
                    isolatedReceiveSequence &+= 1
                    receivedSinceRekey &+= 1
                    return result
                }
                if let inPlace {
                    wakePeerIfWaiting(dataWaiting: false)
                    return inPlace
                }
            }
            // Encrypted data, control frames, or an empty ring.
            guard let (header, length) = try receiveFrameNow() else {
                if peerClosed { throw .peerClosed }
                try waitForPeer(forSpace: false, deadline: limit)
                continue
            }
            switch header.type {
            case .data:
                return body(UnsafeRawBufferPointer(rebasing: scratch[0..<length]))
            case .close:
                peerClosed = true
                throw .peerClosed
            case .rekey, .handshake, .padding:
                try checkDeadline(limit, afterControlFrames: &controlFrames)
                continue
            }
        }
    }

    /// Counts a control frame a receive took; every
    /// ``controlFramesPerCall`` of them, checks the receive's deadline, so
    /// a peer streaming control frames cannot hold a receive past it.
    private func checkDeadline(_ limit: UInt64, afterControlFrames count: inout Int) throws(ChannelError) {
        count += 1
        if count % Self.controlFramesPerCall == 0, cplatform_monotonic_ns() >= limit { throw .timeout }
    }

    /// Refuses receiving on the writer of a one-way channel, and on a reader
    /// that closed its end.
    @inline(__always)
    private func checkCanReceive() throws(ChannelError) {
        guard consumer != nil else { throw .sendOnly }
        if receiveClosed { throw .closed }
    }

    private func deliverPending(into buffer: UnsafeMutableRawBufferPointer) throws(ChannelError) -> Int {
        let n = pendingLength
        guard buffer.count >= n else { throw .bufferTooSmall(needed: n) }
        if n > 0 { buffer.baseAddress!.copyMemory(from: scratch.baseAddress!, byteCount: n) }
        pendingLength = -1
        return n
    }

    private func receiveFrame(deadline: UInt64) throws(ChannelError) -> (FrameHeader, Int)? {
        while true {
            if let frame = try receiveFrameNow() { return frame }
            try waitForPeer(forSpace: false, deadline: deadline)
        }
    }

    /// Takes one frame out of the ring into `scratch`, checks its sequence,
    /// and decrypts it in place. Returns the header and plaintext length.
    /// With `output`, an encrypted data frame whose plaintext fits is
    /// decrypted straight into it (saving a copy) and `delivered` is true.
    private func receiveFrameNow(output: UnsafeMutableRawBufferPointer? = nil) throws(ChannelError) -> (FrameHeader, Int)? {
        try receiveFrameNow(output: output, delivered: nil)
    }

    /// With `only`, the frame is taken only if its header (the one private
    /// copy) passes; otherwise it stays in the ring and the result is nil.
    private func receiveFrameNow(output: UnsafeMutableRawBufferPointer?, delivered: UnsafeMutablePointer<Bool>?,
                                 only: ((FrameHeader) -> Bool)? = nil) throws(ChannelError) -> (FrameHeader, Int)? {
        // One visit to the view: take the frame and see whether the writer
        // sleeps waiting for the room just made.
        var wake = false   // (no tuple result: a generic tuple costs a metadata lookup per call)
        // Isolated data that fits goes straight to the caller's buffer: it
        // is private memory, so that one copy is the copy out.
        let direct = mode == .isolated && delivered != nil ? output : nil
        var wentDirect = false
        let frame = try withChannelView { () throws(ChannelError) -> FrameHeader? in
            let frame = try ringCall { () throws(RingViolation) -> FrameHeader? in
                if let only { return try consumer!.receive(into: scratch, ifHeader: only) }
                return try consumer!.receive(into: scratch, dataFitting: direct, wentDirect: &wentDirect)
            }
            wake = frame != nil && peerIsWaitingInView(dataWaiting: false)
            return frame
        }
        guard let header = frame else { return nil }
        if wentDirect { delivered?.pointee = true }
        if wake { notifyPeer(dataWaiting: false) }
        let encrypted = mode == .encrypted || header.type != .data
        let length: Int
        if encrypted {
            let cipher = receiveCipher!
            guard header.sequence == cipher.nonce else {
                return try fail(.protocolViolation("frame sequence \(header.sequence), expected \(cipher.nonce)"))
            }
            guard Int(header.length) >= CipherState.tagByteCount else {
                return try fail(.protocolViolation("encrypted frame of \(header.length) bytes is shorter than its tag"))
            }
            var aad = (UInt64(0), UInt64(0))
            do throws(CryptoError) {
                length = try withUnsafeMutableBytes(of: &aad) { (a) throws(CryptoError) -> Int in
                    header.store(to: a.baseAddress!)
                    let plaintext = Int(header.length) - CipherState.tagByteCount
                    // Straight into the caller's buffer when it is a data frame
                    // that fits: the verified copy is already private.
                    let target = header.type == .data && output != nil && output!.count >= plaintext ? output! : scratch
                    let n = try cipher.decrypt(ciphertext: UnsafeRawBufferPointer(rebasing: scratch[0..<Int(header.length)]),
                                               authenticating: UnsafeRawBufferPointer(a), into: target)
                    if target.baseAddress != scratch.baseAddress { delivered?.pointee = true }
                    return n
                }
            } catch {
                return try fail(Self.map(error))
            }
        } else {
            guard header.sequence == isolatedReceiveSequence else {
                return try fail(.protocolViolation("frame sequence \(header.sequence), expected \(isolatedReceiveSequence)"))
            }
            isolatedReceiveSequence &+= 1
            length = Int(header.length)
        }
        switch header.type {
        case .rekey:
            do throws(CryptoError) { try receiveCipher!.rekey() } catch { return try fail(Self.map(error)) }
            receivedSinceRekey = 0
        case .data:
            receivedSinceRekey &+= 1
        case .handshake:
            if header.flags == HandshakeFlag.confirmation {
                // Exactly one, once: a peer repeating it must not keep a
                // receive busy with frames that are neither data nor news.
                guard awaitingConfirmation, length == 0 else {
                    return try fail(.protocolViolation("unexpected key confirmation after the handshake"))
                }
                awaitingConfirmation = false
            } else {
                try receiveRehandshake(flags: header.flags, length: length)
            }
        case .close, .padding:
            break
        }
        return (header, length)
    }

    private func fail<T>(_ error: ChannelError) throws(ChannelError) -> T {
        failure = error
        throw error
    }

    // MARK: Waiting and waking

    /// Waits until the peer made progress (data arrived, or room was made),
    /// the deadline passed, or the peer went away. With `interruptible`, also
    /// returns once ``receiveInterrupt`` is set (within one sleep, at most
    /// 10 ms); the caller checks the flag.
    private func waitForPeer(forSpace: Bool, deadline: UInt64, allowPeerClosed: Bool = false,
                             interruptible: Bool = false) throws(ChannelError) {
        var fixed = WaitDeadline(absolute: deadline)
        try waitForPeer(forSpace: forSpace, deadline: &fixed, allowPeerClosed: allowPeerClosed, interruptible: interruptible)
    }

    private func waitForPeer(forSpace: Bool, deadline: inout WaitDeadline, allowPeerClosed: Bool = false,
                             interruptible: Bool = false) throws(ChannelError) {
        let spinBudget = options.wait.spinNanoseconds
        // Spinning polls in bursts inside one visit to the channel view (a
        // VMFUNC pair per burst, not per poll); blocking checks once per visit.
        let burst = spinBudget == 0 ? 1 : Self.pollBurst
        // The clock is read at the first checkpoint, not on entry: a wait
        // that ends within the first bursts reads no clock at all.
        var start: UInt64 = spinBudget == 0 ? cplatform_monotonic_ns() : 0
        if start != 0 { peerLivenessChangedAt = start }
        let word = forSpace ? producer!.spaceWord : consumer!.wakeWord
        // Waiting for room: wait for the consumer index to move past the
        // value `reserve` saw (a fresh read could already include the
        // consumer's last move, and then nothing would ever change it again).
        // Waiting for data: the wake word as read (inside the view) before a
        // burst that found the ring empty, so a frame published after that
        // read changes it and the sleep below returns at once.
        var observed = forSpace ? producer!.lastSeenConsumedWord : 0
        var spins: UInt64 = 0
        while true {
            if interruptible, receiveInterrupt.load(ordering: .relaxed) { return }
            // Re-check the condition from inside the view.
            let ready = try withChannelView { () throws(ChannelError) -> Bool in
                try checkPeerAlive(allowPeerClosed: allowPeerClosed, forSpace: forSpace)
                if !forSpace {
                    observed = UnsafeMutableRawPointer(word).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .acquiring)
                }
                for _ in 0..<burst {
                    let progressed = try ringCall { () throws(RingViolation) -> Bool in
                        forSpace ? try producer!.consumerProgressed(since: observed) : try consumer!.hasFrame()
                    }
                    if progressed { return true }
                    cplatform_cpu_relax()
                }
                return false
            }
            if ready { return }
            spins &+= UInt64(burst)
            if spins & 0xFF == 0 || spinBudget == 0 {
                let now = cplatform_monotonic_ns()
                if start == 0 { start = now; peerLivenessChangedAt = now }
                let limit = deadline.resolve(now: now)
                if now >= limit { throw .timeout }
                try tendLiveness(now: now)
                if now &- start >= spinBudget {
                    try sleep(on: word, observed: observed, forSpace: forSpace, deadline: limit)
                    continue
                }
            }
        }
    }

    /// A wait's deadline, fixed against the clock only when the wait first
    /// reads the time: a receive whose message arrives within the first
    /// polls reads no clock at all.
    struct WaitDeadline {
        private var at: UInt64?
        private let after: UInt64

        init(absolute: UInt64) { at = absolute; after = 0 }

        init(timeout: Duration?) {
            if let timeout { at = nil; after = ChannelEndpoint.nanoseconds(timeout) } else { at = .max; after = 0 }
        }

        mutating func resolve(now: UInt64) -> UInt64 {
            if let at { return at }
            let fixed = ChannelEndpoint.saturatingAdd(now, after)
            at = fixed
            return fixed
        }
    }

    /// Polls per visit to the channel view while spinning: long enough that
    /// the VMFUNC pair is a small part of a wait, short enough (about a
    /// microsecond) that the view is held only for the moment of a poll.
    static let pollBurst = 32

    /// While waiting: shows this side is alive (its counter moves at most
    /// once a millisecond) and, when a liveness timeout is set, declares the
    /// peer dead once its counter stood still that long.
    ///
    /// One-way channels: the reader writes no counter, so the writer's view
    /// of the reader's never moves; since a wait for room ends as soon as
    /// the consumer index moves, the timeout then means "the reader consumed
    /// nothing for that long". The reader watches the writer's counter as
    /// usual but moves none of its own.
    private func tendLiveness(now: UInt64) throws(ChannelError) {
        let own = control.u64(at: sideOffset(side) + ControlPage.SideField.liveness)
        let peer = control.u64(at: sideOffset(side.peer) + ControlPage.SideField.liveness)
        let writesState = producer != nil
        let seen = try withChannelView { () throws(ChannelError) -> UInt64 in
            if writesState, now &- lastLivenessBump >= 1_000_000 {
                ownLiveness &+= 1
                own.pointee.store(ownLiveness, ordering: .relaxed)
                lastLivenessBump = now
            }
            return peer.pointee.load(ordering: .relaxed)
        }
        if seen != peerLiveness {
            peerLiveness = seen
            peerLivenessChangedAt = now
        } else if let timeout = options.livenessTimeout, now &- peerLivenessChangedAt > Self.nanoseconds(timeout) {
            failure = .peerDied(isOneWay && side == .initiator
                ? "the reader consumed nothing for \(timeout)"
                : "no sign of life from the peer for \(timeout)")
            throw failure!
        }
    }

    private func sleep(on word: UnsafeMutablePointer<UInt32>, observed: UInt32, forSpace: Bool,
                       deadline: UInt64) throws(ChannelError) {
        if producer == nil {
            try sleepWithoutAnnouncing(on: word, observed: observed, deadline: deadline)
            return
        }
        let bit: UInt32 = forSpace ? 2 : 1
        let flag = control.u32(at: sideOffset(side) + ControlPage.SideField.waiting)
        try withChannelView { () throws(ChannelError) in
            _ = flag.pointee.bitwiseOr(bit, ordering: .sequentiallyConsistent)
        }
        defer {
            _ = try? withChannelView { () throws(ChannelError) in
                _ = flag.pointee.bitwiseAnd(~bit, ordering: .sequentiallyConsistent)
            }
        }
        // Re-check after announcing (the peer may have published just before
        // it could see the flag), then sleep at most 10 ms at a time so close
        // flags and deadlines are noticed even without a wake-up.
        try sleepUnlessChanged(on: word, observed: observed, deadline: deadline)
    }

    /// The reader of a one-way channel may not set its `waiting` flag, so
    /// it sleeps unannounced: the writer wakes it when it had caught up
    /// (see ``wakePeerIfWaiting(dataWaiting:)``), and otherwise it re-checks
    /// after at most 10 ms like every sleeper.
    private func sleepWithoutAnnouncing(on word: UnsafeMutablePointer<UInt32>, observed: UInt32,
                                        deadline: UInt64) throws(ChannelError) {
        // Sequentially consistent, the counterpart of the writer's publish
        // then consumer-index read: either the writer saw this side caught
        // up (and wakes it) or this load sees the new producer index.
        try sleepUnlessChanged(on: word, observed: observed, deadline: deadline)
    }

    /// Reads `word` (sequentially consistent, inside the view) and sleeps on
    /// it for at most 10 ms, or until the deadline, if it still holds `observed`.
    private func sleepUnlessChanged(on word: UnsafeMutablePointer<UInt32>, observed: UInt32,
                                    deadline: UInt64) throws(ChannelError) {
        let current = try withChannelView { () throws(ChannelError) -> UInt32 in
            UnsafeMutableRawPointer(word).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .sequentiallyConsistent)
        }
        guard current == observed else { return }
        let now = cplatform_monotonic_ns()
        let remaining = deadline > now ? deadline - now : 0
        platform.wait(WakeTarget(word: word, port: port), expected: observed,
                      timeoutNanoseconds: min(remaining, 10_000_000))
    }

    private func wakePeerIfWaiting(dataWaiting: Bool) {
        if isOneWay, dataWaiting {
            wakeOneWayReader()
            return
        }
        let waiting = (try? withChannelView { () throws(ChannelError) -> Bool in
            peerIsWaitingInView(dataWaiting: dataWaiting)
        }) ?? false
        if waiting { notifyPeer(dataWaiting: dataWaiting) }
    }

    /// Inside the view, right after publishing: whether the peer announced
    /// it sleeps waiting for data (or for room). The index was published
    /// with a sequentially consistent store, so this load cannot pass it.
    @inline(__always)
    private func peerIsWaitingInView(dataWaiting: Bool) -> Bool {
        let bit: UInt32 = dataWaiting ? 1 : 2
        let flag = control.u32(at: sideOffset(side.peer) + ControlPage.SideField.waiting)
        return flag.pointee.load(ordering: .sequentiallyConsistent) & bit != 0
    }

    private func notifyPeer(dataWaiting: Bool) {
        platform.notify(WakeTarget(word: dataWaiting ? producer!.wakeWord : consumer!.spaceWord, port: port))
    }

    /// The writer of a one-way channel cannot see whether the reader sleeps
    /// (it announces nothing). It may be asleep only if it had consumed
    /// everything published before this frame, so that is when the writer
    /// wakes it. A `.spin` writer never does: it keeps spin mode free of
    /// system calls, and a reader that blocks behind it re-checks every
    /// 10 ms instead.
    private func wakeOneWayReader() {
        if case .spin = options.wait { return }
        let caughtUp = (try? withChannelView { () throws(ChannelError) -> Bool in
            producer!.consumerHadCaughtUp()
        }) ?? false
        if caughtUp {
            platform.notify(WakeTarget(word: producer!.wakeWord, port: port))
        }
    }

    /// Throws when the host tore the channel down, or (waiting for data) the
    /// peer closed its sending side and nothing is left to receive, or
    /// (waiting for room) the peer stopped reading. A peer that only
    /// half-closed still reads, so a wait for room goes on.
    private func checkPeerAlive(allowPeerClosed: Bool, forSpace: Bool = false) throws(ChannelError) {
        let host = control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.closed).pointee.load(ordering: .acquiring)
        if host != 0 {
            let reason = control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.reason).pointee.load(ordering: .acquiring)
            let why = reason == 0 ? "the host revoked the channel" : "the peer's domain died"
            failure = .peerDied(why)
            throw .peerDied(why)
        }
        // The writer of a one-way channel has nothing to receive, and its
        // reader never writes a closed flag.
        if forSpace {
            let closed = control.u32(at: sideOffset(side.peer) + ControlPage.SideField.closed).pointee.load(ordering: .acquiring)
            if closed & ControlPage.ClosedBits.stoppedReading != 0 { throw .peerClosed }
        } else if !allowPeerClosed, let consumer {
            if peerClosed { throw .peerClosed }
            // The flag is not authenticated; the close frame is. A closing
            // peer publishes the frame before the flag, so a reader that sees
            // the flag also sees the frame, and a flag over an empty ring
            // was written by someone else: it must not end the stream as if
            // everything had been sent (a truncation).
            let closed = control.u32(at: sideOffset(side.peer) + ControlPage.SideField.closed).pointee.load(ordering: .acquiring)
            if closed & ControlPage.ClosedBits.sendingClosed != 0, try !ringCall({ () throws(RingViolation) in try consumer.hasFrame() }) {
                failure = .protocolViolation("the peer's closed flag is set but its close frame never arrived")
                throw failure!
            }
        }
    }

    private func sideOffset(_ s: ChannelSide) -> Int {
        s == .initiator ? ControlPage.Offset.initiatorState : ControlPage.Offset.responderState
    }

    // MARK: Helpers

    /// Runs `body` inside the channel view and always returns to view 0.
    @inline(__always)
    private func withChannelView<T>(_ body: () throws(ChannelError) -> T) throws(ChannelError) -> T {
        guard platform.enterView(view) else {
            throw .platform("VMFUNC into channel view \(view.rawValue) was refused (#UD): the view is not visible or VMFUNC is not enabled on this vCPU")
        }
        defer { _ = platform.enterView(.hostOrView0) }
        return try body()
    }

    @inline(__always)
    private func ringCall<T>(_ body: () throws(RingViolation) -> T) throws(ChannelError) -> T {
        do { return try body() } catch {
            failure = .protocolViolation(error.reason)
            throw .protocolViolation(error.reason)
        }
    }

    private func deadline(_ timeout: Duration?) -> UInt64 {
        guard let timeout else { return .max }
        return Self.saturatingAdd(cplatform_monotonic_ns(), Self.nanoseconds(timeout))
    }

    /// The clock of key ages: coarse (a timer tick, a few ms), because the
    /// limits are seconds and it is read on every send.
    @inline(__always)
    static func keyClock() -> UInt64 { cplatform_monotonic_coarse_ns() }

    /// Nanoseconds in `d`: negative durations count as zero, and one
    /// longer than about 584 years as `UInt64.max` (in effect, forever).
    static func nanoseconds(_ d: Duration) -> UInt64 {
        let (s, a) = d.components
        guard s >= 0 else { return 0 }
        let (whole, overflow) = UInt64(s).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        return saturatingAdd(whole, UInt64(max(a, 0) / 1_000_000_000))
    }

    /// `a + b`, or `UInt64.max` where that overflows: limits and deadlines
    /// given as "very large" mean "never", not a value that wrapped.
    @inline(__always)
    static func saturatingAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }

    /// What a failed handshake step tells the caller: a channel error as
    /// it is, a failed decryption as `authenticationFailed`, anything else
    /// as `handshakeFailed` with its text.
    static func handshakeError(_ error: any Error, context: String = "") -> ChannelError {
        switch error {
        case let error as ChannelError: return error
        case CryptoError.authenticationFailure: return .authenticationFailed
        default: return .handshakeFailed(context + "\(error)")
        }
    }

    static func map(_ error: CryptoError) -> ChannelError {
        switch error {
        case .authenticationFailure: return .authenticationFailed
        case .nonceExhausted: return .keyLimitReached("the nonce counter is exhausted")
        default: return .protocolViolation("\(error)")
        }
    }
}
