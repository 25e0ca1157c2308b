/// A Noise HandshakeState (Noise revision 34, §5.3): runs one handshake as
/// initiator or responder and hands over the transport CipherStates.
///
/// ```swift
/// let hs = try HandshakeState(NoiseProtocol("Noise_KKpsk2_25519_ChaChaPoly_BLAKE2b"),
///                             role: .initiator, prologue: prologue,
///                             staticKey: myKey, remoteStaticKey: peerKey,
///                             presharedKeys: [psk])
/// send(try hs.writeMessage(payload: hello))        // -> e, es, ss
/// let reply = try hs.readMessage(receive())        // <- e, ee, se, psk
/// let session = try hs.finish()                    // session.sending / .receiving
/// ```
///
/// Each call checks that it is this party's turn. Any failure while a
/// message is processed (a tag that does not verify, a truncated message, a
/// low-order key) ends the handshake: every secret is dropped at once and
/// later calls throw `NoiseError.handshakeFailed`, so a forged message can
/// never be followed by a silent retry on half-updated state. When the last
/// message is done, the ephemeral keys, the chaining key and the handshake
/// key are wiped, and `finish()` hands out the result once.
///
/// Ephemeral keys are always generated fresh here; the only way to fix them
/// (for known-answer tests) is an initialiser behind `@_spi(Testing)`.
/// A `HandshakeState` is not thread-safe.
public final class HandshakeState {
    /// Which side of the handshake this party plays.
    public enum Role: Sendable, Hashable, CustomStringConvertible {
        /// Sends the first message.
        case initiator
        /// Receives the first message.
        case responder

        public var description: String {
            switch self {
            case .initiator: return "initiator"
            case .responder: return "responder"
            }
        }
    }

    /// What the handshake expects next.
    public enum Status: Sendable, Hashable {
        /// This party must call `writeMessage`.
        case writeNext
        /// This party must call `readMessage`.
        case readNext
        /// All messages are done; call `finish()`.
        case complete
        /// `finish()` handed out the result.
        case finished
        /// A message failed; the state is wiped and cannot continue.
        case failed
    }

    /// Largest Noise message, handshake or transport (§3).
    public static let maximumMessageLength = 65535

    /// The protocol this handshake runs; its name is hashed into the handshake.
    public let noiseProtocol: NoiseProtocol
    /// Whether this party sends the first message.
    public let role: Role

    private enum Phase {
        case active(messageIndex: Int)
        case complete(HandshakeResult)
        case finished
        case failed
    }

    private var phase: Phase = .active(messageIndex: 0)
    private var symmetricState: SymmetricState
    private var localStatic: Curve25519.KeyAgreement.PrivateKey?
    private var localEphemeral: Curve25519.KeyAgreement.PrivateKey?
    private var remoteEphemeral: Curve25519.KeyAgreement.PublicKey?
    private var presharedKeys: [SymmetricKey]
    private var nextPresharedKey = 0
    /// Set only through the `@_spi(Testing)` initialiser; consumed by the first `e` token.
    private var fixedEphemeral: Curve25519.KeyAgreement.PrivateKey?

    /// The peer's static public key: passed in advance, or learned from an
    /// `s` token (then already authenticated by the handshake so far). An
    /// IK responder checks it after the first `readMessage`, before replying.
    public private(set) var remoteStaticKey: Curve25519.KeyAgreement.PublicKey?

    /// What the handshake expects next.
    public var status: Status {
        switch phase {
        case let .active(index): return HandshakePattern.sender(ofMessage: index) == role ? .writeNext : .readNext
        case .complete: return .complete
        case .finished: return .finished
        case .failed: return .failed
        }
    }

    /// Whether every handshake message has been written or read.
    public var isComplete: Bool {
        switch phase {
        case .complete, .finished: return true
        case .active, .failed: return false
        }
    }

    // MARK: Initialisation

