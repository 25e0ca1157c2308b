import Altp2m
import CPlatform
import ChannelCrypto
import Foundation
import Synchronization
import Testing
@testable import SecureChannel

/// One channel's keys, opened again and again on the same window: each
/// `open` is a new incarnation of its side (a restarted agent process).
struct RestartSetup: @unchecked Sendable {
    let window: TestWindow
    let mode: ChannelMode
    let a = Curve25519.KeyAgreement.PrivateKey()
    let b = Curve25519.KeyAgreement.PrivateKey()
    let psk = SymmetricKey()
    var options = ChannelEndpoint.Options(wait: .spin, handshakeTimeout: .seconds(5))

    init(mode: ChannelMode = .encrypted, pages: Int = 4, aliased: Bool = false, oneWay: Bool = false) throws {
        window = try TestWindow(pages: pages, oneWay: oneWay, aliased: aliased)
        self.mode = mode
    }

    func parameters(_ side: ChannelSide) -> ChannelEndpoint.Parameters {
        ChannelEndpoint.Parameters(
            side: side, view: 3, geometry: window.geometry, mode: mode, suite: .chachapoly,
            notificationPort: 1, prologue: Array("secure-channel restart test".utf8),
            staticKey: side == .initiator ? a : b,
            peerStaticKey: side == .initiator ? b.publicKey : a.publicKey, presharedKey: psk)
    }

    /// Opens `side` on a thread of its own (the handshake waits for the peer).
    func open(_ side: ChannelSide) -> ThreadResult<UncheckedBox<ChannelEndpoint>> {
        let p = parameters(side)
        nonisolated(unsafe) let parameters = p
        let options = self.options
        let window = self.window
        return ThreadResult {
            let platform = LoopbackPlatform(domain: side == .initiator ? 1 : 2, channelView: 3, window: window)
            return UncheckedBox(try ChannelEndpoint(platform: platform, window: window.base, parameters: parameters, options: options))
        }
    }

    /// Opens both sides at once.
    func openPair() throws -> (initiator: ChannelEndpoint, responder: ChannelEndpoint) {
        let r = open(.responder), i = open(.initiator)
        let responder = Result { try r.value(within: .seconds(10), "the responder's open") }
        let initiator = try i.value(within: .seconds(10), "the initiator's open").value
        return (initiator, try responder.get().value)
    }
}

extension ChannelEndpoint {
    /// The error a receive ends with, or nil when it returned a message.
    func receiveError(timeout: Duration = .seconds(5)) -> ChannelError? {
        do { _ = try receive(timeout: timeout); return nil } catch { return error }
    }
}

