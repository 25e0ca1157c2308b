import Foundation
import Testing
import ChannelCrypto

/// Behaviour of the Noise implementation between fresh parties with random
/// keys: the channel's KKpsk2 handshake, misuse, tampering, and the
/// transport CipherStates (nonce rules, rekey, zero-copy path).
@Suite("Noise")
struct NoiseTests {
    typealias PrivateKey = Curve25519.KeyAgreement.PrivateKey

    static let ciphers: [NoiseProtocol.Cipher] = [.chaChaPoly, .aesGCM]

    /// Keys and parties for one KKpsk2 handshake.
    struct KKpsk2Setup {
        let noiseProtocol: NoiseProtocol
        let initiatorKey = PrivateKey()
        let responderKey = PrivateKey()
        let psk = SymmetricKey(randomByteCount: 32)
        let prologue: [UInt8] = Array("channel 7 between dom3 and dom5".utf8)

        init(cipher: NoiseProtocol.Cipher = .chaChaPoly, hash: NoiseProtocol.Hash = .blake2b) {
            noiseProtocol = NoiseProtocol(pattern: .kkpsk2, cipher: cipher, hash: hash)
        }

        func initiator(psk: SymmetricKey? = nil, remote: Curve25519.KeyAgreement.PublicKey? = nil, prologue: [UInt8]? = nil) throws -> HandshakeState {
            try HandshakeState(noiseProtocol, role: .initiator, prologue: prologue ?? self.prologue, staticKey: initiatorKey,
                               remoteStaticKey: remote ?? responderKey.publicKey, presharedKeys: [psk ?? self.psk])
        }

        func responder(psk: SymmetricKey? = nil, remote: Curve25519.KeyAgreement.PublicKey? = nil) throws -> HandshakeState {
            try HandshakeState(noiseProtocol, role: .responder, prologue: prologue, staticKey: responderKey,
                               remoteStaticKey: remote ?? initiatorKey.publicKey, presharedKeys: [psk ?? self.psk])
        }
    }

    /// Runs a handshake to the end, each message with a small payload.
    static func handshake(_ initiator: HandshakeState, _ responder: HandshakeState) throws -> (HandshakeResult, HandshakeResult) {
        var turn = 0
        while !initiator.isComplete || !responder.isComplete {
            let (writer, reader) = initiator.status == .writeNext ? (initiator, responder) : (responder, initiator)
            let payload = Array("handshake payload \(turn)".utf8)
            #expect(try reader.readMessage(writer.writeMessage(payload: payload)) == payload)
            turn += 1
        }
        return (try initiator.finish(), try responder.finish())
    }

    // MARK: The channel's handshake

    @Test("KKpsk2 between fresh parties: same handshake hash, transport both ways", arguments: ciphers)
    func kkpsk2Handshake(cipher: NoiseProtocol.Cipher) throws {
        let setup = KKpsk2Setup(cipher: cipher)
        #expect(setup.noiseProtocol.name == "Noise_KKpsk2_25519_\(cipher == .aesGCM ? "AESGCM" : "ChaChaPoly")_BLAKE2b")
        let initiator = try setup.initiator()
        let responder = try setup.responder()
        #expect(initiator.status == .writeNext)
        #expect(responder.status == .readNext)

        let (i, r) = try Self.handshake(initiator, responder)
        #expect(i.handshakeHash == r.handshakeHash)
        #expect(i.handshakeHash.count == 64)
        #expect(i.remoteStaticKey == setup.responderKey.publicKey)
        #expect(r.remoteStaticKey == setup.initiatorKey.publicKey)
        #expect(initiator.status == .finished)
        #expect(i.sending === i.initiatorToResponder && r.receiving === r.initiatorToResponder)

        for n in 0..<50 {
            let toResponder = Array("ping \(n)".utf8)
            #expect(try r.receiving.decryptWithAd([], i.sending.encryptWithAd([], toResponder)) == toResponder)
            let toInitiator = Array("pong \(n)".utf8)
            #expect(try i.receiving.decryptWithAd([], r.sending.encryptWithAd([], toInitiator)) == toInitiator)
        }
        #expect(i.sending.nonce == 50 && r.receiving.nonce == 50)
        // The two directions use different keys.
        let probe = [UInt8](repeating: 7, count: 8)
        i.sending.setNonce(1000)
        r.sending.setNonce(1000)
        #expect(try i.sending.encryptWithAd([], probe) != r.sending.encryptWithAd([], probe))
    }

