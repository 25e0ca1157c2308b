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
/// A one-way channel (``isOneWay``) has a single ring: the
/// initiator is its writer and can only send, the responder its reader and
/// can only receive. The reader writes nothing into the window but its
/// consumer index (no state line, no close flag, no liveness counter), so
/// the handshake is the one-way Noise pattern `Kpsk0` and nothing ever
/// answers the writer. Receiving on the writer end throws
/// ``ChannelError/sendOnly``, sending on the reader end ``ChannelError/receiveOnly``.
///
/// An endpoint is used by one thread at a time; it is not `Sendable`.
///
/// This file holds the type, its state and shared helpers; the operations
/// are split by concern: `+Handshake`, `+Send`, `+Receive`,
/// `+Rehandshake` and `+Wait`.
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
        /// The descriptor's generation: a session ends once the host line
        /// names a newer one (a re-issue), and does not open if it already does.
        public var generation: UInt64
        /// The descriptor's channel id (16 bytes), checked against the one the
        /// host wrote in the window's header; nil skips the check (tests of
        /// windows set up without a host).
        public var channelID: [UInt8]?

        public init(side: ChannelSide, view: ViewID, geometry: RingGeometry, mode: ChannelMode,
                    suite: ChannelSuite, notificationPort: UInt32, prologue: [UInt8],
                    staticKey: Curve25519.KeyAgreement.PrivateKey,
                    peerStaticKey: Curve25519.KeyAgreement.PublicKey, presharedKey: SymmetricKey,
                    generation: UInt64 = 0, channelID: [UInt8]? = nil) {
            self.generation = generation
            self.channelID = channelID
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
    public internal(set) var handshakeHash: [UInt8] = []

    let platform: GuestPlatform
    let view: ViewID
    let window: UnsafeMutableRawPointer
    let control: ControlPage
    /// The ring this end writes; nil on the reader of a one-way channel.
    let producer: RingProducer?
    /// The ring this end reads; nil on the writer of a one-way channel.
    let consumer: RingConsumer?
    let port: UInt32
    /// Private copy of each received frame (copy-then-verify).
    let scratch: UnsafeMutableRawBufferPointer
    /// Private memory where every encrypted frame is sealed before it is
    /// copied into the ring (seal-then-copy), and where an encrypted
    /// zero-copy send lets the caller write its plaintext. The AEAD reads
    /// the ciphertext back to compute the tag, so sealing in the window
    /// would let anyone who can write there (the peer, or code that reached
    /// the view) change bytes the tag then authenticates.
    let sealScratch: UnsafeMutableRawBufferPointer
    var sendCipher: CipherState?
    var receiveCipher: CipherState?
    /// Plaintext sequence numbers in isolated mode (the cipher nonce otherwise).
    var isolatedSendSequence: UInt64 = 0
    var isolatedReceiveSequence: UInt64 = 0
    var sentSinceRekey: UInt64 = 0
    var receivedSinceRekey: UInt64 = 0
    /// A rekey frame is due and not yet out (the ring was full): it goes
    /// before the next data frame.
    var rekeyOwed = false
    /// Responder, during the first handshake: the initiator's one key
    /// confirmation is still expected. Any other confirmation is a violation.
    var awaitingConfirmation = false
    var messagesSent: UInt64 = 0
    var establishedAt: UInt64 = 0
    let rehandshakeAfterNanoseconds: UInt64
    let rejectAfterNanoseconds: UInt64
    /// When this side first sent with the fresh handshake due (for session
    /// number `session`): the start of the renewal's grace.
    var renewalDue: (session: Int, since: UInt64)?
    /// What the handshakes bind (static keys, PSK, prologue), for re-handshakes.
    let parameters: Parameters
    /// Initiator: a re-handshake whose request is sent and whose reply is awaited.
    var rehandshake: HandshakeState?
    /// Initiator: the new sending key, used once the switch frame is out.
    var nextSendCipher: CipherState?
    /// Responder: the reply to send, and the new keys that go with it.
    var pendingReply: (message: [UInt8], keys: HandshakeResult)?
    /// Responder: the new receiving key, used once the switch frame arrives.
    var nextReceiveCipher: CipherState?
    /// Handshakes completed on this channel (1 after open).
    public internal(set) var handshakeCount = 0
    /// Liveness: the last value seen of the peer's counter and when it moved.
    var peerLiveness: UInt64 = 0
    var peerLivenessChangedAt: UInt64 = 0
    var ownLiveness: UInt64 = 0
    var lastLivenessBump: UInt64 = 0
    /// A received message that did not fit the caller's buffer, kept in
    /// `scratch` until a larger buffer asks for it.
    var pendingLength = -1
    var sendClosed = false
    var peerClosed = false
    /// The reader of a one-way channel closed its end: it stopped reading.
    var receiveClosed = false
    var failure: ChannelError? {
        didSet {
            switch failure {
            case .protocolViolation?: counters.protocolViolations &+= 1
            case .authenticationFailed?: counters.authenticationFailures &+= 1
            default: break
            }
        }
    }
    /// What ``statistics`` reports, bumped in place where each thing happens.
    var counters = ChannelStatistics()

    /// This end's counters since it opened (see ``ChannelStatistics``).
    public var statistics: ChannelStatistics {
        var snapshot = counters
        snapshot.handshakes = UInt64(max(handshakeCount, 0))
        let now = Self.keyClock()
        snapshot.nanosecondsSinceHandshake = now > establishedAt ? now - establishedAt : 0
        return snapshot
    }
    /// The host's count of the peer's agent processes that went away, as
    /// read at open: a different value later means the process this session
    /// talks to is gone (the channel itself stays; see ``checkPeerAlive``).
    var peerProcessExits: UInt32 = 0
    /// This side's incarnation, as it published it at open (0 on the reader
    /// of a one-way channel, which publishes none).
    var ownIncarnation: UInt32 = 0
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
    /// The open is a new incarnation of this side (docs/PROTOCOL.md,
    /// "Restarts"): it announces itself in its state line, pairs with the
    /// peer's incarnation and skips what earlier sessions left in the ring.
    ///
    /// - Throws: `ChannelError.handshakeFailed`, `.authenticationFailed`
    ///   (wrong keys or PSK on either side), `.timeout`, `.peerDied`,
    ///   `.peerRestarted` (the peer opened again during the handshake),
    ///   `.descriptorsReissued` (the descriptor is older than the host's
    ///   newest), `.descriptorRejected` (the window holds another channel),
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
            if let id = parameters.channelID, !control.headerNames(channelID: id) {
                throw .descriptorRejected("the window holds another channel than the descriptor names (its channel was destroyed and the window given to a newer one): the descriptor is stale; read the channel's descriptor again")
            }
            try checkGeneration()
            let exits = ControlPage.Offset.hostState + ControlPage.HostField.processExits(of: side.peer)
            peerProcessExits = control.u32(at: exits).pointee.load(ordering: .acquiring)
            if keys == nil { announceIncarnation() }
        }
        if keys == nil { wakePeerForOpen() }
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


    // MARK: Helpers

    /// Runs `body` inside the channel view and always returns to view 0.
    @inline(__always)
    func withChannelView<T>(_ body: () throws(ChannelError) -> T) throws(ChannelError) -> T {
        guard platform.enterView(view) else {
            throw .platform("VMFUNC into channel view \(view.rawValue) was refused (#UD): the view is not visible or VMFUNC is not enabled on this vCPU")
        }
        defer { _ = platform.enterView(.hostOrView0) }
        return try body()
    }

    @inline(__always)
    func ringCall<T>(_ body: () throws(RingViolation) -> T) throws(ChannelError) -> T {
        do { return try body() } catch {
            failure = .protocolViolation(error.reason)
            throw .protocolViolation(error.reason)
        }
    }

    func deadline(_ timeout: Duration?) -> UInt64 {
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
