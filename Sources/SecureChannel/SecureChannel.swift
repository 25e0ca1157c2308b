import Altp2m
import ChannelCrypto
import Foundation

/// An authenticated, encrypted channel to an agent in another domain, over
/// memory that only the two channel views can reach.
///
/// ```swift
/// var replayGuard = DescriptorReplayGuard()  // kept for the domain's lifetime
/// let channel = try SecureChannel.open(channel: "orders", descriptor: sealed, agentKey: myKey,
///                                      hostKey: pinnedHostKey, platform: platform,
///                                      replayGuard: &replayGuard)
/// try channel.send(Array("ping".utf8))
/// let reply = try channel.receive(timeout: .seconds(1))
/// try channel.close()
/// ```
///
/// The synchronous operations are the data path: with `.spin` they allocate
/// nothing, take no lock and make no system call per message (`send(_:)` with
/// an `UnsafeRawBufferPointer`, `receive(into:)`, `trySend`, `tryReceive`,
/// `withSendBuffer`). A channel is used by one thread at a time;
/// ``messages`` receives on a thread of its own for `for try await` loops.
///
/// On a one-way channel (``isOneWay``) the initiator's end only sends and
/// the responder's end only receives: a send on the reader throws
/// ``ChannelError/receiveOnly``, a receive on the writer
/// ``ChannelError/sendOnly``.
public final class SecureChannel {
    /// The opened descriptor (its pre-shared key bytes are zeroed).
    public let descriptor: ChannelDescriptor
    /// The session underneath.
    public let endpoint: ChannelEndpoint

    private let platform: GuestPlatform
    private let window: UnsafeMutableRawPointer
    /// This process's end of the notification port (`openNotifications`).
    private let notificationPort: UInt32
    private var closed = false
    /// Messages a `messages` iteration received but did not hand out (it was
    /// cancelled, left or paused): every receive returns these first, in order.
    private var undelivered: [[UInt8]] = []
    private var undeliveredHead = 0
    /// The `messages` iteration that may hold the channel, if any.
    var activeIteration: MessageIteration?

    private init(descriptor: ChannelDescriptor, endpoint: ChannelEndpoint, platform: GuestPlatform,
                 window: UnsafeMutableRawPointer, notificationPort: UInt32) {
        self.descriptor = descriptor
        self.endpoint = endpoint
        self.platform = platform
        self.window = window
        self.notificationPort = notificationPort
    }

    deinit {
        platform.closeNotifications(port: notificationPort)
        platform.unmapWindow(window, pageCount: Int(descriptor.pageCount))
    }

    /// Verifies a sealed descriptor, maps the channel window and runs the
    /// handshake with the peer; returns once both ends are authenticated.
    ///
    /// - Parameters:
    ///   - name: the channel the caller means to open (the name it was given,
    ///     or the key the envelope is stored under); a descriptor the host
    ///     signed for another name is refused, since whoever writes the store
    ///     can copy any envelope under any name.
    ///   - envelope: the `descriptor:` argument, the sealed envelope the host
    ///     published for this agent.
    ///   - agentKey: this agent's X25519 key pair (the host sealed to it).
    ///   - hostKey: the host's Ed25519 public key, pinned by configuration.
    ///   - platform: the simulator guest or the Xen guest this agent runs on.
    ///   - options: wait strategy, rekey interval, limits and the handshake
    ///     timeout (how long to wait for the peer to open its end).
    ///   - replayGuard: descriptors already accepted in this domain; one not
    ///     newer than a recorded one (by channel id or by name) is refused.
    ///     Keep it for the domain's lifetime (``DescriptorReplayGuard``): a
    ///     fresh guard refuses nothing.
    ///   - now: the current time in Unix seconds, against which the
    ///     descriptor's expiry is checked.
    /// - Throws: `ChannelError.descriptorRejected` naming the failed check,
    ///   `.timeout` when the peer does not answer in time, `.authenticationFailed`
    ///   when the peer holds other keys, `.platform` when the window cannot be mapped.
    ///   To tell the descriptor's checks apart by type (a replay from a
    ///   misnamed descriptor from a forgery), open in two steps:
    ///   ``DescriptorOpener/open(_:named:now:replayGuard:)`` throws a
    ///   ``DescriptorError``, then ``open(_:platform:options:)``.
    public static func open(channel name: String,
                            descriptor envelope: [UInt8],
                            agentKey: Curve25519.KeyAgreement.PrivateKey,
                            hostKey: Curve25519.Signing.PublicKey,
                            platform: GuestPlatform,
                            options: ChannelEndpoint.Options = .init(),
                            replayGuard: inout DescriptorReplayGuard,
                            now: UInt64 = UInt64(Date().timeIntervalSince1970)) throws(ChannelError) -> SecureChannel {
        let opened: OpenedDescriptor
        do {
            opened = try DescriptorOpener(hostKey: hostKey, agentKey: agentKey, domain: platform.domain)
                .open(envelope, named: name, now: now, replayGuard: &replayGuard)
        } catch {
            throw .descriptorRejected(error.description)
        }
        return try open(opened, platform: platform, options: options)
    }

