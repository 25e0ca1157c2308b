import Altp2m
import ChannelCrypto
import Synchronization
import Testing
@testable import SecureChannel

/// Every wait honours its caller's deadline, `trySend` never waits, and
/// values a caller passes are checked instead of trapping. Each call runs
/// under a limit that fails the run at it instead of hanging the suite.
@Suite("Deadlines and caller input", .serialized)
struct DeadlineTests {
    /// Fills the initiator's ring (nobody reads it) until a frame of
    /// `payload` bytes is refused; returns how many went in.
    static func fill(_ endpoint: ChannelEndpoint, payload: Int) throws -> Int {
        var sent = 0
        while try endpoint.trySend([UInt8](repeating: 7, count: payload)) { sent += 1 }
        return sent
    }

    /// Two messages that leave exactly 16 bytes of a 2048-byte ring: a
    /// frame of 1008 bytes and one of 1024. With a rekey due after the
    /// second, its frame (32 bytes: header and tag) cannot follow it.
    static let fillers = [[UInt8](repeating: 7, count: 1008 - 32), [UInt8](repeating: 8, count: 1024 - 32)]

    @Test("trySend at a due rekey with no room for the rekey frame returns instead of waiting; the rekey goes first later")
    func trySendAtDueRekey() throws {
        let options = ChannelEndpoint.Options(wait: .spin, rekeyInterval: 2)
        let pair = try EndpointPair.makeKeyed(pages: 2, mode: .encrypted, options: options)
        nonisolated(unsafe) let initiator = pair.initiator
        let sent = try Watchdog.run("trySend into a full ring at a due rekey", limit: .seconds(5)) {
            try Self.fillers.map { try initiator.trySend($0) }
        }
        #expect(sent == [true, true])
        // The owed rekey does not fit either: still no waiting.
        let again = try Watchdog.run("trySend with a rekey owed", limit: .seconds(5)) { try initiator.trySend([1]) }
        #expect(again == false)
        // The reader drains; the rekey goes out before the next message, and
        // the reader follows the key change.
        for filler in Self.fillers { #expect(try pair.responder.receive(timeout: .seconds(1)) == filler) }
        #expect(try pair.initiator.trySend([42]))
        #expect(try pair.responder.receive(timeout: .seconds(1)) == [42])
    }

    @Test("send(timeout:) at a due rekey into a ring nobody reads returns, and the next send ends at its deadline")
    func sendAtDueRekeyHonoursDeadline() throws {
        let options = ChannelEndpoint.Options(wait: .spin, rekeyInterval: 2)
        let pair = try EndpointPair.makeKeyed(pages: 2, mode: .encrypted, options: options)
        nonisolated(unsafe) let initiator = pair.initiator
        let outcome = try Watchdog.run("send(timeout:) at a due rekey", limit: .seconds(5)) { () -> ChannelError? in
            do {
                for filler in Self.fillers { try initiator.send(filler, timeout: .milliseconds(100)) }
            } catch let error as ChannelError {
                Issue.record("the messages that fit were refused: \(error)")
            }
            do {
                try initiator.send([1], timeout: .milliseconds(100))
                return nil
            } catch let error as ChannelError {
                return error
            }
        }
        #expect(outcome == .timeout)
    }

    @Test("trySend with a fresh handshake due and no room for its request returns false instead of waiting")
    func trySendAtDueRenewal() throws {
        // 21 frames of 96 bytes fill the 2048-byte ring to 32 bytes; the
        // renewal falls due with the 22nd send, and its request (80 bytes)
        // cannot fit.
        let options = ChannelEndpoint.Options(wait: .spin, rehandshakeAfterMessages: 21)
        let pair = try EndpointPair.makeKeyed(pages: 2, mode: .encrypted, options: options)
        nonisolated(unsafe) let initiator = pair.initiator
        let sent = try Watchdog.run("trySend into a full ring with a renewal due", limit: .seconds(5)) {
            try DeadlineTests.fill(initiator, payload: 64)
        }
        #expect(sent == 21)
        #expect(pair.initiator.handshakeCount == 1, "the renewal could not have started yet")
        // Once the reader catches up, the renewal completes and data flows.
        let responder = pair.responder
        for _ in 0..<sent { #expect(try responder.receive(timeout: .seconds(1)) == [UInt8](repeating: 7, count: 64)) }
        for n in 0..<20 as Range<UInt8> {
            try pair.initiator.send([n], timeout: .seconds(1))
            #expect(try responder.receive(timeout: .seconds(1)) == [n])
        }
        #expect(pair.initiator.handshakeCount >= 2, "the fresh handshake completed")
    }

    /// Writes an empty frame of `type` sealed with the peer's genuine
    /// sending key, as the peer itself would; false when the ring is full.
    static func forge(_ type: FrameType, flags: UInt8, with cipher: CipherState,
                      into producer: RingProducer) throws -> Bool {
        guard let slot = try producer.reserve(payloadBytes: CipherState.tagByteCount) else { return false }
        let header = FrameHeader(length: UInt32(CipherState.tagByteCount), type: type, flags: flags, sequence: cipher.nonce)
        var aad = (UInt64(0), UInt64(0))
        try withUnsafeMutableBytes(of: &aad) { a in
            header.store(to: a.baseAddress!)
            try cipher.encrypt(plaintext: UnsafeRawBufferPointer(start: nil, count: 0), authenticating: UnsafeRawBufferPointer(a),
                               into: UnsafeMutableRawBufferPointer(start: slot, count: CipherState.tagByteCount))
        }
        producer.commit(header)
        return true
    }

    @Test("a peer streaming valid rekey frames cannot hold receive(timeout:) past its deadline",
          arguments: ["receive(into:)", "receive()", "withNextMessage"])
    func rekeyStream(call: String) throws {
        let (pair, keys) = try EndpointPair.makeKeyedWithKeys(pages: 2, mode: .encrypted, options: .init(wait: .spin))
        let window = pair.window
        let stop = Atomic<Bool>(false)
        let forged = Atomic<Int>(0)
        nonisolated(unsafe) let cipher = keys.sending
        // The peer, holding the genuine keys, writes rekey frames as fast as
        // the ring takes them (each a valid frame: the receiver must process it).
        let attacker = ThreadResult {
            let producer = try RingProducer(window: window.base, geometry: window.geometry, ring: 0)
            while !stop.load(ordering: .relaxed) {
                guard try DeadlineTests.forge(.rekey, flags: 0, with: cipher, into: producer) else { continue }
                try cipher.rekey()
                forged.add(1, ordering: .relaxed)
            }
        }
        nonisolated(unsafe) let responder = pair.responder
        let started = ContinuousClock.now
        let outcome = try Watchdog.run("\(call) under a stream of rekey frames", limit: .seconds(5)) { () -> ChannelError? in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
            defer { buffer.deallocate() }
            do {
                switch call {
                case "receive(into:)": _ = try responder.receive(into: buffer, timeout: .milliseconds(100))
                case "receive()": _ = try responder.receive(timeout: .milliseconds(100))
                default: _ = try responder.withNextMessage(timeout: .milliseconds(100)) { $0.count }
                }
                return nil
            } catch let error as ChannelError {
                return error
            }
        }
        let elapsed = ContinuousClock.now - started
        stop.store(true, ordering: .relaxed)
        _ = try attacker.value(within: .seconds(5), "the rekey streamer")
        #expect(forged.load(ordering: .relaxed) > 100, "the stream of rekey frames did not happen")
        #expect(outcome == .timeout)
        #expect(elapsed < .seconds(1), "\(call) returned \(elapsed) after a 100 ms deadline")
    }

    @Test("a key confirmation after the handshake is a violation, also on the first session")
    func repeatedConfirmation() throws {
        let (pair, keys) = try EndpointPair.makeKeyedWithKeys(pages: 2, mode: .encrypted, options: .init(wait: .spin))
        let producer = try RingProducer(window: pair.window.base, geometry: pair.window.geometry, ring: 0)
        #expect(try Self.forge(.handshake, flags: ChannelEndpoint.HandshakeFlag.confirmation, with: keys.sending, into: producer))
        #expect(throws: ChannelError.protocolViolation("unexpected key confirmation after the handshake")) {
            _ = try pair.responder.receive(timeout: .milliseconds(100))
        }
    }

    @Test("caller input that used to trap is refused or clamped")
    func callerInput() throws {
        let pair = try EndpointPair.makeKeyed(pages: 2, mode: .encrypted)
        #expect(throws: ChannelError.invalidArgument("withSendBuffer needs a capacity of 0 or more bytes, not -1")) {
            try pair.initiator.withSendBuffer(capacity: -1) { _ in 0 }
        }
        #expect(throws: ChannelError.messageTooLarge(limit: pair.initiator.maximumMessageBytes)) {
            try pair.initiator.withSendBuffer(capacity: Int.max) { _ in 0 }
        }
        // A deadline too far away to represent is "never", not a wrapped
        // value in the past.
        #expect(ChannelEndpoint.nanoseconds(.seconds(Int64.max)) == .max)
        #expect(ChannelEndpoint.nanoseconds(.seconds(-5)) == 0)
        try pair.initiator.send([9], timeout: .seconds(Int64.max))
        #expect(try pair.responder.withNextMessage(timeout: .seconds(Int64.max)) { Array($0) } == [9])
        // A renewal point of UInt64.max means "never", not a hard limit that
        // wrapped to 2^20 - 1 messages.
        let never = ChannelEndpoint.Options(rehandshakeAfterMessages: .max)
        #expect(ChannelEndpoint.hardMessageLimit(never) == .max)
        #expect(ChannelEndpoint.hardMessageLimit(ChannelEndpoint.Options()) == (1 << 32) + (1 << 20))
        let huge = try EndpointPair.makeKeyed(pages: 2, mode: .isolated,
                                              options: .init(wait: .spin, rehandshakeAfter: .seconds(Int64.max),
                                                             rejectAfter: .seconds(Int64.max), handshakeTimeout: .seconds(Int64.max)))
        try huge.initiator.send([1])
        #expect(try huge.responder.receive(timeout: .seconds(1)) == [1])
    }

    @Test("encrypted withSendBuffer never leaves plaintext in the window, also when the writer fails")
    func noPlaintextInWindow() throws {
        let pair = try EndpointPair.makeKeyed(pages: 4, mode: .encrypted)
        let secret = Array("the plaintext must never reach the window".utf8)
        struct WriterFailed: Error {}
        func windowContains(_ needle: [UInt8]) -> Bool {
            let bytes = Array(UnsafeRawBufferPointer(start: pair.window.base, count: pair.window.geometry.windowBytes))
            return bytes.indices.dropLast(needle.count).contains { bytes[$0] == needle[0] && Array(bytes[$0..<$0 + needle.count]) == needle }
        }
        // A writer that throws after writing.
        #expect(throws: ChannelError.self) {
            try pair.initiator.withSendBuffer(capacity: 200) { buffer in
                buffer.copyBytes(from: secret)
                throw WriterFailed()
            }
        }
        #expect(!windowContains(secret))
        // A writer that returns a bad length.
        #expect(throws: ChannelError.messageTooLarge(limit: 200)) {
            try pair.initiator.withSendBuffer(capacity: 200) { buffer in
                buffer.copyBytes(from: secret)
                return 201
            }
        }
        #expect(!windowContains(secret))
        // A good one: sent, delivered, and still not in the window.
        try pair.initiator.withSendBuffer(capacity: 200) { buffer in
            buffer.copyBytes(from: secret)
            return secret.count
        }
        #expect(!windowContains(secret))
        #expect(try pair.responder.receive(timeout: .seconds(1)) == secret)
    }
}
