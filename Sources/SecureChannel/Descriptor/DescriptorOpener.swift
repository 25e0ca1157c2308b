import Altp2m
import ChannelCrypto

/// Opens the channel descriptors the host published for this agent.
///
/// The checks run in this order, and the first that fails decides the error:
/// 1. the host's Ed25519 signature over the envelope, under the pinned host
///    key (``DescriptorError/badSignature``): nothing unsigned is parsed;
/// 2. the envelope's framing and recipient (``DescriptorError/malformed(_:)``,
///    ``DescriptorError/unsupportedVersion``, ``DescriptorError/wrongRecipient``);
/// 3. the sealed box, with this agent's X25519 private key
///    (``DescriptorError/notForThisKey``); the plaintext goes straight into
///    guarded memory;
/// 4. the descriptor's encoding, field by field (``DescriptorError/malformed(_:)``
///    naming the field, ``DescriptorError/unsupportedVersion``);
/// 5. its recipient (``DescriptorError/wrongRecipient``), its signed name
///    against the name the caller expects (``DescriptorError/nameMismatch(expected:signed:)``),
///    expiry against the clock passed in (``DescriptorError/expired``), and
///    generation against the caller's ``DescriptorReplayGuard``
///    (``DescriptorError/replayed``).
///
/// The pre-shared key leaves as a `SymmetricKey`; every ordinary-memory
/// copy of it is overwritten with zeros before `open` returns.
public struct DescriptorOpener: Sendable {
    /// The host's signing key, pinned by the agent's configuration.
    public let hostKey: Curve25519.Signing.PublicKey
    /// This agent's key pair; the host seals descriptors to its public half.
    public let agentKey: Curve25519.KeyAgreement.PrivateKey
    /// The domain this agent runs in.
    public let domain: DomainID

    /// An opener for the agent of `domain`.
    public init(hostKey: Curve25519.Signing.PublicKey, agentKey: Curve25519.KeyAgreement.PrivateKey,
                domain: DomainID) {
        self.hostKey = hostKey
        self.agentKey = agentKey
        self.domain = domain
    }

    /// Verifies, opens and checks `envelope`; on success records it in `replayGuard`.
    /// - Parameters:
    ///   - envelope: the sealed, signed descriptor the host published.
    ///   - expectedName: the channel the caller means to open: the name it
    ///     was asked for, or the key the envelope is stored under. The store
    ///     is not signed, so its keys are only claims.
    ///   - now: the current time in Unix seconds.
    ///   - replayGuard: the descriptors this domain already accepted; one
    ///     not newer than a recorded one is refused (``DescriptorError/replayed``).
    public func open(_ envelope: [UInt8], named expectedName: String, now: UInt64,
                     replayGuard: inout DescriptorReplayGuard) throws(DescriptorError) -> OpenedDescriptor {
        let parts: DescriptorEnvelope.Parts
        do {
            parts = try DescriptorEnvelope.split(envelope)
        } catch {
            throw DescriptorError(error)
        }
        let signed = Array(parts.signedPortion)
        guard hostKey.isValidSignature(Array(parts.signature), for: signed) else { throw .badSignature }

        let header: DescriptorEnvelope.Header
        do {
            header = try DescriptorEnvelope.parse(signedPortion: signed)
        } catch {
            throw DescriptorError(error)
        }
        guard header.recipient == domain else { throw .wrongRecipient }
        guard header.sealedBox.count > AnonymousSealedBox.overhead else { throw .malformed("envelope.sealedBox") }

        var plaintext = SecureBytes(zeros: header.sealedBox.count - AnonymousSealedBox.overhead)
        let opened: Result<Int, CryptoError> = header.sealedBox.withUnsafeBytes { box in
            plaintext.withUnsafeMutableBytes { out in
                Result { () throws(CryptoError) -> Int in try AnonymousSealedBox.open(box, with: agentKey, into: out) }
            }
        }
        guard case .success = opened else { throw .notForThisKey }

        var descriptor: ChannelDescriptor
        do {
            descriptor = try plaintext.withUnsafeBytes { bytes throws(ChannelDescriptor.DecodingError) in
                try ChannelDescriptor(decoding: bytes)
            }
        } catch {
            throw DescriptorError(error)
        }
        let presharedKey = SymmetricKey(SecureBytes(descriptor.presharedKey))
        secureZero(&descriptor.presharedKey)

        guard descriptor.recipient == domain else { throw .wrongRecipient }
        guard descriptor.name == expectedName else { throw .nameMismatch(expected: expectedName, signed: descriptor.name) }
        guard now < descriptor.expiresAt else { throw .expired }
        guard !replayGuard.isReplay(descriptor) else { throw .replayed }
        let peerKey: Curve25519.KeyAgreement.PublicKey
        let geometry: RingGeometry
        do {
            peerKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: descriptor.peerPublicKey)
            geometry = try descriptor.geometry()
        } catch {
            throw .malformed("peerPublicKey")
        }
        replayGuard.accept(descriptor)
        return OpenedDescriptor(descriptor: descriptor, presharedKey: presharedKey, peerPublicKey: peerKey,
                                geometry: geometry, agentKey: agentKey)
    }
}

/// A descriptor that passed every check. Only ``DescriptorOpener`` makes
/// one, so holding one proves the checks ran (``SecureChannel/open(_:platform:options:)``
/// relies on that).
public struct OpenedDescriptor: Sendable {
    /// The descriptor; its `presharedKey` array is all
    /// zeros (the key is in ``presharedKey``).
    public let descriptor: ChannelDescriptor
    /// The channel's pre-shared key, in guarded memory.
    public let presharedKey: SymmetricKey
    /// The peer agent's static key.
    public let peerPublicKey: Curve25519.KeyAgreement.PublicKey
    /// The window layout, computed from the descriptor (never from shared memory).
    public let geometry: RingGeometry
    /// The key pair the descriptor was opened with: the handshake must use
    /// the same one, so the channel is opened without asking for it again.
    let agentKey: Curve25519.KeyAgreement.PrivateKey

    /// Which end this agent is.
    public var side: ChannelSide { descriptor.side }

    /// The bytes both ends bind into the handshake as the Noise prologue:
    /// a label, the channel id, both domains, the page count, the one-way
    /// flag, the suite, the mode and the generation. Both descriptors of one
    /// issue give the same bytes; anything that differs makes the handshake fail.
    public var prologue: [UInt8] {
        var bytes = Array("secure-channel descriptor v1".utf8)
        bytes += descriptor.channelID.bytes
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        append(descriptor.initiator.rawValue)
        append(descriptor.responder.rawValue)
        append(descriptor.pageCount)
        append(UInt8(descriptor.isOneWay ? 1 : 0))
        append(descriptor.suite.rawValue)
        append(descriptor.mode.rawValue)
        append(descriptor.generation)
        return bytes
    }
}