    /// Maps the window of a descriptor that passed ``DescriptorOpener``'s
    /// checks and runs the handshake with the peer, with the key pair the
    /// descriptor was opened with.
    ///
    /// The second of two steps, for a caller that keeps its replay guard
    /// somewhere shared (a file other processes of the domain lock too):
    /// it records the descriptor while it holds the guard, lets go, and only
    /// then waits here for the peer, which may take the whole handshake timeout.
    /// - Throws: `.descriptorRejected` when `platform` is not the descriptor's
    ///   domain, otherwise as ``open(channel:descriptor:agentKey:hostKey:platform:options:replayGuard:now:)``.
    public static func open(_ opened: OpenedDescriptor, platform: GuestPlatform,
                            options: ChannelEndpoint.Options = .init()) throws(ChannelError) -> SecureChannel {
        let d = opened.descriptor
        guard d.recipient == platform.domain else { throw .descriptorRejected(DescriptorError.wrongRecipient.description) }
        let window: UnsafeMutableRawPointer
        do {
            window = try platform.mapWindow(view: d.view, firstGFN: d.windowFirstGFN, pageCount: Int(d.pageCount))
        } catch {
            throw .platform("cannot map the channel window: \(error)")
        }
        // This process's end of the notification port, bound before the
        // handshake's first wait.
        let port: UInt32
        do {
            port = try platform.openNotifications(port: d.notificationPort, peer: d.peer,
                                                  isInitiator: d.recipient == d.initiator)
        } catch {
            platform.unmapWindow(window, pageCount: Int(d.pageCount))
            throw .platform("cannot bind the channel's notification port: \(error)")
        }
        let parameters = ChannelEndpoint.Parameters(
            side: opened.side, view: d.view, geometry: opened.geometry,
            mode: d.mode == .isolated ? .isolated : .encrypted,
            suite: d.suite == .aesgcm ? .aesgcm : .chachapoly,
            notificationPort: port, prologue: opened.prologue,
            staticKey: opened.agentKey, peerStaticKey: opened.peerPublicKey, presharedKey: opened.presharedKey,
            generation: d.generation, channelID: d.channelID.bytes)
        do {
            let endpoint = try ChannelEndpoint(platform: platform, window: window, parameters: parameters, options: options)
            return SecureChannel(descriptor: d, endpoint: endpoint, platform: platform, window: window,
                                 notificationPort: port)
        } catch {
            platform.closeNotifications(port: port)
            platform.unmapWindow(window, pageCount: Int(d.pageCount))
            throw error
        }
    }

    /// The channel's name, from the descriptor.
    public var name: String { descriptor.name }
    /// Largest message `send` accepts.
    public var maximumMessageBytes: Int { endpoint.maximumMessageBytes }
    /// Whether data flows one way only (from the initiator to the responder).
    public var isOneWay: Bool { endpoint.isOneWay }
    /// False on the reading end of a one-way channel.
    public var canSend: Bool { endpoint.canSend }
    /// False on the writing end of a one-way channel.
    public var canReceive: Bool { endpoint.canReceive }
    /// What this end has done since it opened: messages and bytes each way,
    /// handshakes and rekeys, protocol violations and authentication
    /// failures, waits, sleeps and wake-ups, and the session keys' age.
    /// Plain counters the data path bumps without allocating; read them on
    /// the thread that uses the channel.
    public var statistics: ChannelStatistics { endpoint.statistics }

    // MARK: Data path

