import Altp2m
import CPlatform
import ChannelCrypto
import Synchronization

// Sending: the public send calls, close, the checks before a send, and the
// one place a frame is written into the ring (sealed in private memory,
// then copied: seal-then-copy).
extension ChannelEndpoint {
    /// Sends `message` if the ring has room now; returns false when it is
    /// full (nothing was sent). Never waits: a control frame this side owes
    /// first (a rekey, a step of a fresh handshake) that does not fit either
    /// is sent on a later call. Allocates nothing.
    ///
    /// - Throws: besides the errors of `send(_:timeout:)`, when the ring
    ///   is full and nobody will ever make room (the peer stopped reading,
    ///   its agent process or domain went away, or it restarted), that,
    ///   as a wait for room in `send` would, so a caller that polls cannot
    ///   go on polling forever.
    public func trySend(_ message: UnsafeRawBufferPointer) throws(ChannelError) -> Bool {
        var never: WaitDeadline? = nil
        try checkCanSend(message.count, wait: &never)
        if try sendFrameNow(message, type: .data, flags: 0) { return true }
        // Full: the checks a wait for room makes, once, without waiting.
        // Only on this path, so a send that fits costs nothing more.
        try withChannelView { () throws(ChannelError) in try checkPeerAlive(allowPeerClosed: true, forSpace: true) }
        return false
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
                counters.bytesSent &+= UInt64(length)
                wake = !isOneWay && peerIsWaitingInView(dataWaiting: true)
                return true
            }
            if sent {
                if isOneWay { wakeOneWayReader() } else if wake { notifyPeer(dataWaiting: true) }
                messagesSent &+= 1
                sentSinceRekey &+= 1
                counters.messagesSent &+= 1
                return
            }
            try waitForPeer(forSpace: true, deadline: &limit!)
        }
    }

    /// The encrypted zero-copy send: `body` writes into private memory,
    /// which is sealed in place and copied into the ring by `sendFrameNow`.
    func sendFromSealBuffer(capacity: Int, deadline: inout WaitDeadline,
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
    func checkCanSend(_ count: Int, wait: inout WaitDeadline?) throws(ChannelError) {
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
    func keysExpired(age: UInt64, now: UInt64) -> Bool {
        guard age > min(rehandshakeAfterNanoseconds, rejectAfterNanoseconds) else { return false }
        if renewalDue?.session != handshakeCount { renewalDue = (handshakeCount, now) }
        guard age > rejectAfterNanoseconds else { return false }
        let grace = rejectAfterNanoseconds > rehandshakeAfterNanoseconds ? rejectAfterNanoseconds - rehandshakeAfterNanoseconds : 0
        return now &- renewalDue!.since >= grace
    }


    func sendFrame(_ payload: UnsafeRawBufferPointer, type: FrameType, flags: UInt8,
                           deadline: UInt64) throws(ChannelError) {
        var fixed = WaitDeadline(absolute: deadline)
        try sendFrame(payload, type: type, flags: flags, deadline: &fixed)
    }

    func sendFrame(_ payload: UnsafeRawBufferPointer, type: FrameType, flags: UInt8,
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
    func sendFrameNow(_ payload: UnsafeRawBufferPointer, type: FrameType, flags: UInt8) throws(ChannelError) -> Bool {
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
            counters.messagesSent &+= 1
            counters.bytesSent &+= UInt64(payload.count)
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
    func seal(_ payload: UnsafeRawBufferPointer, header: FrameHeader, with cipher: CipherState) throws(ChannelError) {
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
    func sendRekeyNow() throws(ChannelError) -> Bool {
        guard try sendFrameNow(UnsafeRawBufferPointer(start: nil, count: 0), type: .rekey, flags: 0) else { return false }
        do throws(CryptoError) { try sendCipher!.rekey() } catch { throw Self.map(error) }
        counters.rekeys &+= 1
        sentSinceRekey = 0
        rekeyOwed = false
        return true
    }
}
