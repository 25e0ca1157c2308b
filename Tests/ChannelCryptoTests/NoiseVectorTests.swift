import Foundation
import Testing
@_spi(Testing) import ChannelCrypto

/// Known-answer tests for the Noise implementation.
///
/// Every vector fixes both parties' keys (ephemerals through the
/// `@_spi(Testing)` initialiser), the prologue, and each message's payload
/// and ciphertext. Both parties run against each other: the sender's output
/// must equal the vector's ciphertext and the receiver, fed the vector's
/// ciphertext, must return the vector's payload. Messages alternate, the
/// initiator first; those after the handshake are transport messages. After
/// a one-way handshake (§7.4) every message is the initiator's.
@Suite("Noise test vectors")
struct NoiseVectorTests {
    @Test("cacophony-25519.json (all 30 must run) and every file in NOISE_TEST_VECTORS")
    func cacophonyAndEnvironmentVectors() throws {
        let url = try #require(
            Bundle.module.url(forResource: "cacophony-25519", withExtension: "json", subdirectory: "Vectors"),
            "the bundled vector file Vectors/cacophony-25519.json is missing from the test resources")
        let bundled = try NoiseVectorFile.load(contentsOf: url)
        let report = NoiseVectorRunner.run(bundled.vectors, skippingUnsupported: false)
        #expect(bundled.vectors.count == 30)
        #expect(report.ran == 30, "every bundled vector must run")
        #expect(report.skipped.isEmpty)
        #expect(report.handshakeHashesChecked == 30)
        for failure in report.failures {
            Issue.record(Comment(rawValue: "cacophony-25519.json: \(failure)"))
        }
        print("Noise vectors: cacophony-25519.json: \(report.ran) run, \(report.failures.count) failed")

        // Extra vector files, for example the full cacophony.txt or snow's
        // vectors: NOISE_TEST_VECTORS=/path/a.json:/path/b.json swift test ...
        guard let list = ProcessInfo.processInfo.environment["NOISE_TEST_VECTORS"] else { return }
        for path in list.split(separator: ":").map(String.init) where !path.isEmpty {
            let file: NoiseVectorFile
            do {
                file = try NoiseVectorFile.load(contentsOf: URL(fileURLWithPath: path))
            } catch {
                Issue.record(Comment(rawValue: "NOISE_TEST_VECTORS: cannot use \(path): \(error)"))
                continue
            }
            let report = NoiseVectorRunner.run(file.vectors, skippingUnsupported: true)
            for failure in report.failures {
                Issue.record(Comment(rawValue: "\(path): \(failure)"))
            }
            #expect(report.ran + report.skipped.count == file.vectors.count)
            let reasons = Dictionary(grouping: report.skipped, by: \.reason).map { "\($0.value.count) × \($0.key)" }.sorted()
            print("Noise vectors: \(path): \(report.ran) run (\(report.handshakeHashesChecked) with handshake hash), \(report.failures.count) failed, \(report.skipped.count) skipped as unsupported\(reasons.isEmpty ? "" : ": " + reasons.joined(separator: "; "))")
        }
    }

    @Test("one-way K and Kpsk0 vectors generated with the Python noiseprotocol package (all 8 must run)")
    func oneWayVectors() throws {
        let url = try #require(
            Bundle.module.url(forResource: "noise-oneway-25519", withExtension: "json", subdirectory: "Vectors"),
            "the bundled vector file Vectors/noise-oneway-25519.json is missing from the test resources")
        let file = try NoiseVectorFile.load(contentsOf: url)
        let report = NoiseVectorRunner.run(file.vectors, skippingUnsupported: false)
        #expect(file.vectors.count == 8)
        #expect(report.ran == 8, "every one-way vector must run")
        #expect(report.handshakeHashesChecked == 8)
        let names = Set(file.vectors.map(\.protocolName))
        #expect(names == ["Noise_K_25519_ChaChaPoly_BLAKE2b", "Noise_K_25519_AESGCM_BLAKE2b",
                          "Noise_Kpsk0_25519_ChaChaPoly_BLAKE2b", "Noise_Kpsk0_25519_AESGCM_BLAKE2b"])
        // One handshake message and at least five transport messages each.
        #expect(file.vectors.allSatisfy { $0.messages.count >= 6 })
        for failure in report.failures {
            Issue.record(Comment(rawValue: "noise-oneway-25519.json: \(failure)"))
        }
        print("Noise vectors: noise-oneway-25519.json: \(report.ran) run, \(report.failures.count) failed")
    }

    @Test("KKpsk2 and IKpsk2 vectors from upstream cacophony.txt")
    func psk2Vectors() throws {
        let file = try NoiseVectorFile.decode(Data(noisePSK2VectorsJSON.utf8))
        let report = NoiseVectorRunner.run(file.vectors, skippingUnsupported: false)
        #expect(file.vectors.count == 12)
        #expect(report.ran == 12)
        #expect(file.vectors.filter { $0.protocolName.hasPrefix("Noise_KKpsk2_") }.count == 6)
        for failure in report.failures {
            Issue.record(Comment(rawValue: "psk2 vectors: \(failure)"))
        }
    }
}