    /// `Initialize(handshake_pattern, initiator, prologue, s, e, rs, re)`,
    /// with the PSKs of §9 and a fresh ephemeral key for each `e` token.
    ///
    /// - Parameters:
    ///   - noiseProtocol: the protocol both parties agreed on.
    ///   - role: initiator or responder.
    ///   - prologue: data both parties must agree on (hashed, never sent).
    ///   - staticKey: this party's static key pair, if the pattern uses one.
    ///   - remoteStaticKey: the peer's static public key, if the pattern
    ///     requires knowing it in advance (KK; IK and NK initiators).
    ///   - presharedKeys: one 32-byte key per `psk` token, in order.
    /// - Throws: `NoiseError.missingKey` / `.unexpectedKey` when the keys do
    ///   not fit the pattern; `CryptoError.incorrectKeySize` for a PSK that
    ///   is not 32 bytes; `CryptoError.unsupported` for AESGCM on a CPU
    ///   without AES-NI.
    public convenience init(
        _ noiseProtocol: NoiseProtocol,
        role: Role,
        prologue: [UInt8] = [],
        staticKey: Curve25519.KeyAgreement.PrivateKey? = nil,
        remoteStaticKey: Curve25519.KeyAgreement.PublicKey? = nil,
        presharedKeys: [SymmetricKey] = []
    ) throws {
        try self.init(noiseProtocol, role: role, prologue: prologue, staticKey: staticKey,
                      remoteStaticKey: remoteStaticKey, presharedKeys: presharedKeys, fixedEphemeral: nil)
    }

    /// Test-only: as the public initialiser, but the `e` token uses
    /// `ephemeralKey` instead of a fresh key, to reproduce test vectors.
    ///
    /// Behind `@_spi(Testing)` so it is absent from the public interface:
    /// only a module that writes `@_spi(Testing) import ChannelCrypto` sees
    /// it, and the test suite checks that no module under Sources/ does.
    /// A fixed ephemeral key in production would destroy forward secrecy.
    @_spi(Testing)
    public convenience init(
        _ noiseProtocol: NoiseProtocol,
        role: Role,
        prologue: [UInt8] = [],
        staticKey: Curve25519.KeyAgreement.PrivateKey? = nil,
        remoteStaticKey: Curve25519.KeyAgreement.PublicKey? = nil,
        presharedKeys: [SymmetricKey] = [],
        ephemeralKey: Curve25519.KeyAgreement.PrivateKey
    ) throws {
        try self.init(noiseProtocol, role: role, prologue: prologue, staticKey: staticKey,
                      remoteStaticKey: remoteStaticKey, presharedKeys: presharedKeys, fixedEphemeral: ephemeralKey)
    }