    /// Sends `message`, waiting for room (back-pressure, never a drop).
    /// - Throws: ``ChannelError/receiveOnly`` on the reader of a one-way channel.
    public func send(_ message: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(ChannelError) {
        settleIteration()
        try endpoint.send(message, timeout: timeout)
    }

    /// Sends the bytes of an array.
    public func send(_ message: [UInt8], timeout: Duration? = nil) throws(ChannelError) {
        settleIteration()
        try endpoint.send(message, timeout: timeout)
    }

    /// Sends if there is room now; false means "would block".
    public func trySend(_ message: UnsafeRawBufferPointer) throws(ChannelError) -> Bool {
        settleIteration()
        return try endpoint.trySend(message)
    }

    /// Sends the bytes of an array if there is room now.
    public func trySend(_ message: [UInt8]) throws(ChannelError) -> Bool {
        settleIteration()
        return try endpoint.trySend(message)
    }

    /// Zero-copy send: write the message straight into the ring.
    public func withSendBuffer(capacity: Int, timeout: Duration? = nil,
                               _ body: (UnsafeMutableRawBufferPointer) throws -> Int) throws(ChannelError) {
        settleIteration()
        try endpoint.withSendBuffer(capacity: capacity, timeout: timeout, body)
    }

    /// Receives the next message into `buffer`; returns its length.
    /// - Throws: ``ChannelError/sendOnly`` on the writer of a one-way channel.
    public func receive(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(ChannelError) -> Int {
        settleIteration()
        if undeliveredHead < undelivered.count { return try takeUndelivered(into: buffer) }
        return try endpoint.receive(into: buffer, timeout: timeout)
    }

    /// Receives the next message as an array.
    public func receive(timeout: Duration? = nil) throws(ChannelError) -> [UInt8] {
        settleIteration()
        if let message = takeUndelivered() { return message }
        return try endpoint.receive(timeout: timeout)
    }

    /// Receives a message if one is waiting; nil means "would block".
    public func tryReceive(into buffer: UnsafeMutableRawBufferPointer) throws(ChannelError) -> Int? {
        settleIteration()
        if undeliveredHead < undelivered.count { return try takeUndelivered(into: buffer) }
        return try endpoint.tryReceive(into: buffer)
    }

    /// Zero-copy receive: lends the next message to `body` (in place in the
    /// window in isolated mode, the verified plaintext in encrypted mode).
    public func withNextMessage<R>(timeout: Duration? = nil, _ body: (UnsafeRawBufferPointer) -> R) throws(ChannelError) -> R {
        settleIteration()
        if let message = takeUndelivered() {
            return message.withUnsafeBytes { body($0) }
        }
        return try endpoint.withNextMessage(timeout: timeout, body)
    }

    // MARK: Messages as an AsyncSequence

    /// The arriving messages, for `for try await message in channel.messages`;
    /// ends when the peer closes, throws the ``ChannelError`` otherwise.
    ///
    /// Receives on a dedicated OS thread, only while the loop waits for the
    /// next message (no buffer), so the loop body may use the channel, for
    /// example to send a reply. See ``ChannelMessages`` for cancellation,
    /// back-pressure and what else may touch the channel meanwhile: in
    /// short, never receive from the channel elsewhere while iterating.
    public var messages: ChannelMessages { ChannelMessages(channel: self, bufferLimit: 0) }

    /// The arriving messages, received ahead by a dedicated OS thread into
    /// a buffer of at most `bufferLimit` messages (0: only on demand, as
    /// ``messages``). When the buffer is full the thread waits for the loop,
    /// so a slow consumer holds at most `bufferLimit` messages in memory and
    /// the peer waits for room; nothing is dropped. See ``ChannelMessages``.
    public func messages(bufferLimit: Int) -> ChannelMessages {
        ChannelMessages(channel: self, bufferLimit: bufferLimit)
    }

    /// Before any call on the channel: a `messages` iteration that may be
    /// receiving lets go of the channel first, and its buffered messages
    /// become this channel's undelivered ones. Only a nil check when no
    /// iteration exists (the data path).
    @inline(__always)
    private func settleIteration() {
        if activeIteration != nil { settleIterationSlowly() }
    }

    private func settleIterationSlowly() {
        guard let iteration = activeIteration else { return }
        let (messages, over) = iteration.pauseAndTakeBuffer()
        appendUndelivered(messages)
        if over { activeIteration = nil }
    }

    /// Forgets `iteration` (once its thread let go of the channel), keeping
    /// what it had buffered.
    func detach(_ iteration: MessageIteration) {
        let (messages, _) = iteration.pauseAndTakeBuffer()
        appendUndelivered(messages)
        if activeIteration === iteration { activeIteration = nil }
    }

    private func appendUndelivered(_ messages: [[UInt8]]) {
        guard !messages.isEmpty else { return }
        if undeliveredHead == undelivered.count {
            undelivered.removeAll(keepingCapacity: true)
            undeliveredHead = 0
        }
        undelivered += messages
    }

    /// The oldest undelivered message, if any.
    func takeUndelivered() -> [UInt8]? {
        guard undeliveredHead < undelivered.count else { return nil }
        let message = undelivered[undeliveredHead]
        undelivered[undeliveredHead] = []
        undeliveredHead += 1
        if undeliveredHead == undelivered.count {
            undelivered.removeAll(keepingCapacity: true)
            undeliveredHead = 0
        }
        return message
    }

    private func takeUndelivered(into buffer: UnsafeMutableRawBufferPointer) throws(ChannelError) -> Int {
        let message = undelivered[undeliveredHead]
        // Too small: the message stays first in line, as with the ring.
        guard buffer.count >= message.count else { throw .bufferTooSmall(needed: message.count) }
        message.withUnsafeBytes { if $0.count > 0 { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        _ = takeUndelivered()
        return message.count
    }

    // MARK: Closing

    /// Half-close: nothing more will be sent; every message sent before is
    /// delivered (the call waits until the peer consumed it) or this throws.
    /// - Throws: ``ChannelError/receiveOnly`` on the reader of a one-way
    ///   channel, which has no sending direction (use ``close(timeout:)``).
    public func closeSending(timeout: Duration? = .seconds(5)) throws(ChannelError) {
        settleIteration()
        try endpoint.closeSending(timeout: timeout)
    }

    /// Closes the sending direction (flushing) and stops using the channel.
    /// A `messages` iteration still running is stopped first. On the reader
    /// of a one-way channel this only stops reading: it writes nothing, and
    /// the writer cannot tell.
    public func close(timeout: Duration? = .seconds(5)) throws(ChannelError) {
        if closed { return }
        closed = true
        if let iteration = activeIteration {
            iteration.requestStop()
            settleIteration()
        }
        try endpoint.close(timeout: timeout)
    }

    // MARK: Byte streams

    /// A byte-stream view for data larger than one message: `write` splits,
    /// `read` reassembles, order and content preserved.
    public func byteStream() -> ChannelByteStream {
        ChannelByteStream(channel: self)
    }
}

/// Byte-stream adapter over a channel (like a socket's read/write).
public final class ChannelByteStream {
    private let channel: SecureChannel
    private var pending: [UInt8] = []
    private var pendingOffset = 0
    private var ended = false

    init(channel: SecureChannel) {
        self.channel = channel
    }

    /// Writes all of `bytes`, in messages as large as the channel allows.
    public func write(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(ChannelError) {
        let chunk = channel.maximumMessageBytes
        var offset = 0
        repeat {
            let n = min(chunk, bytes.count - offset)
            try channel.send(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]), timeout: timeout)
            offset += n
        } while offset < bytes.count
    }

    /// Writes the bytes of an array.
    public func write(_ bytes: [UInt8], timeout: Duration? = nil) throws(ChannelError) {
        let result: Result<Void, ChannelError> = bytes.withUnsafeBytes { b in
            Result { () throws(ChannelError) in try write(b, timeout: timeout) }
        }
        try result.get()
    }

    /// Reads up to `buffer.count` bytes; returns 0 at the end of the stream
    /// (the peer closed).
    public func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(ChannelError) -> Int {
        if buffer.count == 0 { return 0 }
        while pendingOffset == pending.count {
            if ended { return 0 }
            do {
                pending = try channel.receive(timeout: timeout)
                pendingOffset = 0
            } catch .peerClosed {
                ended = true
                return 0
            }
        }
        let n = min(buffer.count, pending.count - pendingOffset)
        pending.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + pendingOffset, byteCount: n) }
        pendingOffset += n
        return n
    }

    /// Ends the stream (half-close) after everything written was delivered.
    public func finish(timeout: Duration? = .seconds(5)) throws(ChannelError) {
        try channel.closeSending(timeout: timeout)
    }
}