// MARK: - Vector files

/// A file in the Noise wiki's test-vector format. Both spellings seen in the
/// wild are read: `protocol_name`/`init_psks` (current) and `name`/`init_psk`
/// (older cacophony.txt).
struct NoiseVectorFile: Decodable {
    var vectors: [NoiseTestVector]

    static func load(contentsOf url: URL) throws -> NoiseVectorFile {
        try decode(Data(contentsOf: url))
    }

    static func decode(_ data: Data) throws -> NoiseVectorFile {
        try JSONDecoder().decode(NoiseVectorFile.self, from: data)
    }
}

struct NoiseTestVector: Decodable {
    struct Party {
        var prologue: [UInt8]
        var presharedKeys: [[UInt8]]
        var staticKey: [UInt8]?
        var ephemeralKey: [UInt8]?
        var remoteStaticKey: [UInt8]?
    }

    var protocolName: String
    var initiator: Party
    var responder: Party
    var handshakeHash: [UInt8]?
    var messages: [(payload: [UInt8], ciphertext: [UInt8])]

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    private struct Message: Decodable {
        var payload: String
        var ciphertext: String
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        func hex(_ key: String) throws -> [UInt8]? {
            try c.decodeIfPresent(String.self, forKey: Key(key)).map { try Hex.decode($0) }
        }
        func party(_ prefix: String) throws -> Party {
            var psks: [[UInt8]] = []
            if let list = try c.decodeIfPresent([String].self, forKey: Key(prefix + "_psks")) {
                psks = try list.map { try Hex.decode($0) }
            } else if let one = try hex(prefix + "_psk") {
                psks = [one]
            }
            return Party(prologue: try hex(prefix + "_prologue") ?? [], presharedKeys: psks,
                         staticKey: try hex(prefix + "_static"), ephemeralKey: try hex(prefix + "_ephemeral"),
                         remoteStaticKey: try hex(prefix + "_remote_static"))
        }
        protocolName = try c.decodeIfPresent(String.self, forKey: Key("protocol_name"))
            ?? c.decode(String.self, forKey: Key("name"))
        initiator = try party("init")
        responder = try party("resp")
        handshakeHash = try hex("handshake_hash")
        messages = try c.decode([Message].self, forKey: Key("messages")).map {
            (try Hex.decode($0.payload), try Hex.decode($0.ciphertext))
        }
    }
}

// MARK: - Running vectors

enum NoiseVectorRunner {
    struct Report {
        var ran = 0
        var handshakeHashesChecked = 0
        var failures: [String] = []
        var skipped: [(name: String, reason: String)] = []
    }

    /// Runs every vector. With `skippingUnsupported`, a vector whose
    /// protocol this implementation lacks (or whose cipher this CPU lacks)
    /// is counted as skipped; without it, that is a failure.
    static func run(_ vectors: [NoiseTestVector], skippingUnsupported: Bool) -> Report {
        var report = Report()
        for vector in vectors {
            let noiseProtocol: NoiseProtocol
            do {
                noiseProtocol = try NoiseProtocol(vector.protocolName)
            } catch {
                if skippingUnsupported {
                    report.skipped.append((vector.protocolName, Self.reason(error)))
                } else {
                    report.failures.append("\(vector.protocolName): \(error)")
                }
                continue
            }
            if noiseProtocol.cipher == .aesGCM, !AEADAlgorithm.aesGCM.isAvailable, skippingUnsupported {
                report.skipped.append((vector.protocolName, "AESGCM unavailable on this CPU"))
                continue
            }
            report.ran += 1
            let (failures, checkedHash) = run(vector, as: noiseProtocol)
            report.failures += failures.map { "\(vector.protocolName): \($0)" }
            if checkedHash { report.handshakeHashesChecked += 1 }
        }
        return report
    }

