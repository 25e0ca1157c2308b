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
    func oneWayHandshake(_ state: HandshakeState, deadline: UInt64) throws(ChannelError) {
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

    func sendHandshakeFrame(_ message: [UInt8], flags: UInt8, deadline: UInt64) throws(ChannelError) {
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

    func receiveHandshakeFrame(deadline: UInt64) throws(ChannelError) -> [UInt8] {
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
}