    // MARK: The one-way channel's handshake

    @Test("Kpsk0 between fresh parties: one message, one direction, the other refused", arguments: ciphers)
    func kpsk0Handshake(cipher: NoiseProtocol.Cipher) throws {
        let noise = NoiseProtocol(pattern: .kpsk0, cipher: cipher, hash: .blake2b)
        #expect(noise.name == "Noise_Kpsk0_25519_\(cipher == .aesGCM ? "AESGCM" : "ChaChaPoly")_BLAKE2b")
        #expect(noise.pattern.isOneWay && !HandshakePattern.kkpsk2.isOneWay)
        #expect(noise.pattern.messages == [[.psk, .e, .es, .ss]])
        let writerKey = PrivateKey(), readerKey = PrivateKey(), psk = SymmetricKey(randomByteCount: 32)
        let prologue = Array("one-way channel 9".utf8)
        let writer = try HandshakeState(noise, role: .initiator, prologue: prologue, staticKey: writerKey,
                                        remoteStaticKey: readerKey.publicKey, presharedKeys: [psk])
        let reader = try HandshakeState(noise, role: .responder, prologue: prologue, staticKey: readerKey,
                                        remoteStaticKey: writerKey.publicKey, presharedKeys: [psk])
        #expect(reader.status == .readNext)
        #expect(throws: NoiseError.self) { try reader.writeMessage() }
        let message = try writer.writeMessage()
        #expect(message.count == 32 + 16, "e plus the empty payload's tag")
        #expect(writer.status == .complete, "the writer is done once its only message is out")
        _ = try reader.readMessage(message)
        let (w, r) = (try writer.finish(), try reader.finish())
        #expect(w.isOneWay && r.isOneWay)
        #expect(w.handshakeHash == r.handshakeHash)
        for n in 0..<20 {
            let m = Array("frame \(n)".utf8)
            #expect(try r.receiving.decryptWithAd([], w.sending.encryptWithAd([], m)) == m)
        }
        // The discarded direction refuses everything, even after setNonce.
        #expect(r.sending.isDiscarded && w.receiving.isDiscarded && !w.sending.isDiscarded)
        r.sending.setNonce(0)
        for state in [r.sending, w.receiving] {
            #expect(throws: CryptoError.self) { try state.encryptWithAd([], [1, 2, 3]) }
            #expect(throws: CryptoError.self) { try state.decryptWithAd([], [UInt8](repeating: 0, count: 19)) }
            #expect(throws: CryptoError.self) { try state.rekey() }
            do { _ = try state.encryptWithAd([], [1]) } catch {
                guard case let .unsupported(why) = error, why.contains("one-way") else {
                    Issue.record("expected unsupported naming one-way, got \(error)"); continue
                }
            }
        }
    }

    @Test("Kpsk0: a wrong PSK, static key or prologue fails the reader's only read")
    func kpsk0WrongKeys() throws {
        let noise = NoiseProtocol(pattern: .kpsk0, cipher: .chaChaPoly, hash: .blake2b)
        let writerKey = PrivateKey(), readerKey = PrivateKey(), psk = SymmetricKey(randomByteCount: 32)
        let cases: [(psk: SymmetricKey, writer: PrivateKey, prologue: [UInt8])] = [
            (SymmetricKey(randomByteCount: 32), writerKey, [1]),
            (psk, PrivateKey(), [1]),
            (psk, writerKey, [2]),
        ]
        for c in cases {
            let writer = try HandshakeState(noise, role: .initiator, prologue: c.prologue, staticKey: c.writer,
                                            remoteStaticKey: readerKey.publicKey, presharedKeys: [c.psk])
            let reader = try HandshakeState(noise, role: .responder, prologue: [1], staticKey: readerKey,
                                            remoteStaticKey: writerKey.publicKey, presharedKeys: [psk])
            #expect(throws: CryptoError.authenticationFailure) { try reader.readMessage(writer.writeMessage()) }
            #expect(reader.status == .failed)
        }
        // K without a PSK works too, and names parse.
        #expect(try NoiseProtocol("Noise_K_25519_ChaChaPoly_BLAKE2b").pattern == .k)
        #expect(try HandshakePattern(name: "Kpsk1").messages == [[.e, .es, .ss, .psk]])
        #expect(try HandshakePattern(name: "Kpsk0") == .kpsk0)
    }