    private init(
        _ noiseProtocol: NoiseProtocol,
        role: Role,
        prologue: [UInt8],
        staticKey: Curve25519.KeyAgreement.PrivateKey?,
        remoteStaticKey: Curve25519.KeyAgreement.PublicKey?,
        presharedKeys: [SymmetricKey],
        fixedEphemeral: Curve25519.KeyAgreement.PrivateKey?
    ) throws {
        let pattern = noiseProtocol.pattern
        let name = noiseProtocol.name
        if noiseProtocol.cipher == .aesGCM, !AEADAlgorithm.aesGCM.isAvailable {
            throw CryptoError.unsupported("\(name) needs AES-256-GCM, which this CPU lacks (no AES-NI/PCLMULQDQ); use ChaChaPoly")
        }

        let needsStatic = pattern.requiresLocalStaticKey(for: role)
        if needsStatic, staticKey == nil {
            throw NoiseError.missingKey("\(name) needs the \(role)'s static key pair: pass staticKey")
        }
        if !needsStatic, staticKey != nil {
            throw NoiseError.unexpectedKey("\(name) never uses the \(role)'s static key: pass staticKey: nil")
        }

        let needsRemoteStatic = pattern.requiresRemoteStaticKey(for: role)
        if needsRemoteStatic, remoteStaticKey == nil {
            throw NoiseError.missingKey("the \(role) of \(name) must know the peer's static public key in advance: pass remoteStaticKey")
        }
        if !needsRemoteStatic, remoteStaticKey != nil {
            let peerSendsStatic = pattern.ownMessages(role == .initiator ? .responder : .initiator).contains { $0.contains(.s) }
            throw NoiseError.unexpectedKey(peerSendsStatic
                ? "in \(name) the peer sends its static key during the handshake, so a key passed in advance would never be checked: pass remoteStaticKey: nil and check HandshakeResult.remoteStaticKey instead"
                : "\(name) never uses the peer's static key: pass remoteStaticKey: nil")
        }

        let pskCount = pattern.presharedKeyCount
        if presharedKeys.count < pskCount {
            throw NoiseError.missingKey("\(name) needs \(pskCount) pre-shared key(s), got \(presharedKeys.count)")
        }
        if presharedKeys.count > pskCount {
            throw NoiseError.unexpectedKey("\(name) uses \(pskCount) pre-shared key(s), got \(presharedKeys.count)")
        }
        for psk in presharedKeys where psk.byteCount != 32 {
            throw CryptoError.incorrectKeySize(expected: 32, actual: psk.byteCount)
        }

        self.noiseProtocol = noiseProtocol
        self.role = role
        self.localStatic = staticKey
        self.remoteStaticKey = remoteStaticKey
        self.presharedKeys = presharedKeys
        self.fixedEphemeral = fixedEphemeral

        symmetricState = SymmetricState(protocol: noiseProtocol)
        symmetricState.mixHash(prologue)
        // Pre-message keys, the initiator's first (§5.3).
        for (owner, tokens) in [(Role.initiator, pattern.initiatorPreMessage), (Role.responder, pattern.responderPreMessage)] {
            for token in tokens {
                guard token == .s else {
                    throw CryptoError.unsupported("pre-message token \(token) in \(name)")
                }
                let key = owner == role ? staticKey!.publicKey : remoteStaticKey!
                symmetricState.mixHash(key.rawRepresentation)
            }
        }
    }

    // MARK: Messages

    /// `WriteMessage(payload, message_buffer)`: the next handshake message,
    /// carrying `payload` (encrypted once the handshake has a key; the
    /// payload of the first message of most patterns is sent in clear).
    ///
    /// - Throws: `NoiseError.outOfTurn` if the peer must send next;
    ///   `.handshakeAlreadyFinished` / `.handshakeFailed` after the end;
    ///   `CryptoError.malformedInput` if the message would exceed 65535
    ///   bytes (state untouched). Any other error ends the handshake.
    public func writeMessage(payload: [UInt8] = []) throws -> [UInt8] {
        let index = try checkTurn(writing: true)
        let tokens = noiseProtocol.pattern.messages[index]
        let overhead = overheadByteCount(of: tokens)
        guard payload.count <= Self.maximumMessageLength - overhead else {
            throw CryptoError.malformedInput("handshake payload of \(payload.count) bytes makes message \(index) longer than Noise's \(Self.maximumMessageLength)-byte limit (at most \(Self.maximumMessageLength - overhead) bytes fit)")
        }
        do {
            var message: [UInt8] = []
            message.reserveCapacity(overhead + payload.count)
            for token in tokens {
                try write(token, into: &message)
            }
            try symmetricState.encryptAndHash(payload, appendingTo: &message)
            try advance(from: index)
            return message
        } catch {
            fail()
            throw error
        }
    }

    /// `ReadMessage(message, payload_buffer)`: processes the peer's next
    /// handshake message and returns its payload.
    ///
    /// - Throws: `NoiseError.outOfTurn` if this party must send next (state
    ///   untouched); `.handshakeAlreadyFinished` / `.handshakeFailed` after
    ///   the end. Otherwise a failure ends the handshake for good:
    ///   `CryptoError.authenticationFailure` (wrong key or PSK, tampering),
    ///   `CryptoError.malformedInput` (wrong length, low-order public key).
    public func readMessage(_ message: [UInt8]) throws -> [UInt8] {
        let index = try checkTurn(writing: false)
        let tokens = noiseProtocol.pattern.messages[index]
        do {
            let minimum = overheadByteCount(of: tokens)
            guard message.count >= minimum, message.count <= Self.maximumMessageLength else {
                throw CryptoError.malformedInput("handshake message \(index) of \(noiseProtocol.name) is \(message.count) bytes; it must be \(minimum)...\(Self.maximumMessageLength)")
            }
            var offset = 0
            for token in tokens {
                try read(token, from: message, at: &offset)
            }
            let payload = try symmetricState.decryptAndHash(Array(message[offset...]))
            try advance(from: index)
            return payload
        } catch {
            fail()
            throw error
        }
    }

