import Altp2m
import CPlatform
import ChannelCrypto
import Synchronization

// The first handshake of a session: Noise `KKpsk2` over the rings, with
// key confirmation (one-way channels: `Kpsk0`, one message).
extension ChannelEndpoint {
    /// The Noise protocol of every handshake on this channel: `KKpsk2`, or
    /// `Kpsk0` on a one-way channel, whose reader may not answer.
    static func noiseProtocol(_ p: Parameters) -> NoiseProtocol {
        NoiseProtocol(pattern: p.geometry.isOneWay ? .kpsk0 : .kkpsk2,
                      cipher: p.suite == .aesgcm ? .aesGCM : .chaChaPoly, hash: .blake2b)
    }

    func handshake(_ p: Parameters) throws(ChannelError) {
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
            // The plaintext frames carry incarnations in `sequence`: message
            // 1 its sender's, message 2 the one of the initiator it answers,
            // so an initiator skips an answer meant for its predecessor.
            if side == .initiator {
                try sendHandshakeFrame(state.writeMessage(), flags: 0, sequence: UInt64(ownIncarnation), deadline: deadline)
                let reply = try receiveHandshakeFrame(deadline: deadline, answering: ownIncarnation)
                _ = try state.readMessage(reply.message)
            } else {
                let first = try receiveHandshakeFrame(deadline: deadline, answering: nil)
                _ = try state.readMessage(first.message)
                try sendHandshakeFrame(state.writeMessage(), flags: 0, sequence: first.tag, deadline: deadline)
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
    func oneWayHandshake(_ state: HandshakeState, deadline: UInt64) throws(ChannelError) {
        do {
            if side == .initiator {
                try sendHandshakeFrame(state.writeMessage(), flags: 0, sequence: UInt64(ownIncarnation), deadline: deadline)
            } else {
                _ = try state.readMessage(try receiveHandshakeFrame(deadline: deadline, answering: nil).message)
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

    func sendHandshakeFrame(_ message: [UInt8], flags: UInt8, sequence: UInt64, deadline: UInt64) throws(ChannelError) {
        guard message.count <= geometry.maximumPayloadBytes else {
            throw .handshakeFailed("handshake message of \(message.count) bytes does not fit the ring")
        }
        while true {
            let sent = try withChannelView { () throws(ChannelError) -> Bool in
                guard let slot = try ringCall({ () throws(RingViolation) in try producer!.reserve(payloadBytes: message.count) }) else { return false }
                message.withUnsafeBytes { if $0.count > 0 { slot.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
                producer!.commit(FrameHeader(length: UInt32(message.count), type: .handshake, flags: flags, sequence: sequence))
                return true
            }
            if sent { wakePeerIfWaiting(dataWaiting: true); return }
            try waitForPeer(forSpace: true, deadline: deadline)
        }
    }

    /// The peer's first handshake message (or, `answering` this side's
    /// incarnation, its answer), from the peer incarnation this side pairs
    /// with. A peer that opens again before its message arrived is paired
    /// with anew; an answer tagged for an earlier incarnation of this side
    /// is skipped (its predecessor's handshake, never this one's).
    func receiveHandshakeFrame(deadline: UInt64, answering: UInt32?) throws(ChannelError) -> (message: [UInt8], tag: UInt64) {
        try pairWithPeer(deadline: deadline)
        while true {
            let frame = try withChannelView { () throws(ChannelError) -> FrameHeader? in
                try ringCall { () throws(RingViolation) in try consumer!.receive(into: scratch) }
            }
            if let frame {
                wakePeerIfWaiting(dataWaiting: false)
                guard frame.type == .handshake, frame.flags == 0 else {
                    throw .protocolViolation("expected a handshake frame, got \(frame.type) with flags \(frame.flags)")
                }
                if let answering {
                    if frame.sequence != UInt64(answering) { continue }
                } else if frame.sequence != UInt64(consumer!.pairedIncarnation) {
                    throw .protocolViolation("the handshake frame is tagged with incarnation \(frame.sequence); the peer opened as \(consumer!.pairedIncarnation)")
                }
                return (Array(UnsafeRawBufferPointer(rebasing: scratch[0..<Int(frame.length)])), frame.sequence)
            }
            if consumer!.restartBoundaryReached {
                try pairWithPeer(deadline: deadline)
                continue
            }
            do {
                try waitForPeer(forSpace: false, deadline: deadline)
            } catch .peerRestarted {
                // The peer opened again before its handshake frame came:
                // pair with the new incarnation.
                failure = nil
                try pairWithPeer(deadline: deadline)
            }
        }
    }
}
