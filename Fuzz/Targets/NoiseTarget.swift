@_spi(Testing) import ChannelCrypto

/// Target `noise`: `HandshakeState.readMessage` at every message a party
/// reads, in the channel's two patterns: `KKpsk2` message 1 (read by the
/// responder) and message 2 (read by the initiator), and `Kpsk0`'s single
/// message (read by the one-way reader). The first byte picks the position
/// and the cipher; the rest is the message.
///
/// The genuine parties use fixed ephemeral keys (the test-only initialiser,
/// as the Noise test vectors do), so the message a genuine peer would send
/// at that position is known. Oracle: a message that is read without error
/// is exactly that genuine message, the handshake then finishes, and both
/// parties hold the same handshake hash.
enum NoiseTarget {
    static let target = FuzzTarget(
        name: "noise", summary: "Noise KKpsk2 and Kpsk0 handshake messages at each position",
        run: { bytes throws(OracleViolation) in try run(bytes) }, seeds: seeds)

    enum Position: UInt8, CaseIterable { case kkFirst, kkSecond, kFirst }

    static let prologue = Array("fuzz noise".utf8)

    static func run(_ bytes: [UInt8]) throws(OracleViolation) {
        guard let selector = bytes.first else { return }
        let position = Position(rawValue: selector % 3)!
        let cipher: NoiseProtocol.Cipher = selector & 0x80 != 0 && AEADAlgorithm.aesGCM.isAvailable ? .aesGCM : .chaChaPoly
        let message = Array(bytes.dropFirst())
        guard let (reader, writer, genuine) = parties(position, cipher: cipher) else { return }
        guard (try? reader.readMessage(message)) != nil else { return }
        guard message == genuine else {
            throw OracleViolation("\(position) accepted a \(message.count)-byte message that is not the genuine one")
        }
        if position == .kkFirst {
            // The responder answers; the initiator must accept the answer.
            guard let reply = try? reader.writeMessage(), (try? writer.readMessage(reply)) != nil else {
                throw OracleViolation("the handshake did not complete after the genuine first message")
            }
        }
        guard let a = try? reader.finish(), let b = try? writer.finish(), a.handshakeHash == b.handshakeHash else {
            throw OracleViolation("\(position): the parties disagree after an accepted message")
        }
    }

    /// The party that reads at `position`, its peer, and the genuine
    /// message the peer sends there.
    static func parties(_ position: Position, cipher: NoiseProtocol.Cipher) -> (HandshakeState, HandshakeState, [UInt8])? {
        let pattern: HandshakePattern = position == .kFirst ? .kpsk0 : .kkpsk2
        let noise = NoiseProtocol(pattern: pattern, cipher: cipher, hash: .blake2b)
        do {
            let initiator = try HandshakeState(noise, role: .initiator, prologue: prologue, staticKey: FixedKeys.initiator,
                                               remoteStaticKey: FixedKeys.responder.publicKey,
                                               presharedKeys: [FixedKeys.presharedKey], ephemeralKey: FixedKeys.initiatorEphemeral)
            let responder = try HandshakeState(noise, role: .responder, prologue: prologue, staticKey: FixedKeys.responder,
                                               remoteStaticKey: FixedKeys.initiator.publicKey,
                                               presharedKeys: [FixedKeys.presharedKey], ephemeralKey: FixedKeys.responderEphemeral)
            let first = try initiator.writeMessage()
            switch position {
            case .kkFirst, .kFirst:
                return (responder, initiator, first)
            case .kkSecond:
                _ = try responder.readMessage(first)
                return (initiator, responder, try responder.writeMessage())
            }
        } catch {
            return nil
        }
    }

    /// The genuine message at each position, both ciphers.
    static func seeds() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for position in Position.allCases {
            for high: UInt8 in [0, 0x80] {
                let cipher: NoiseProtocol.Cipher = high != 0 ? .aesGCM : .chaChaPoly
                guard let (_, _, message) = parties(position, cipher: cipher) else { continue }
                seeds.append([position.rawValue | high] + message)
            }
        }
        return seeds
    }
}