    /// Hands over the transport CipherStates and the handshake hash, once.
    /// - Throws: `NoiseError.handshakeNotFinished` before the last message,
    ///   `.handshakeAlreadyFinished` on a second call, `.handshakeFailed`.
    public func finish() throws(NoiseError) -> HandshakeResult {
        switch phase {
        case let .complete(result):
            phase = .finished
            return result
        case let .active(index):
            throw .handshakeNotFinished("\(noiseProtocol.pattern.name) has \(noiseProtocol.pattern.messages.count) messages and message \(index) is next (\(status == .writeNext ? "writeMessage" : "readMessage"))")
        case .finished:
            throw .handshakeAlreadyFinished
        case .failed:
            throw .handshakeFailed
        }
    }

    // MARK: Tokens

    private func write(_ token: HandshakePattern.Token, into message: inout [UInt8]) throws {
        switch token {
        case .e:
            let ephemeral = fixedEphemeral ?? Curve25519.KeyAgreement.PrivateKey()
            fixedEphemeral = nil
            localEphemeral = ephemeral
            let pub = ephemeral.publicKey.rawRepresentation
            message.append(contentsOf: pub)
            try mixEphemeral(pub)
        case .s:
            guard let localStatic else { throw NoiseError.missingKey("token s needs the \(role)'s static key") }
            try symmetricState.encryptAndHash(localStatic.publicKey.rawRepresentation, appendingTo: &message)
        case .ee, .es, .se, .ss:
            try mixDH(token)
        case .psk:
            try mixPresharedKey()
        }
    }