private func text(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite("Restarts: a channel outlives its sessions", .serialized)
struct RestartTests {
    @Test("a side that reopens runs a fresh handshake; the survivor gets what was sent before, then peerRestarted, and reopens; nothing of the old session reaches the new one",
          arguments: [ChannelMode.encrypted, .isolated], [ChannelSide.initiator, .responder])
    func restartEitherSide(mode: ChannelMode, restarting: ChannelSide) throws {
        let setup = try RestartSetup(mode: mode)
        let first = try setup.openPair()
        let (old, survivor) = restarting == .initiator ? (first.initiator, first.responder) : (first.responder, first.initiator)
        try old.send(text("ping"))
        #expect(try survivor.receive(timeout: .seconds(5)) == text("ping"))
        // The survivor sends what the old incarnation never reads; the old
        // incarnation sends what the survivor has not read yet. Then the
        // old one is gone without a word (kill -9).
        try survivor.send(text("stale for the dead one"))
        try old.send(text("sent before the restart"))
        let restarted = setup.open(restarting)
        // What the old incarnation sent is still delivered; then the session is over.
        #expect(try survivor.receive(timeout: .seconds(5)) == text("sent before the restart"))
        #expect(survivor.receiveError() == .peerRestarted)
        #expect(survivor.receiveError() == .peerRestarted, "the session stays over")
        let reopened = try Watchdog.run("the survivor's reopen", limit: .seconds(10)) {
            UncheckedBox(try setup.open(restarting.peer).value(within: .seconds(10), "the survivor's open").value)
        }.value
        let fresh = try restarted.value(within: .seconds(10), "the restarted side's open").value
        #expect(fresh.handshakeHash == reopened.handshakeHash)
        #expect(fresh.handshakeHash != old.handshakeHash)
        try reopened.send(text("new session"))
        #expect(try fresh.receive(timeout: .seconds(5)) == text("new session"), "the stale message must not come first")
        try fresh.send(text("back"))
        #expect(try reopened.receive(timeout: .seconds(5)) == text("back"))
    }

    @Test("after a polite close either side reopens first and the sessions meet again; the closed flags of the old session do not end the new one",
          arguments: [ChannelSide.initiator, .responder])
    func closeThenReopen(closing: ChannelSide) throws {
        let setup = try RestartSetup()
        let first = try setup.openPair()
        let (closer, survivor) = closing == .initiator ? (first.initiator, first.responder) : (first.responder, first.initiator)
        try closer.send(text("bye"))
        let box = UncheckedBox(closer)
        let closed = ThreadResult { try box.value.close(timeout: .seconds(5)) }
        #expect(try survivor.receive(timeout: .seconds(5)) == text("bye"))
        #expect(survivor.receiveError() == .peerClosed)
        try survivor.close(timeout: .seconds(5))
        try closed.value(within: .seconds(10), "the polite close")
        // The closing side comes back first this time, the survivor later.
        let again = setup.open(closing)
        usleep(50_000)
        let other = try setup.open(closing.peer).value(within: .seconds(10), "the survivor's reopen").value
        let back = try again.value(within: .seconds(10), "the closer's reopen").value
        try back.send(text("hello again"))
        #expect(try other.receive(timeout: .seconds(5)) == text("hello again"))
        try other.send(text("welcome"))
        #expect(try back.receive(timeout: .seconds(5)) == text("welcome"))
    }

    @Test("many restarts in a row, alternating sides, over a ring that wraps: every session delivers exactly its own messages")
    func manyRestarts() throws {
        var setup = try RestartSetup(pages: 3)
        setup.options.handshakeTimeout = .seconds(5)
        var pair = try setup.openPair()
        for round in 0..<40 {
            let restarting: ChannelSide = round % 2 == 0 ? .initiator : .responder
            let (old, survivor) = restarting == .initiator ? (pair.initiator, pair.responder) : (pair.responder, pair.initiator)
            for i in 0..<5 { try old.send(text("r\(round) m\(i) " + String(repeating: "x", count: 300))) }
            for i in 0..<3 { try survivor.send(text("unread r\(round) m\(i)")) }
            let restarted = setup.open(restarting)
            for i in 0..<5 { #expect(try survivor.receive(timeout: .seconds(5)) == text("r\(round) m\(i) " + String(repeating: "x", count: 300))) }
            #expect(survivor.receiveError() == .peerRestarted)
            let reopened = try setup.open(restarting.peer).value(within: .seconds(10), "reopen \(round)").value
            let fresh = try restarted.value(within: .seconds(10), "restart \(round)").value
            try reopened.send(text("first of session \(round)"))
            #expect(try fresh.receive(timeout: .seconds(5)) == text("first of session \(round)"))
            pair = restarting == .initiator ? (fresh, reopened) : (reopened, fresh)
        }
    }

    @Test("one-way: a restarted writer is seen by the reader, which reopens; a restarted reader waits for the writer's next incarnation")
    func oneWayRestarts() throws {
        var setup = try RestartSetup(oneWay: true)
        setup.options.handshakeTimeout = .milliseconds(500)
        let first = try setup.openPair()
        try first.initiator.send(text("a"))
        #expect(try first.responder.receive(timeout: .seconds(5)) == text("a"))
        // The writer restarts (its open returns at once) and writes on.
        try first.initiator.send(text("before"))
        let writer = try setup.open(.initiator).value(within: .seconds(5), "the writer's reopen").value
        try writer.send(text("b"))
        #expect(try first.responder.receive(timeout: .seconds(5)) == text("before"))
        #expect(first.responder.receiveError() == .peerRestarted)
        let reader = try setup.open(.responder).value(within: .seconds(5), "the reader's reopen").value
        #expect(try reader.receive(timeout: .seconds(5)) == text("b"), "the new reader starts at the writer's new session")
        // The reader restarts: the writer's session was read by its
        // predecessor, so it waits (and times out) until the writer opens again.
        let lone = Result { try setup.open(.responder).value(within: .seconds(5), "a reader without a new writer") }
        guard case .failure(let error) = lone else { Issue.record("a reader paired with a session its predecessor read"); return }
        #expect(error as? ChannelError == .timeout)
        let again = setup.open(.responder)
        let writer2 = try setup.open(.initiator).value(within: .seconds(5), "the writer's second reopen").value
        try writer2.send(text("c"))
        #expect(try again.value(within: .seconds(5), "the reader's open").value.receive(timeout: .seconds(5)) == text("c"))
    }

    @Test("old-session frames written again into the new session are refused as an attack, never delivered")
    func replayOldFramesIntoNewSession() throws {
        let setup = try RestartSetup()
        let first = try setup.openPair()
        let ring = ChannelSide.initiator.sendRing
        let control = ControlPage(base: setup.window.base)
        let before = control.producer(ring: ring).pointee.load(ordering: .acquiring)
        try first.initiator.send(text("old secret"))
        let after = control.producer(ring: ring).pointee.load(ordering: .acquiring)
        let offset = setup.window.geometry.ringOffsets[ring] + Int(before & UInt64(setup.window.geometry.ringSize - 1))
        let oldFrame = Array(UnsafeRawBufferPointer(start: setup.window.base + offset, count: Int(after - before)))
        #expect(try first.responder.receive(timeout: .seconds(5)) == text("old secret"))
        // Both sides restart.
        let second = try setup.openPair()
        try second.initiator.send(text("new"))
        #expect(try second.responder.receive(timeout: .seconds(5)) == text("new"))
        // The attacker (the peer, or code that reached the view) copies the
        // old data frame in as the initiator's next frame.
        let produced = control.producer(ring: ring).pointee.load(ordering: .acquiring)
        let at = setup.window.geometry.ringOffsets[ring] + Int(produced & UInt64(setup.window.geometry.ringSize - 1))
        oldFrame.withUnsafeBytes { (setup.window.base + at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        control.producer(ring: ring).pointee.store(produced + UInt64(oldFrame.count), ordering: .sequentiallyConsistent)
        let error = second.responder.receiveError()
        #expect(error == .authenticationFailed || error.map { if case .protocolViolation = $0 { true } else { false } } == true,
                "an old frame in the new session is an attack: \(String(describing: error))")
    }

    @Test("a new incarnation whose start points back into frames already read is a violation, not a replay")
    func incarnationPointingBack() throws {
        let setup = try RestartSetup()
        let pair = try setup.openPair()
        for i in 0..<3 { try pair.initiator.send(text("m\(i)")) }
        for i in 0..<3 { #expect(try pair.responder.receive(timeout: .seconds(5)) == text("m\(i)")) }
        // A hostile initiator: a new incarnation starting at 0 (the
        // frames just read), then one more frame published.
        let control = ControlPage(base: setup.window.base)
        let line = ControlPage.Offset.initiatorState
        control.u64(at: line + ControlPage.SideField.start).pointee.store(0, ordering: .sequentiallyConsistent)
        control.u32(at: line + ControlPage.SideField.incarnation).pointee.add(1, ordering: .sequentiallyConsistent)
        try pair.initiator.send(text("after"))
        let error = pair.responder.receiveError()
        guard case .protocolViolation(let why) = error else {
            Issue.record("expected a violation, got \(String(describing: error))")
            return
        }
        #expect(why.contains("session start"), "\(why)")
    }

    @Test("a start past the producer index is refused when pairing; a start behind what this side read is waited past (timeout), never read")
    func pairingRefusesBadStarts() throws {
        let setup = try RestartSetup()
        let control = ControlPage(base: setup.window.base)
        let line = ControlPage.Offset.initiatorState
        // The "initiator" never opens; a hostile writer fakes its line.
        control.u64(at: line + ControlPage.SideField.start).pointee.store(4096, ordering: .sequentiallyConsistent)
        control.u32(at: line + ControlPage.SideField.incarnation).pointee.store(7, ordering: .sequentiallyConsistent)
        var quick = setup
        quick.options.handshakeTimeout = .milliseconds(300)
        let error = Result { try quick.open(.responder).value(within: .seconds(5), "the responder's open") }
        guard case .failure(let failure) = error, case .protocolViolation(let why)? = failure as? ChannelError else {
            Issue.record("expected a violation, got \(error)")
            return
        }
        #expect(why.contains("past its producer index"), "\(why)")
        // Behind: the responder's consumer already read past the start.
        control.producer(ring: 0).pointee.store(64, ordering: .sequentiallyConsistent)
        control.consumer(ring: 0).pointee.store(64, ordering: .sequentiallyConsistent)
        control.u64(at: line + ControlPage.SideField.start).pointee.store(0, ordering: .sequentiallyConsistent)
        let behind = Result { try quick.open(.responder).value(within: .seconds(5), "the responder's open") }
        guard case .failure(let timeout) = behind else { Issue.record("opened on a session it had read"); return }
        #expect(timeout as? ChannelError == .timeout)
    }

    @Test("a racing writer bumping incarnations and starts while a side restarts: no trap, no hang, nothing forged or stale delivered")
    func racingTheRestart() throws {
        let setup = try RestartSetup(aliased: true)
        let alias = UncheckedBox(setup.window.alias!)
        let stop = Atomic<Bool>(false)
        let writes = Atomic<Int>(0)
        let attacker = ThreadResult { () -> Void in
            var rng = SplitMix64(state: 0x5EED)
            let page = ControlPage(base: alias.value)
            while !stop.load(ordering: .relaxed) {
                let line = Bool.random(using: &rng) ? ControlPage.Offset.initiatorState : ControlPage.Offset.responderState
                if Bool.random(using: &rng) {
                    page.u32(at: line + ControlPage.SideField.incarnation).pointee.add(1, ordering: .relaxed)
                } else {
                    let start = UInt64.random(in: 0..<8192, using: &rng) & ~15
                    page.u64(at: line + ControlPage.SideField.start).pointee.store(start, ordering: .relaxed)
                }
                writes.add(1, ordering: .relaxed)
                usleep(UInt32.random(in: 0..<10_000, using: &rng))
            }
        }
        defer { stop.store(true, ordering: .relaxed); _ = try? attacker.value(within: .seconds(5), "the attacker") }
        var outcomes: [String: Int] = [:]
        var delivered = 0, rounds = 0, restarts = 0
        var quick = setup
        quick.options.handshakeTimeout = .milliseconds(500)
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline {
            rounds += 1
            let round = rounds
            let opened = Result { try quick.openPairWithin() }
            guard case .success(let pair) = opened else {
                outcomes["open: \(Self.kind(opened))", default: 0] += 1
                continue
            }
            // Traffic, then the initiator restarts while the responder reads.
            var ok = true
            for i in 0..<5 where ok {
                let message = text("round \(round) message \(i)")
                do {
                    try pair.initiator.send(message, timeout: .milliseconds(200))
                    let got = try pair.responder.receive(timeout: .milliseconds(200))
                    #expect(got == message, "a delivery that is not the next genuine message of this session")
                    delivered += 1
                } catch {
                    outcomes[Self.kind(Result<Void, any Error>.failure(error)), default: 0] += 1
                    ok = false
                }
            }
            let restarted = quick.open(.initiator)
            let survivorEnd = pair.responder.receiveError(timeout: .milliseconds(700))
            outcomes["survivor: \(Self.kind(Result<Void, any Error>.failure(survivorEnd ?? .closed)))", default: 0] += 1
            let reopened = quick.open(.responder)
            let both = (Result { try restarted.value(within: .seconds(5), "the restarted open") },
                        Result { try reopened.value(within: .seconds(5), "the survivor's reopen") })
            if case .success(let i) = both.0, case .success(let r) = both.1 {
                restarts += 1
                let message = text("after restart \(round)")
                do {
                    try i.value.send(message, timeout: .milliseconds(200))
                    #expect(try r.value.receive(timeout: .milliseconds(200)) == message, "a stale or forged delivery after a restart")
                    delivered += 1
                } catch {
                    outcomes["after restart: \(Self.kind(Result<Void, any Error>.failure(error)))", default: 0] += 1
                }
            }
        }
        print("racing the restart: \(rounds) rounds, \(restarts) restarts met, \(writes.load(ordering: .relaxed)) attacking writes, \(delivered) delivered, outcomes \(outcomes)")
        #expect(writes.load(ordering: .relaxed) > 100, "the attack must happen")
        #expect(restarts > 0, "some restarts must complete under the attack")
        #expect(!outcomes.keys.contains { $0.contains("other") && !$0.hasPrefix("survivor: other: the channel is closed") }, "undocumented errors: \(outcomes)")
    }

    static func kind<T>(_ result: Result<T, any Error>) -> String {
        guard case .failure(let error) = result else { return "ok" }
        switch error as? ChannelError {
        case .peerRestarted?: return "peerRestarted"
        case .protocolViolation?: return "protocolViolation"
        case .authenticationFailed?: return "authenticationFailed"
        case .timeout?: return "timeout"
        case .peerClosed?: return "peerClosed"
        case .peerDied?: return "peerDied"
        case .descriptorsReissued?: return "descriptorsReissued"
        default: return "other: \(error)"
        }
    }
}

extension RestartSetup {
    /// Both sides at once, each under a hang check; an open that fails
    /// fails the pair.
    func openPairWithin() throws -> (initiator: ChannelEndpoint, responder: ChannelEndpoint) {
        let r = open(.responder), i = open(.initiator)
        let responder = Result { try r.value(within: .seconds(10), "the responder's open") }
        let initiator = Result { try i.value(within: .seconds(10), "the initiator's open") }
        return (try initiator.get().value, try responder.get().value)
    }
}
