import Altp2m
import CPlatform
import ChannelCrypto
import Synchronization

// Receiving: the public receive calls and the one place a frame is taken
// out of the ring (copied to private memory, checked, then decrypted).
extension ChannelEndpoint {
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
                    counters.messagesReceived &+= 1
                    counters.bytesReceived &+= UInt64(header.length)
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
    func checkDeadline(_ limit: UInt64, afterControlFrames count: inout Int) throws(ChannelError) {
        count += 1
        if count % Self.controlFramesPerCall == 0, cplatform_monotonic_ns() >= limit { throw .timeout }
    }

    /// Refuses receiving on the writer of a one-way channel, and on a reader
    /// that closed its end.
    @inline(__always)
    func checkCanReceive() throws(ChannelError) {
        guard consumer != nil else { throw .sendOnly }
        if receiveClosed { throw .closed }
    }

    func deliverPending(into buffer: UnsafeMutableRawBufferPointer) throws(ChannelError) -> Int {
        let n = pendingLength
        guard buffer.count >= n else { throw .bufferTooSmall(needed: n) }
        if n > 0 { buffer.baseAddress!.copyMemory(from: scratch.baseAddress!, byteCount: n) }
        pendingLength = -1
        return n
    }

    func receiveFrame(deadline: UInt64) throws(ChannelError) -> (FrameHeader, Int)? {
        while true {
            if let frame = try receiveFrameNow() { return frame }
            try waitForPeer(forSpace: false, deadline: deadline)
        }
    }

    /// Takes one frame out of the ring into `scratch`, checks its sequence,
    /// and decrypts it in place. Returns the header and plaintext length.
    /// With `output`, an encrypted data frame whose plaintext fits is
    /// decrypted straight into it (saving a copy) and `delivered` is true.
    func receiveFrameNow(output: UnsafeMutableRawBufferPointer? = nil) throws(ChannelError) -> (FrameHeader, Int)? {
        try receiveFrameNow(output: output, delivered: nil)
    }

    /// With `only`, the frame is taken only if its header (the one private
    /// copy) passes; otherwise it stays in the ring and the result is nil.
    func receiveFrameNow(output: UnsafeMutableRawBufferPointer?, delivered: UnsafeMutablePointer<Bool>?,
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
            counters.rekeys &+= 1
        case .data:
            receivedSinceRekey &+= 1
            counters.messagesReceived &+= 1
            counters.bytesReceived &+= UInt64(length)
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

    func fail<T>(_ error: ChannelError) throws(ChannelError) -> T {
        failure = error
        throw error
    }
}
