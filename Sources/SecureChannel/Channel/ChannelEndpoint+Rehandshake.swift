import Altp2m
import CPlatform
import ChannelCrypto
import Synchronization

// In-band fresh handshakes (forward secrecy for long-lived channels) and
// the control frames they send.
extension ChannelEndpoint {
    /// Drives the in-band re-handshake: the initiator starts one when the
    /// keys are old or have carried many messages; either side sends what it
    /// owes (the responder's reply, the initiator's switch) before its next
    /// data frame, so the peer always knows which key a frame uses.
    ///
    /// The exchange, all in `handshake` frames under the current keys:
    /// initiator → request (Noise message 1); responder → reply (message 2),
    /// then sends under the new key; initiator → switch, then sends under
    /// the new key; the responder receives under the new key after the switch.
    func advanceRehandshake(age ageAtCall: UInt64, wait: inout WaitDeadline?) throws(ChannelError) {
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
    func advanceOneWayRehandshake(wait: inout WaitDeadline?) throws(ChannelError) {
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
    var rehandshakePrologue: [UInt8] {
        parameters.prologue + Array("rehandshake".utf8) + handshakeHash
    }

    func completeSession(hash: [UInt8]) {
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
    func sendControl(_ payload: UnsafeRawBufferPointer, flags: UInt8,
                             wait: inout WaitDeadline?) throws(ChannelError) -> Bool {
        if try sendFrameNow(payload, type: .handshake, flags: flags) { return true }
        guard wait != nil else { return false }
        try sendFrame(payload, type: .handshake, flags: flags, deadline: &wait!)
        return true
    }

    func sendControl(_ message: [UInt8], flags: UInt8, wait: inout WaitDeadline?) throws(ChannelError) -> Bool {
        // (The deadline goes in and out of the closure by value.)
        var deadline = wait
        let result: Result<Bool, ChannelError> = message.withUnsafeBytes { b in
            Result { () throws(ChannelError) -> Bool in try sendControl(b, flags: flags, wait: &deadline) }
        }
        wait = deadline
        return try result.get()
    }

    /// Handles a re-handshake frame from the peer (already decrypted in `scratch`).
    func receiveRehandshake(flags: UInt8, length: Int) throws(ChannelError) {
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
}
