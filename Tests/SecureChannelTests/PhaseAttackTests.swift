import Altp2m
import ChannelCrypto
import Synchronization
import Testing
@testable import SecureChannel

/// Attacks at every phase of a session: before open (indices and lines the
/// victim reads first), during the handshake (frames flipped, truncated,
/// replayed), at a rekey and a fresh handshake, and at close. The frames
/// are changed by a ``WindowRelay`` between the two genuine endpoints, so
/// each test picks exactly which frame of which phase is attacked and
/// asserts that the attack happened. Every call runs under a limit and
/// fails the run at it instead of hanging.
@Suite("Attacks at every phase of a session", .serialized)
struct PhaseAttackTests {
    static let handshakeTimeout: Duration = .milliseconds(400)
    static let limit: Duration = .seconds(10)

    typealias Opened = Result<UncheckedBox<ChannelEndpoint>, ChannelError>

    /// Opens both sides concurrently (each on its own thread, under the
    /// hang limit) and returns what each open gave.
    static func openBoth(setup: SessionSetup, initiatorWindow: TestWindow, responderWindow: TestWindow,
                         options: ChannelEndpoint.Options) throws -> (initiator: Opened, responder: Opened) {
        let responder = ThreadResult { () -> Opened in
            do { return .success(UncheckedBox(try setup.open(.responder, on: responderWindow, options: options))) }
            catch let error as ChannelError { return .failure(error) }
        }
        let initiator = ThreadResult { () -> Opened in
            do { return .success(UncheckedBox(try setup.open(.initiator, on: initiatorWindow, options: options))) }
            catch let error as ChannelError { return .failure(error) }
        }
        return (try initiator.value(within: limit, "the initiator's open"),
                try responder.value(within: limit, "the responder's open"))
    }

    static func failure(_ result: Opened) -> ChannelError? {
        if case let .failure(error) = result { return error }
        return nil
    }

    // MARK: Before open