    private static func reason(_ error: any Error) -> String {
        guard let error = error as? CryptoError else { return "\(error)" }
        switch error {
        case let .unsupported(what): return what.replacingOccurrences(of: #" in Noise_\S+"#, with: "", options: .regularExpression)
        case .malformedInput: return "not a Noise protocol name this implementation parses"
        default: return "\(error)"
        }
    }

    /// Runs one vector with both parties; returns the mismatches and whether
    /// a handshake hash was compared.
    static func run(_ vector: NoiseTestVector, as noiseProtocol: NoiseProtocol) -> (failures: [String], checkedHash: Bool) {
        var failures: [String] = []
        var checkedHash = false
        var index = 0
        do {
            let initiator = try makeParty(vector.initiator, .initiator, noiseProtocol)
            let responder = try makeParty(vector.responder, .responder, noiseProtocol)
            let handshakeCount = noiseProtocol.pattern.messages.count
            var initiatorResult: HandshakeResult?
            var responderResult: HandshakeResult?

            let oneWay = noiseProtocol.pattern.isOneWay
            for (i, message) in vector.messages.enumerated() {
                index = i
                let initiatorSends = oneWay || i % 2 == 0
                if i < handshakeCount {
                    let (writer, reader) = initiatorSends ? (initiator, responder) : (responder, initiator)
                    let written = try writer.writeMessage(payload: message.payload)
                    if written != message.ciphertext {
                        failures.append("message \(i) (handshake, written by the \(writer.role)): ciphertext \(Hex.encode(written)) != expected \(Hex.encode(message.ciphertext))")
                    }
                    let payload = try reader.readMessage(message.ciphertext)
                    if payload != message.payload {
                        failures.append("message \(i) (handshake, read by the \(reader.role)): payload \(Hex.encode(payload)) != expected \(Hex.encode(message.payload))")
                    }
                    if i == handshakeCount - 1 {
                        initiatorResult = try initiator.finish()
                        responderResult = try responder.finish()
                    }
                } else {
                    guard let initiatorResult, let responderResult else { break }
                    let sender = initiatorSends ? initiatorResult.sending : responderResult.sending
                    let receiver = initiatorSends ? responderResult.receiving : initiatorResult.receiving
                    // The sender uses the array API ...
                    let written = try sender.encryptWithAd([], message.payload)
                    if written != message.ciphertext {
                        failures.append("message \(i) (transport, \(initiatorSends ? "initiator" : "responder") sends): ciphertext \(Hex.encode(written)) != expected \(Hex.encode(message.ciphertext))")
                    }
                    // ... and the receiver the zero-copy one, in place, so both paths meet the vectors.
                    var buffer = message.ciphertext
                    let count = try buffer.withUnsafeMutableBytes { b in
                        try receiver.decrypt(ciphertext: UnsafeRawBufferPointer(b), authenticating: UnsafeRawBufferPointer(start: nil, count: 0), into: b)
                    }
                    if Array(buffer.prefix(count)) != message.payload {
                        failures.append("message \(i) (transport, decrypted in place): payload \(Hex.encode(buffer.prefix(count))) != expected \(Hex.encode(message.payload))")
                    }
                }
            }
            guard let initiatorResult, let responderResult else {
                failures.append("the vector has \(vector.messages.count) messages, fewer than the \(handshakeCount) of the handshake")
                return (failures, false)
            }
            if initiatorResult.handshakeHash != responderResult.handshakeHash {
                failures.append("handshake hashes differ between initiator and responder")
            }
            if oneWay {
                // The direction a one-way pattern never uses must refuse to work.
                if !initiatorResult.isOneWay || !responderResult.isOneWay {
                    failures.append("a one-way handshake's result does not say it is one-way")
                }
                if (try? responderResult.sending.encryptWithAd([], [1])) != nil {
                    failures.append("the responder of a one-way handshake could encrypt")
                }
                if (try? initiatorResult.receiving.decryptWithAd([], [UInt8](repeating: 0, count: 17))) != nil {
                    failures.append("the initiator of a one-way handshake could decrypt")
                }
            }
            if let expected = vector.handshakeHash {
                checkedHash = true
                if initiatorResult.handshakeHash != expected {
                    failures.append("handshake hash \(Hex.encode(initiatorResult.handshakeHash)) != expected \(Hex.encode(expected))")
                }
            }
        } catch {
            failures.append("threw at message \(index): \(error)")
        }
        return (failures, checkedHash)
    }

    /// A party from the vector's keys. Keys the pattern does not use are
    /// left out: HandshageState rejects them, and some vector files list
    /// them anyway.
    private static func makeParty(_ party: NoiseTestVector.Party, _ role: HandshakeState.Role, _ noiseProtocol: NoiseProtocol) throws -> HandshakeState {
        let pattern = noiseProtocol.pattern
        let staticKey = try pattern.requiresLocalStaticKey(for: role)
            ? party.staticKey.map { try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: $0) } : nil
        let remoteStaticKey = try pattern.requiresRemoteStaticKey(for: role)
            ? party.remoteStaticKey.map { try Curve25519.KeyAgreement.PublicKey(rawRepresentation: $0) } : nil
        let psks = party.presharedKeys.map { SymmetricKey(copying: $0) }
        guard let ephemeral = party.ephemeralKey else {
            // The responder of a one-way pattern sends nothing, so it has no
            // ephemeral key to fix.
            let sendsEphemeral = pattern.messages.enumerated().contains {
                ($0.offset % 2 == 0) == (role == .initiator) && $0.element.contains(.e)
            }
            guard !sendsEphemeral else {
                throw CryptoError.malformedInput("the vector has no \(role) ephemeral key")
            }
            return try HandshakeState(noiseProtocol, role: role, prologue: party.prologue, staticKey: staticKey,
                                      remoteStaticKey: remoteStaticKey, presharedKeys: psks)
        }
        return try HandshakeState(noiseProtocol, role: role, prologue: party.prologue, staticKey: staticKey,
                                  remoteStaticKey: remoteStaticKey, presharedKeys: psks,
                                  ephemeralKey: Curve25519.KeyAgreement.PrivateKey(rawRepresentation: ephemeral))
    }
}