    @Test("the handshake payloads are bound: a different prologue fails at the first read")
    func prologueMismatch() throws {
        let setup = KKpsk2Setup()
        let initiator = try setup.initiator(prologue: Array("another channel".utf8))
        let responder = try setup.responder()
        #expect(throws: CryptoError.authenticationFailure) {
            try responder.readMessage(initiator.writeMessage(payload: [1, 2, 3]))
        }
    }

    // MARK: Wrong keys

    @Test("wrong PSK: message 2 (which carries psk in KKpsk2) fails with authenticationFailure", arguments: ciphers)
    func wrongPSK(cipher: NoiseProtocol.Cipher) throws {
        let setup = KKpsk2Setup(cipher: cipher)
        // In KKpsk2 the PSK is mixed in at the end of message 2, which the
        // responder writes; the first party to process a message under it
        // is the initiator reading message 2. The responder cannot tell
        // before then: it learns of a wrong PSK when the first transport
        // message from the initiator fails to decrypt (and an initiator
        // with the wrong PSK never gets that far).
        for (initiatorPSK, responderPSK) in [(SymmetricKey(randomByteCount: 32), setup.psk), (setup.psk, SymmetricKey(randomByteCount: 32))] {
            let initiator = try setup.initiator(psk: initiatorPSK)
            let responder = try setup.responder(psk: responderPSK)
            _ = try responder.readMessage(initiator.writeMessage(payload: [1]))
            let message2 = try responder.writeMessage(payload: [2])
            #expect(responder.isComplete, "the responder's handshake ends with the message it writes")
            #expect(throws: CryptoError.authenticationFailure) { try initiator.readMessage(message2) }
            #expect(initiator.status == .failed)
            #expect(throws: NoiseError.handshakeFailed) { try initiator.readMessage(message2) }
            #expect(throws: NoiseError.handshakeFailed) { try initiator.finish() }

            // What the responder would see from an initiator that pressed
            // on: nothing it sends under other keys decrypts.
            let r = try responder.finish()
            let forged = try CipherState(cipher: cipher, key: SymmetricKey(randomByteCount: 32)).encryptWithAd([], [9, 9, 9])
            #expect(throws: CryptoError.authenticationFailure) { try r.receiving.decryptWithAd([], forged) }
            #expect(r.receiving.nonce == 0)
        }
    }

    @Test("wrong remote static key on either side: the responder's first read fails")
    func wrongRemoteStatic() throws {
        let setup = KKpsk2Setup()
        let stranger = PrivateKey().publicKey

        // The initiator thinks it talks to someone else: es and ss differ.
        let initiator = try setup.initiator(remote: stranger)
        let responder = try setup.responder()
        #expect(throws: CryptoError.authenticationFailure) {
            try responder.readMessage(initiator.writeMessage(payload: [1]))
        }
        #expect(responder.status == .failed)

        // The responder expects another initiator: ss differs.
        let initiator2 = try setup.initiator()
        let responder2 = try setup.responder(remote: stranger)
        #expect(throws: CryptoError.authenticationFailure) {
            try responder2.readMessage(initiator2.writeMessage(payload: [1]))
        }
        #expect(throws: NoiseError.handshakeFailed) { try responder2.writeMessage(payload: []) }
    }

    // MARK: Tampering

    @Test("a flipped bit anywhere in either handshake message ends the handshake", arguments: ciphers)
    func tamperedHandshakeMessage(cipher: NoiseProtocol.Cipher) throws {
        let setup = KKpsk2Setup(cipher: cipher)
        let payload = Array("hello".utf8)
        let clean = try setup.initiator().writeMessage(payload: payload)
        for position in [0, 13, 31, 32, clean.count - 17, clean.count - 1] {
            var message = try setup.initiator().writeMessage(payload: payload)
            message[position] ^= 0x01
            let responder = try setup.responder()
            #expect(throws: (any Error).self, "message 1 with byte \(position) flipped") { try responder.readMessage(message) }
            #expect(responder.status == .failed)
        }

        // Message 2, read by the initiator.
        for position in [0, 31, 32, 47, 48] {
            let initiator = try setup.initiator()
            let responder = try setup.responder()
            _ = try responder.readMessage(initiator.writeMessage(payload: payload))
            var message2 = try responder.writeMessage(payload: payload)
            message2[position] ^= 0x80
            #expect(throws: (any Error).self, "message 2 with byte \(position) flipped") { try initiator.readMessage(message2) }
            #expect(initiator.status == .failed)
        }

        // A flip in the encrypted payload is exactly an authentication failure.
        var message = clean
        message[message.count - 20] ^= 0x04
        #expect(throws: CryptoError.authenticationFailure) { try setup.responder().readMessage(message) }
    }

    @Test("truncated, empty and oversized handshake messages are malformed")
    func messageLengths() throws {
        let setup = KKpsk2Setup()
        let message = try setup.initiator().writeMessage(payload: [])
        #expect(message.count == 32 + 16, "KKpsk2 message 1 is e plus the empty payload's tag")
        for bad in [Array(message.dropLast()), [], Array(message.prefix(31)), message + [UInt8](repeating: 0, count: 65536 - message.count)] {
            let responder = try setup.responder()
            #expect(throws: CryptoError.self) { try responder.readMessage(bad) }
            #expect(responder.status == .failed)
        }
        // A payload that would make the message exceed 65535 bytes is
        // refused before anything is processed: the state stays usable.
        let initiator = try setup.initiator()
        #expect(throws: CryptoError.self) { try initiator.writeMessage(payload: [UInt8](repeating: 0, count: 65535 - 48 + 1)) }
        #expect(initiator.status == .writeNext)
        let largest = try initiator.writeMessage(payload: [UInt8](repeating: 0, count: 65535 - 48))
        #expect(largest.count == 65535)
        #expect(try setup.responder().readMessage(largest).count == 65535 - 48)
    }

    // MARK: Misuse

    @Test("out-of-turn writes and reads are refused without harming the handshake")
    func outOfTurn() throws {
        let setup = KKpsk2Setup()
        let initiator = try setup.initiator()
        let responder = try setup.responder()

        #expect(throws: NoiseError.self) { try initiator.readMessage([UInt8](repeating: 0, count: 48)) }
        #expect(throws: NoiseError.self) { try responder.writeMessage(payload: []) }
        do {
            _ = try responder.writeMessage(payload: [])
        } catch let error as NoiseError {
            guard case let .outOfTurn(what) = error else { Issue.record("expected outOfTurn, got \(error)"); return }
            #expect(what.contains("readMessage"), "the error names the call to make instead")
        }
        #expect(throws: NoiseError.self) { try initiator.finish() }

        let message1 = try initiator.writeMessage(payload: [])
        #expect(throws: NoiseError.self) { try initiator.writeMessage(payload: []) }
        _ = try responder.readMessage(message1)
        #expect(throws: NoiseError.self) { try responder.readMessage(message1) }
        _ = try initiator.readMessage(responder.writeMessage(payload: []))

        // Finished: no more handshake messages, and the result is handed out once.
        #expect(throws: NoiseError.handshakeAlreadyFinished) { try initiator.writeMessage(payload: []) }
        #expect(throws: NoiseError.handshakeAlreadyFinished) { try responder.readMessage(message1) }
        let result = try initiator.finish()
        #expect(throws: NoiseError.handshakeAlreadyFinished) { try initiator.finish() }
        #expect(result.role == .initiator)
        #expect(try responder.finish().handshakeHash == result.handshakeHash)
    }

    @Test("keys that do not fit the pattern are refused with a message naming them")
    func keysMustFitPattern() throws {
        let kk = NoiseProtocol(pattern: .kkpsk2, cipher: .chaChaPoly, hash: .blake2b)
        let key = PrivateKey()
        let peer = PrivateKey().publicKey
        let psk = SymmetricKey(randomByteCount: 32)

        #expect(throws: NoiseError.self) { try HandshakeState(kk, role: .initiator, remoteStaticKey: peer, presharedKeys: [psk]) }
        #expect(throws: NoiseError.self) { try HandshakeState(kk, role: .initiator, staticKey: key, presharedKeys: [psk]) }
        #expect(throws: NoiseError.self) { try HandshakeState(kk, role: .initiator, staticKey: key, remoteStaticKey: peer) }
        #expect(throws: NoiseError.self) { try HandshakeState(kk, role: .initiator, staticKey: key, remoteStaticKey: peer, presharedKeys: [psk, psk]) }
        #expect(throws: CryptoError.incorrectKeySize(expected: 32, actual: 16)) {
            try HandshakeState(kk, role: .initiator, staticKey: key, remoteStaticKey: peer, presharedKeys: [SymmetricKey(randomByteCount: 16)])
        }

        // XX learns the peer's key during the handshake: a key passed in
        // advance would never be checked, so it is an error, not ignored.
        let xx = NoiseProtocol(pattern: .xx, cipher: .chaChaPoly, hash: .sha256)
        do {
            _ = try HandshakeState(xx, role: .initiator, staticKey: key, remoteStaticKey: peer)
            Issue.record("XX accepted a remote static key")
        } catch let error as NoiseError {
            guard case let .unexpectedKey(what) = error else { Issue.record("expected unexpectedKey, got \(error)"); return }
            #expect(what.contains("remoteStaticKey"))
        }
        let nn = NoiseProtocol(pattern: .nn, cipher: .chaChaPoly, hash: .sha256)
        #expect(throws: NoiseError.self) { try HandshakeState(nn, role: .responder, staticKey: key) }
        #expect(throws: NoiseError.self) { try HandshakeState(nn, role: .responder, presharedKeys: [psk]) }
    }

    @Test("XX and IK learn the peer's static key; NN has none")
    func otherPatterns() throws {
        let a = PrivateKey(), b = PrivateKey()
        let xx = NoiseProtocol(pattern: .xx, cipher: .aesGCM, hash: .sha512)
        let (xi, xr) = try Self.handshake(HandshakeState(xx, role: .initiator, staticKey: a),
                                          HandshakeState(xx, role: .responder, staticKey: b))
        #expect(xi.remoteStaticKey == b.publicKey && xr.remoteStaticKey == a.publicKey)
        #expect(xi.handshakeHash == xr.handshakeHash)

        let ik = NoiseProtocol(pattern: .ikpsk2, cipher: .chaChaPoly, hash: .sha256)
        let psk = SymmetricKey(randomByteCount: 32)
        let ikInitiator = try HandshakeState(ik, role: .initiator, staticKey: a, remoteStaticKey: b.publicKey, presharedKeys: [psk])
        let ikResponder = try HandshakeState(ik, role: .responder, staticKey: b, presharedKeys: [psk])
        _ = try ikResponder.readMessage(ikInitiator.writeMessage(payload: []))
        #expect(ikResponder.remoteStaticKey == a.publicKey, "an IK responder knows the initiator before replying")
        _ = try ikInitiator.readMessage(ikResponder.writeMessage(payload: []))
        #expect(try ikInitiator.finish().handshakeHash == ikResponder.finish().handshakeHash)

        // A failed read leaves nothing learned behind: the IK responder
        // decrypts the initiator's static key, then the payload fails.
        var forged = try HandshakeState(ik, role: .initiator, staticKey: a, remoteStaticKey: b.publicKey, presharedKeys: [psk])
            .writeMessage(payload: [1, 2, 3])
        forged[forged.count - 1] ^= 1
        let victim = try HandshakeState(ik, role: .responder, staticKey: b, presharedKeys: [psk])
        #expect(throws: CryptoError.authenticationFailure) { try victim.readMessage(forged) }
        #expect(victim.remoteStaticKey == nil)
        #expect(victim.status == .failed)

        let nn = NoiseProtocol(pattern: .nn, cipher: .chaChaPoly, hash: .blake2b)
        let (ni, nr) = try Self.handshake(HandshakeState(nn, role: .initiator), HandshakeState(nn, role: .responder))
        #expect(ni.remoteStaticKey == nil && nr.remoteStaticKey == nil)
    }

    // MARK: Protocol names

    @Test("protocol names parse into their parts and print canonically")
    func protocolNames() throws {
        let p = try NoiseProtocol("Noise_KKpsk2_25519_ChaChaPoly_BLAKE2b")
        #expect(p.pattern == .kkpsk2)
        #expect(p.pattern.baseName == "KK" && p.pattern.modifiers == ["psk2"])
        #expect(p.pattern.messages == [[.e, .es, .ss], [.e, .ee, .se, .psk]])
        #expect(p.pattern.initiatorPreMessage == [.s] && p.pattern.responderPreMessage == [.s])
        #expect(p.dh == .curve25519 && p.cipher == .chaChaPoly && p.hash == .blake2b)
        #expect(p == NoiseProtocol(pattern: .kkpsk2, cipher: .chaChaPoly, hash: .blake2b))
        #expect(try NoiseProtocol("Noise_IKpsk2_25519_AESGCM_SHA512").pattern.messages == [[.e, .es, .s, .ss], [.e, .ee, .se, .psk]])
        #expect(try HandshakePattern(name: "XXpsk0+psk3").messages == [[.psk, .e], [.e, .ee, .s, .es], [.s, .se, .psk]])
        for hash in NoiseProtocol.Hash.allCases {
            #expect((hash.byteCount, hash.blockByteCount) == (hash == .sha256 ? (32, 64) : (64, 128)))
        }

        let unsupported = ["Noise_NX_25519_ChaChaPoly_BLAKE2b", "Noise_N_25519_ChaChaPoly_BLAKE2b",
                           "Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b", "Noise_KK_448_ChaChaPoly_BLAKE2b",
                           "Noise_KK_25519_ChaChaPoly_BLAKE2s", "Noise_KK_25519_XChaChaPoly_SHA256",
                           "Noise_XXfallback_25519_ChaChaPoly_BLAKE2b", "Noise_XXhfs_25519+Kyber1024_ChaChaPoly_BLAKE2b"]
        for name in unsupported {
            #expect(throws: CryptoError.self, "\(name)") { try NoiseProtocol(name) }
            do { _ = try NoiseProtocol(name) } catch {
                guard case .unsupported = error else { Issue.record("\(name): expected unsupported, got \(error)"); continue }
            }
        }
        let malformed = ["Noise_KKpsk3_25519_ChaChaPoly_BLAKE2b", "Noise_KKpsk02_25519_ChaChaPoly_BLAKE2b",
                         "Noise_KKpsk2+psk2_25519_ChaChaPoly_BLAKE2b", "Noise_KK_25519_ChaChaPoly",
                         "NoisePSK_KK_25519_ChaChaPoly_BLAKE2b", "Noise_kk_25519_ChaChaPoly_BLAKE2b",
                         "Noise_KKpsk_25519_ChaChaPoly_BLAKE2b", "Noise_KK+psk2_25519_ChaChaPoly_BLAKE2b"]
        for name in malformed {
            do {
                _ = try NoiseProtocol(name)
                Issue.record("\(name) parsed")
            } catch {
                guard case .malformedInput = error else { Issue.record("\(name): expected malformedInput, got \(error)"); continue }
            }
        }
    }

    // MARK: CipherState

    @Test("the nonce is 32 zero bits then the counter, little-endian for ChaChaPoly, big-endian for AESGCM", arguments: ciphers)
    func nonceLayout(cipher: NoiseProtocol.Cipher) throws {
        let key = SymmetricKey(randomByteCount: 32)
        let state = try CipherState(cipher: cipher, key: key)
        state.setNonce(0x0102_0304_0506_0708)
        let plaintext = Array("nonce layout".utf8)
        let counter: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let nonce = [0, 0, 0, 0] + (cipher == .chaChaPoly ? counter.reversed() : counter)
        let expected = try AEADKey(cipher.aeadAlgorithm, key: key).seal(plaintext, nonce: nonce, authenticating: [5])
        #expect(try state.encryptWithAd([5], plaintext) == expected)
        #expect(state.nonce == 0x0102_0304_0506_0709)
    }

    @Test("nonce 2^64-1 is reserved: the encrypt after 2^64-2 throws nonceExhausted and never wraps", arguments: ciphers)
    func nonceExhaustion(cipher: NoiseProtocol.Cipher) throws {
        let key = SymmetricKey(randomByteCount: 32)
        let sender = try CipherState(cipher: cipher, key: key)
        let receiver = try CipherState(cipher: cipher, key: key)
        sender.setNonce(UInt64.max - 1)
        receiver.setNonce(UInt64.max - 1)

        let last = try sender.encryptWithAd([], [1, 2, 3])
        #expect(sender.nonce == CipherState.reservedNonce)
        #expect(throws: CryptoError.nonceExhausted) { try sender.encryptWithAd([], [4, 5, 6]) }
        #expect(throws: CryptoError.nonceExhausted) { try sender.encryptWithAd([], []) }
        #expect(sender.nonce == UInt64.max, "the counter stays at the reserved value; it never wraps to 0")

        #expect(try receiver.decryptWithAd([], last) == [1, 2, 3])
        #expect(throws: CryptoError.nonceExhausted) { try receiver.decryptWithAd([], last) }

        // The zero-copy path enforces the same rule.
        var buffer = [UInt8](repeating: 0, count: 32)
        #expect(throws: CryptoError.nonceExhausted) {
            try buffer.withUnsafeMutableBytes { b in
                try sender.encrypt(plaintext: UnsafeRawBufferPointer(rebasing: b[0..<16]), authenticating: UnsafeRawBufferPointer(start: nil, count: 0), into: b)
            }
        }
    }

    @Test("rekey follows REKEY(k) = ENCRYPT(k, 2^64-1, zerolen, zeros)[0..<32]; both sides stay in step", arguments: ciphers)
    func rekey(cipher: NoiseProtocol.Cipher) throws {
        let key = SymmetricKey(randomByteCount: 32)
        let sender = try CipherState(cipher: cipher, key: key)
        let receiver = try CipherState(cipher: cipher, key: key)
        let unchanged = try CipherState(cipher: cipher, key: key)
        let message = Array("same plaintext".utf8)

        #expect(try receiver.decryptWithAd([], sender.encryptWithAd([], message)) == message)
        try sender.rekey()
        try receiver.rekey()
        #expect(sender.nonce == 1 && receiver.nonce == 1, "rekey keeps the nonce")

        unchanged.setNonce(1)
        let afterRekey = try sender.encryptWithAd([], message)
        #expect(afterRekey != (try unchanged.encryptWithAd([], message)), "rekey changes the ciphertext")
        #expect(try receiver.decryptWithAd([], afterRekey) == message)

        // The new key is exactly what §11.3 defines.
        let maxNonce: [UInt8] = [0, 0, 0, 0] + [UInt8](repeating: 0xff, count: 8)
        let block = try AEADKey(cipher.aeadAlgorithm, key: key).seal([UInt8](repeating: 0, count: 32), nonce: maxNonce)
        let expected = try CipherState(cipher: cipher, key: SymmetricKey(copying: block.prefix(32)))
        let reference = try CipherState(cipher: cipher, key: key)
        try reference.rekey()
        reference.setNonce(9)
        expected.setNonce(9)
        #expect(try reference.encryptWithAd([], message) == expected.encryptWithAd([], message))

        // A receiver that misses a rekey no longer decrypts.
        try sender.rekey()
        #expect(throws: CryptoError.authenticationFailure) { try receiver.decryptWithAd([], sender.encryptWithAd([], message)) }
    }

    @Test("a failed decrypt does not advance the nonce", arguments: ciphers)
    func failedDecryptKeepsNonce(cipher: NoiseProtocol.Cipher) throws {
        let key = SymmetricKey(randomByteCount: 32)
        let sender = try CipherState(cipher: cipher, key: key)
        let receiver = try CipherState(cipher: cipher, key: key)
        let genuine = try sender.encryptWithAd([7], Array("genuine".utf8))

        var forged = genuine
        forged[2] ^= 0x10
        #expect(throws: CryptoError.authenticationFailure) { try receiver.decryptWithAd([7], forged) }
        #expect(throws: CryptoError.authenticationFailure) { try receiver.decryptWithAd([8], genuine) }
        #expect(throws: CryptoError.malformedInput("ciphertext of 15 bytes is shorter than the 16-byte tag")) {
            try receiver.decryptWithAd([7], Array(genuine.prefix(15)))
        }
        #expect(receiver.nonce == 0)
        #expect(try receiver.decryptWithAd([7], genuine) == Array("genuine".utf8))
        #expect(receiver.nonce == 1)
        // Replaying the genuine message fails: its nonce is used up.
        #expect(throws: CryptoError.authenticationFailure) { try receiver.decryptWithAd([7], genuine) }
    }

    @Test("zero-copy transport: in-place encrypt and decrypt round trip", arguments: ciphers)
    func zeroCopyInPlace(cipher: NoiseProtocol.Cipher) throws {
        let setup = KKpsk2Setup(cipher: cipher)
        let (i, r) = try Self.handshake(setup.initiator(), setup.responder())
        let ad: [UInt8] = [0xAA, 0xBB, 0xCC]

        for length in [0, 1, 15, 16, 17, 1000, 4096, 65519] {
            let plaintext = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            // One buffer, as a ring slot would be: plaintext at the start,
            // room for the tag after it.
            var slot = [UInt8](repeating: 0, count: length + CipherState.tagByteCount)
            slot.replaceSubrange(0..<length, with: plaintext)
            let sealed = try slot.withUnsafeMutableBytes { b in
                try ad.withUnsafeBytes { a in
                    try i.sending.encrypt(plaintext: UnsafeRawBufferPointer(rebasing: b[0..<length]), authenticating: a, into: b)
                }
            }
            #expect(sealed == length + 16)

            let opened = try slot.withUnsafeMutableBytes { b in
                try ad.withUnsafeBytes { a in
                    try r.receiving.decrypt(ciphertext: UnsafeRawBufferPointer(b), authenticating: a, into: b)
                }
            }
            #expect(opened == length)
            #expect(Array(slot.prefix(opened)) == plaintext)
        }
        #expect(i.sending.nonce == 8 && r.receiving.nonce == 8)

        // That the slot really holds ciphertext is checked against known
        // answers (the handshake keys are random, and a 1-byte ciphertext
        // equals its plaintext once in 256). Key 00 01 .. 1f, the same
        // plaintexts and ad; computed with Python's `cryptography` package
        // (ChaCha20Poly1305 / AESGCM, nonce = 4 zero bytes + the counter,
        // little-endian for ChaChaPoly, big-endian for AESGCM).
        let knownAnswers: [NoiseProtocol.Cipher: [(length: Int, sealed: String)]] = [
            .chaChaPoly: [(1, "1ffe64612dccf9ee1d1ff501309a113416"),
                          (17, "9871b63b36886ef8d6a89300290f205f323b7e5a8818e015a17c162554c09dbf0d")],
            .aesGCM: [(1, "0906ffa3cce4d52d808388c26e939dd771"),
                      (17, "12f0fa98c756f1fef1306c65973c832fe25cb0c4b9b3b56dab7a78e7ffcef83eae")],
        ]
        let fixed = try CipherState(cipher: cipher, key: SymmetricKey(copying: (0..<32).map { UInt8($0) }))
        for (length, expected) in knownAnswers[cipher]! {
            var slot = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) } + [UInt8](repeating: 0, count: 16)
            _ = try slot.withUnsafeMutableBytes { b in
                try ad.withUnsafeBytes { a in
                    try fixed.encrypt(plaintext: UnsafeRawBufferPointer(rebasing: b[0..<length]), authenticating: a, into: b)
                }
            }
            #expect(slot == hex(expected), "\(cipher) in place, \(length) bytes")
        }

        // A buffer too small is refused without using a nonce.
        var small = [UInt8](repeating: 0, count: 20)
        #expect(throws: CryptoError.bufferTooSmall(needed: 26, available: 20)) {
            try small.withUnsafeMutableBytes { b in
                try [UInt8](repeating: 1, count: 10).withUnsafeBytes { p in
                    try r.sending.encrypt(plaintext: p, authenticating: UnsafeRawBufferPointer(start: nil, count: 0), into: b)
                }
            }
        }
        #expect(r.sending.nonce == 0)
    }

    // MARK: The test-only hook

    @Test("no module under Sources/ imports the Testing SPI that fixes ephemeral keys")
    func ephemeralHookUnreachableFromSources() throws {
        // Tests/ChannelCryptoTests/NoiseTests.swift -> package root.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let sources = root.appendingPathComponent("Sources")
        let enumerator = try #require(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil),
                                      "cannot list \(sources.path)")
        var checked = 0
        for case let url as URL in enumerator where url.pathExtension == "swift" {
            let text = try String(contentsOf: url, encoding: .utf8)
            checked += 1
            // Import statements only: doc comments may quote the line.
            for line in text.split(separator: "\n") {
                let code = line.drop { $0 == " " || $0 == "\t" }
                guard !code.hasPrefix("//"), code.contains("@_spi(Testing)") else { continue }
                #expect(!code.contains("import "), "\(url.path) imports the Testing SPI: \(code)")
            }
        }
        #expect(checked > 0)
    }
}