    @Test("an index the peer wrote before open ends both opens with a violation naming it, never a trap",
          arguments: [(0, "producer"), (0, "consumer"), (1, "producer"), (1, "consumer")])
    func indicesBeforeOpen(ring: Int, field: String) throws {
        for value in RingHostilePeerTests.hostileIndexValues(ringSize: 2048) {
            let window = try TestWindow(pages: 2)
            let control = ControlPage(base: window.base)
            (field == "producer" ? control.producer(ring: ring) : control.consumer(ring: ring)).pointee.store(value, ordering: .relaxed)
            let setup = SessionSetup()
            let options = ChannelEndpoint.Options(wait: .spin, handshakeTimeout: Self.handshakeTimeout)
            let (i, r) = try Self.openBoth(setup: setup, initiatorWindow: window, responderWindow: window, options: options)
            let errors = [Self.failure(i), Self.failure(r)].compactMap { $0 }
            if value % 16 != 0 {
                // Both ends read every index of their rings at open.
                #expect(errors.count == 2, "ring \(ring) \(field) index \(value): an open succeeded")
                #expect(errors.contains { error in
                    if case let .protocolViolation(why) = error { return why.contains("ring \(ring)") && why.contains("index") }
                    return false
                }, "ring \(ring) \(field) index \(value): no violation names the index: \(errors)")
            }
            for error in errors {
                switch error {
                case .protocolViolation, .timeout, .authenticationFailed: break
                default: Issue.record("ring \(ring) \(field) index \(value): unexpected \(error)")
                }
            }
        }
    }

    @Test("state lines full of garbage before open end in a documented error or a working session")
    func linesBeforeOpen() throws {
        var rng = SplitMix64(state: 0x5EED)
        var outcomes: [String: Int] = [:]
        for _ in 0..<40 {
            let window = try TestWindow(pages: 2)
            let control = ControlPage(base: window.base)
            for side in [ChannelSide.initiator, .responder] {
                let line = control.sideState(side)
                line.storeBytes(of: rng.next(), as: UInt64.self)
                line.storeBytes(of: rng.next(), toByteOffset: 8, as: UInt64.self)
            }
            let options = ChannelEndpoint.Options(wait: .spin, handshakeTimeout: Self.handshakeTimeout)
            let (i, r) = try Self.openBoth(setup: SessionSetup(), initiatorWindow: window, responderWindow: window, options: options)
            for result in [i, r] {
                switch result {
                case .success: outcomes["opened", default: 0] += 1
                case .failure(.peerClosed), .failure(.timeout), .failure(.protocolViolation):
                    outcomes["\(Self.failure(result)!)".prefix(20).description, default: 0] += 1
                case let .failure(error): Issue.record("unexpected \(error)")
                }
            }
        }
        print("garbage state lines before open: \(outcomes)")
        #expect(outcomes.values.reduce(0, +) == 80)
    }

    // MARK: The handshake

    /// What a handshake attack should produce at each end.
    enum Expect: Sendable {
        case authenticationFailed, anyFailure, opened
    }

    /// Opens through a relay that changes the frames `tamper` picks, and
    /// checks each end's outcome.
    func handshakeAttack(_ name: String, initiator expectI: Expect, responder expectR: Expect,
                         setup: SessionSetup = SessionSetup(),
                         tamper: @escaping WindowRelay.Tamper) throws {
        let relay = try WindowRelay(pages: 2, tamper: tamper)
        relay.start()
        let options = ChannelEndpoint.Options(wait: .spin, handshakeTimeout: Self.handshakeTimeout)
        let (i, r) = try Self.openBoth(setup: setup, initiatorWindow: relay.initiatorWindow,
                                       responderWindow: relay.responderWindow, options: options)
        try relay.finish()
        #expect(relay.tampered.load(ordering: .relaxed) == 1, "\(name): the attack did not happen")
        for (result, expected, end) in [(i, expectI, "initiator"), (r, expectR, "responder")] {
            switch (expected, result) {
            case (.opened, .success), (.authenticationFailed, .failure(.authenticationFailed)): break
            case (.anyFailure, .failure(let error)):
                switch error {
                case .authenticationFailed, .handshakeFailed, .protocolViolation, .timeout: break
                default: Issue.record("\(name): the \(end) failed with \(error)")
                }
            default:
                Issue.record("\(name): the \(end) gave \(result), expected \(expected)")
            }
        }
    }

    @Test("a flipped bit in the first handshake message fails the responder's authentication")
    func flipFirstMessage() throws {
        try handshakeAttack("flip message 1", initiator: .anyFailure, responder: .authenticationFailed) { frame, bytes in
            guard frame.ring == 0, frame.number == 0 else { return false }
            bytes[16 + 5] ^= 0x20
            return true
        }
    }

    @Test("a truncated first handshake message is refused")
    func truncateFirstMessage() throws {
        try handshakeAttack("truncate message 1", initiator: .anyFailure, responder: .anyFailure) { frame, bytes in
            guard frame.ring == 0, frame.number == 0 else { return false }
            bytes.storeBytes(of: (frame.header.length - 1).littleEndian, as: UInt32.self)
            return true
        }
    }

    @Test("a flipped bit in the handshake reply fails the initiator's authentication")
    func flipReply() throws {
        try handshakeAttack("flip message 2", initiator: .authenticationFailed, responder: .anyFailure) { frame, bytes in
            guard frame.ring == 1, frame.number == 0 else { return false }
            bytes[bytes.count - 1 - 3] ^= 0x01
            return true
        }
    }

    @Test("a flipped key confirmation fails the responder")
    func flipConfirmation() throws {
        try handshakeAttack("flip confirmation", initiator: .opened, responder: .authenticationFailed) { frame, bytes in
            guard frame.ring == 0, frame.number == 1 else { return false }
            bytes[16] ^= 0x80
            return true
        }
    }

    @Test("handshake messages replayed from an earlier session under the same keys are refused",
          arguments: [0, 1])
    func replayHandshake(ring: Int) throws {
        let setup = SessionSetup()
        // An earlier, genuine session between the same two agents.
        let earlier = try WindowRelay(pages: 2) { _, _ in false }
        earlier.start()
        let options = ChannelEndpoint.Options(wait: .spin, handshakeTimeout: Self.handshakeTimeout)
        let (i0, r0) = try Self.openBoth(setup: setup, initiatorWindow: earlier.initiatorWindow,
                                         responderWindow: earlier.responderWindow, options: options)
        let old = try earlier.finish()
        #expect(Self.failure(i0) == nil && Self.failure(r0) == nil)
        let recorded = try #require(old.first { $0.0.ring == ring && $0.0.number == 0 }?.1)
        // Now the same message of a new session is replaced by the old one.
        try handshakeAttack("replay message \(ring + 1)",
                            initiator: .authenticationFailed,
                            responder: .anyFailure, setup: setup) { frame, bytes in
            guard frame.ring == ring, frame.number == 0, bytes.count == recorded.count else { return false }
            recorded.withUnsafeBytes { bytes.copyMemory(from: $0) }
            return true
        }
    }

    // MARK: Rekey, fresh handshake, close

    /// Opens through a relay, streams `count` messages from the initiator
    /// (rekeys every 3, a fresh handshake after 10), and checks that every
    /// message the responder delivered is the next one sent, that the
    /// responder's error is `expected`, and that the attack happened.
    func sessionAttack(_ name: String, mode: ChannelMode = .encrypted, count: Int = 40, losesData: Bool = true,
                       expected: @escaping @Sendable (ChannelError) -> Bool,
                       tamper: @escaping WindowRelay.Tamper) throws {
        var setup = SessionSetup()
        setup.mode = mode
        let relay = try WindowRelay(pages: 2, tamper: tamper)
        relay.start()
        let options = ChannelEndpoint.Options(wait: .spin, rekeyInterval: 3, rehandshakeAfterMessages: 10,
                                              handshakeTimeout: .seconds(2))
        let (i, r) = try Self.openBoth(setup: setup, initiatorWindow: relay.initiatorWindow,
                                       responderWindow: relay.responderWindow, options: options)
        guard case let .success(initiator) = i, case let .success(responder) = r else {
            try relay.finish()
            Issue.record("\(name): the handshake failed: \(i), \(r)")
            return
        }
        let messages = (0..<count).map { n in (0..<(n * 7 % 90 + 1)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ n) } }
        let sender = ThreadResult { () -> ChannelError? in
            for message in messages {
                do { try initiator.value.send(message, timeout: .seconds(1)) } catch let error as ChannelError { return error }
            }
            do { try initiator.value.closeSending(timeout: .seconds(1)) } catch let error as ChannelError { return error }
            return nil
        }
        let receiver = ThreadResult { () -> (Int, ChannelError?) in
            var delivered = 0
            while true {
                do {
                    let message = try responder.value.receive(timeout: .seconds(1))
                    guard delivered < messages.count, message == messages[delivered] else {
                        Issue.record("\(name): message \(delivered) delivered altered or out of order")
                        return (delivered, nil)
                    }
                    delivered += 1
                } catch let error as ChannelError {
                    return (delivered, error)
                }
            }
        }
        let (delivered, error) = try receiver.value(within: Self.limit, "\(name): the responder's receive")
        _ = try sender.value(within: Self.limit, "\(name): the initiator's sends")
        try relay.finish()
        #expect(relay.tampered.load(ordering: .relaxed) >= 1, "\(name): the attack did not happen")
        #expect(error.map(expected) == true, "\(name): the responder ended with \(String(describing: error)) after \(delivered) messages")
        if losesData {
            #expect(delivered < count, "\(name): every message was delivered despite the attack")
        } else {
            #expect(delivered == count, "\(name): messages sent before the attacked frame were lost")
        }
    }

    static func isAuthenticationFailure(_ error: ChannelError) -> Bool {
        if case .authenticationFailed = error { return true }
        if case .protocolViolation = error { return true }
        return false
    }

    @Test("a flipped rekey frame ends the session; nothing before it is lost or altered")
    func flipRekey() throws {
        try sessionAttack("flip rekey", expected: Self.isAuthenticationFailure) { frame, bytes in
            guard frame.ring == 0, frame.header.type == .rekey else { return false }
            bytes[16 + 3] ^= 0x04
            return true
        }
    }

    @Test("a data frame from before a rekey replayed after it is refused")
    func replayAcrossRekey() throws {
        nonisolated(unsafe) var before: [UInt8]?
        nonisolated(unsafe) var done = false
        try sessionAttack("replay across rekey", expected: Self.isAuthenticationFailure) { frame, bytes in
            guard frame.ring == 0, frame.header.type == .data, !done else { return false }
            // The next data frame of the same size, three or more rekeys later.
            if let old = before, bytes.count == old.count {
                old.withUnsafeBytes { bytes.copyMemory(from: $0) }
                done = true
                return true
            }
            if frame.header.length == 2 + 16 { before = Array(bytes) }
            return false
        }
    }

    @Test("flipped frames of a fresh handshake end the session with a documented error",
          arguments: [(0, ChannelEndpoint.HandshakeFlag.rehandshakeRequest), (1, ChannelEndpoint.HandshakeFlag.rehandshakeReply),
                      (0, ChannelEndpoint.HandshakeFlag.rehandshakeSwitch)])
    func flipRehandshake(ring: Int, flags: UInt8) throws {
        try sessionAttack("flip fresh handshake frame \(flags)", expected: { error in
            switch error {
            case .authenticationFailed, .protocolViolation, .handshakeFailed, .timeout: return true
            default: return false
            }
        }) { frame, bytes in
            guard frame.ring == ring, frame.header.type == .handshake, frame.header.flags == flags else { return false }
            bytes[bytes.count - 1] ^= 0x10
            return true
        }
    }

    @Test("a flipped close frame is an authentication failure, not a clean close", arguments: [ChannelMode.encrypted, .isolated])
    func flipClose(mode: ChannelMode) throws {
        try sessionAttack("flip close (\(mode))", mode: mode, count: 5, losesData: false,
                          expected: Self.isAuthenticationFailure) { frame, bytes in
            guard frame.ring == 0, frame.header.type == .close else { return false }
            bytes[16] ^= 0x01
            return true
        }
    }

    @Test("a closed flag without its close frame is refused, not taken as the end of the stream")
    func forgedClosedFlag() throws {
        let pair = try EndpointPair.makeKeyed(pages: 2, mode: .encrypted)
        try pair.initiator.send([1, 2, 3])
        let control = ControlPage(base: pair.window.base)
        let closed = control.u32(at: ControlPage.Offset.initiatorState + ControlPage.SideField.closed)
        closed.pointee.store(ControlPage.ClosedBits.sendingClosed, ordering: .sequentiallyConsistent)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        // The message before the forged flag is still delivered...
        #expect(try pair.responder.receive(into: buffer, timeout: .seconds(1)) == 3)
        // ...and the flag alone does not end the stream as a clean close.
        #expect { _ = try pair.responder.receive(into: buffer, timeout: .milliseconds(50)) } throws: { error in
            if case .protocolViolation(let why) = error as? ChannelError { return why.contains("close frame") }
            return false
        }
    }
}