    private func read(_ token: HandshakePattern.Token, from message: [UInt8], at offset: inout Int) throws {
        let dhLength = noiseProtocol.dh.byteCount
        switch token {
        case .e:
            let pub = Array(message[offset ..< offset + dhLength])
            offset += dhLength
            remoteEphemeral = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: pub)
            try mixEphemeral(pub)
        case .s:
            let length = dhLength + (symmetricState.hasKey ? CipherState.tagByteCount : 0)
            let field = Array(message[offset ..< offset + length])
            offset += length
            let pub = try symmetricState.decryptAndHash(field)
            remoteStaticKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: pub)
        case .ee, .es, .se, .ss:
            try mixDH(token)
        case .psk:
            try mixPresharedKey()
        }
    }

    /// The `e` token's hashing: `MixHash(e.public_key)`, and with a PSK
    /// modifier also `MixKey(e.public_key)` (§9.2).
    private func mixEphemeral(_ pub: [UInt8]) throws {
        symmetricState.mixHash(pub)
        if noiseProtocol.pattern.isPSK {
            // The closure's error type is left to inference: an explicit
            // `throws(CryptoError)` closure passed to Array's `rethrows`
            // withUnsafeBytes crashes swift-frontend 6.3.1 in IRGen.
            try pub.withUnsafeBytes { try symmetricState.mixKey($0) }
        }
    }

    /// `MixKey(DH(...))` for `ee`, `es`, `se` and `ss`, the first letter
    /// naming the initiator's key and the second the responder's (§7.1).
    private func mixDH(_ token: HandshakePattern.Token) throws {
        let initiatorUsesEphemeral = token == .ee || token == .es
        let responderUsesEphemeral = token == .ee || token == .se
        let (ownEphemeral, peerEphemeral) = role == .initiator
            ? (initiatorUsesEphemeral, responderUsesEphemeral)
            : (responderUsesEphemeral, initiatorUsesEphemeral)
        guard let own = ownEphemeral ? localEphemeral : localStatic else {
            throw NoiseError.missingKey("token \(token) needs the \(role)'s \(ownEphemeral ? "ephemeral" : "static") key")
        }
        guard let peer = peerEphemeral ? remoteEphemeral : remoteStaticKey else {
            throw NoiseError.missingKey("token \(token) needs the peer's \(peerEphemeral ? "ephemeral" : "static") key")
        }
        let shared = try own.sharedSecret(with: peer)
        try shared.withUnsafeBytes { (s) throws(CryptoError) in try symmetricState.mixKey(s) }
    }

    private func mixPresharedKey() throws {
        guard nextPresharedKey < presharedKeys.count else {
            throw NoiseError.missingKey("token psk has no pre-shared key left")
        }
        let psk = presharedKeys[nextPresharedKey]
        nextPresharedKey += 1
        try psk.withUnsafeBytes { (k) throws(CryptoError) in try symmetricState.mixKeyAndHash(k) }
    }

    /// Bytes a message of `tokens` needs besides the payload: DHLEN per
    /// public key, plus a tag on the static key and on the payload once the
    /// handshake has a key at that point.
    private func overheadByteCount(of tokens: [HandshakePattern.Token]) -> Int {
        let dhLength = noiseProtocol.dh.byteCount
        var hasKey = symmetricState.hasKey
        var count = 0
        for token in tokens {
            switch token {
            case .e:
                count += dhLength
                if noiseProtocol.pattern.isPSK { hasKey = true }
            case .s:
                count += dhLength + (hasKey ? CipherState.tagByteCount : 0)
            case .ee, .es, .se, .ss, .psk:
                hasKey = true
            }
        }
        return count + (hasKey ? CipherState.tagByteCount : 0)
    }

    // MARK: State

    /// The index of the next message, if it is this party's turn to write
    /// (`writing`) or read it.
    private func checkTurn(writing: Bool) throws(NoiseError) -> Int {
        switch phase {
        case let .active(index):
            let sender = HandshakePattern.sender(ofMessage: index)
            if writing, sender != role {
                throw .outOfTurn("writeMessage called on the \(role), but handshake message \(index) of \(noiseProtocol.pattern.name) is sent by the \(sender): call readMessage")
            }
            if !writing, sender == role {
                throw .outOfTurn("readMessage called on the \(role), but handshake message \(index) of \(noiseProtocol.pattern.name) is sent by the \(role) itself: call writeMessage")
            }
            return index
        case .complete, .finished:
            throw .handshakeAlreadyFinished
        case .failed:
            throw .handshakeFailed
        }
    }

    /// After message `index`: either wait for the next one, or split and wipe.
    private func advance(from index: Int) throws {
        let next = index + 1
        guard next == noiseProtocol.pattern.messages.count else {
            phase = .active(messageIndex: next)
            return
        }
        let (c1, split2) = try symmetricState.split()
        let pattern = noiseProtocol.pattern
        // One-way (§7.4): the responder must never send, so the second
        // CipherState is dropped here rather than handed out with a usable key.
        let c2 = pattern.isOneWay
            ? try CipherState.discarded(cipher: noiseProtocol.cipher, reason: "\(noiseProtocol.name) is one-way: only the initiator sends, and the responder-to-initiator CipherState is discarded (Noise §7.4)")
            : split2
        let result = HandshakeResult(role: role, initiatorToResponder: c1, responderToInitiator: c2,
                                     isOneWay: pattern.isOneWay,
                                     handshakeHash: symmetricState.handshakeHash, remoteStaticKey: remoteStaticKey)
        wipeSecrets()
        phase = .complete(result)
    }

    private func fail() {
        wipeSecrets()
        // A key learned from a message that then failed proves nothing.
        remoteStaticKey = nil
        phase = .failed
    }

    /// Drops every handshake secret. Each lives in `SecureBytes` that
    /// sodium_free zeroes when the last reference goes (so a discarded,
    /// unfinished HandshakeState needs no deinit: its release is the wipe);
    /// the caller's own static key and PSKs stay alive in the caller's copies.
    private func wipeSecrets() {
        symmetricState.wipe()
        localEphemeral = nil
        fixedEphemeral = nil
        localStatic = nil
        presharedKeys = []
        remoteEphemeral = nil
    }
}
