import Altp2m
import ChannelCrypto
import SecureChannel

/// Target `descriptor`: `DescriptorOpener.open` on envelopes the fuzzer
/// shapes at three depths, chosen by the first byte:
/// 0. the whole envelope, as an agent reads it from the store (the
///    signature is the gate: nothing else is reached without the host key);
/// 1. the signed portion, which the harness signs with the host's key, so
///    the envelope framing, the recipient and the sealed box are reached;
/// 2. the descriptor plaintext, which the harness seals to the agent and
///    signs, so every field check is reached.
///
/// Oracle: an accepted envelope is canonical (reassembling what was parsed
/// gives the same bytes; re-encoding the descriptor gives the plaintext),
/// is for this agent's domain and the expected name, is unexpired, opening
/// it again with the same replay guard is accepted (a reopening), and once
/// the guard recorded a newer generation of its channel it is refused as a
/// replay.
enum DescriptorTarget {
    static let target = FuzzTarget(
        name: "descriptor", summary: "descriptor envelopes: raw, signed by the host, sealed plaintext",
        run: { bytes throws(OracleViolation) in try run(bytes) }, seeds: seeds)

    static let domain = DomainID(rawValue: 7)
    static let name = "fuzz-channel"
    /// The clock the opener is given: fixed, so a corpus input never expires.
    static let now: UInt64 = 1_900_000_000
    static let agent = FixedKeys.initiator

    static func run(_ bytes: [UInt8]) throws(OracleViolation) {
        guard let depth = bytes.first else { return }
        let body = Array(bytes.dropFirst())
        let envelope: [UInt8]
        switch depth % 3 {
        case 0:
            envelope = body
        case 1:
            envelope = DescriptorEnvelope.assemble(signedPortion: body, signature: FixedKeys.host.signature(for: body))
        default:
            guard let box = try? AnonymousSealedBox.seal(body, to: agent.publicKey) else { return }
            envelope = signedEnvelope(box)
        }
        let opener = DescriptorOpener(hostKey: FixedKeys.host.publicKey, agentKey: agent, domain: domain)
        var guardState = DescriptorReplayGuard()
        guard let opened = try? opener.open(envelope, named: name, now: now, replayGuard: &guardState) else { return }
        try check(opened, envelope: envelope, plaintext: depth % 3 == 2 ? body : nil)
        guard (try? opener.open(envelope, named: name, now: now, replayGuard: &guardState)) != nil else {
            throw OracleViolation("the same envelope was refused the second time: a reopening must be accepted")
        }
        var newer = opened.descriptor
        newer.generation &+= 1
        guard newer.generation > opened.descriptor.generation else { return }
        guardState.accept(newer)
        do {
            _ = try opener.open(envelope, named: name, now: now, replayGuard: &guardState)
            throw OracleViolation("an envelope older than a generation the guard accepted was accepted")
        } catch let violation as OracleViolation {
            throw violation
        } catch {
            guard case .replayed = error as? DescriptorError else {
                throw OracleViolation("an older generation was refused for '\(error)', not as a replay")
            }
        }
    }

    static func check(_ opened: OpenedDescriptor, envelope: [UInt8], plaintext: [UInt8]?) throws(OracleViolation) {
        let descriptor = opened.descriptor
        guard descriptor.recipient == domain, descriptor.name == name, now < descriptor.expiresAt else {
            throw OracleViolation("accepted a descriptor for \(descriptor.recipient) named '\(descriptor.name)' expiring \(descriptor.expiresAt)")
        }
        guard let parts = try? DescriptorEnvelope.split(envelope),
              let header = try? DescriptorEnvelope.parse(signedPortion: parts.signedPortion),
              DescriptorEnvelope.assemble(signedPortion: DescriptorEnvelope.signedPortion(recipient: header.recipient, sealedBox: header.sealedBox),
                                          signature: Array(parts.signature)) == envelope
        else { throw OracleViolation("accepted an envelope that is not in canonical form") }
        if let plaintext {
            // The opener wiped the pre-shared key from its copy; put it back to compare.
            var full = descriptor
            full.presharedKey = Array(plaintext[plaintextKeyRange(descriptor)])
            guard full.encoded() == plaintext else {
                throw OracleViolation("accepted a descriptor plaintext that does not re-encode to the same bytes")
            }
        }
    }

    /// Where the pre-shared key sits in an encoded descriptor (fixed offset:
    /// magic, version, id, name, three domain ids, view, gfn, pages, flags,
    /// peer key).
    static func plaintextKeyRange(_ d: ChannelDescriptor) -> Range<Int> {
        let start = 4 + 2 + 16 + 1 + d.name.utf8.count + 2 + 2 + 2 + 2 + 8 + 4 + 1 + 32
        return start..<(start + 32)
    }

    static func signedEnvelope(_ box: [UInt8]) -> [UInt8] {
        let signed = DescriptorEnvelope.signedPortion(recipient: domain, sealedBox: box)
        return DescriptorEnvelope.assemble(signedPortion: signed, signature: FixedKeys.host.signature(for: signed))
    }

    static func genuineDescriptor(oneWay: Bool) -> ChannelDescriptor {
        ChannelDescriptor(
            channelID: ChannelID(bytes: FixedKeys.bytes(9).prefix(16))!, name: name, initiator: domain,
            responder: DomainID(rawValue: 8), recipient: domain, view: ViewID(3), windowFirstGFN: GFN(0x4000),
            pageCount: 4, isOneWay: oneWay, peerPublicKey: FixedKeys.responder.publicKey.rawRepresentation,
            presharedKey: FixedKeys.bytes(3), suite: .chachapoly, mode: .encrypted, notificationPort: 12,
            veInfoGFNs: [GFN(0x5000), .invalid], createdAt: now - 60, expiresAt: now + 3600, generation: 1)
    }

    /// A genuine descriptor at each depth, as the grant module seals and signs it.
    static func seeds() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for oneWay in [false, true] {
            let plaintext = genuineDescriptor(oneWay: oneWay).encoded()
            guard let box = try? AnonymousSealedBox.seal(plaintext, to: agent.publicKey) else { continue }
            let envelope = signedEnvelope(box)
            seeds.append([0] + envelope)
            seeds.append([1] + DescriptorEnvelope.signedPortion(recipient: domain, sealedBox: box))
            seeds.append([2] + plaintext)
        }
        return seeds
    }
}
