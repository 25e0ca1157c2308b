import Altp2m
import Glibc
import ChannelCrypto
import Synchronization
import Testing
@testable import SecureChannel

/// Two endpoints over one in-process window, each opened on its own thread
/// (the handshake needs both sides running).
struct EndpointPair: @unchecked Sendable {
    let initiator: ChannelEndpoint
    let responder: ChannelEndpoint
    let window: TestWindow

    static func make(pages: Int = 4, mode: ChannelMode = .encrypted, suite: ChannelSuite = .chachapoly,
                     options: ChannelEndpoint.Options = .init(wait: .spin),
                     responderPSK: SymmetricKey? = nil, oneWay: Bool = false) throws -> EndpointPair {
        let window = try TestWindow(pages: pages, oneWay: oneWay)
        let a = Curve25519.KeyAgreement.PrivateKey(), b = Curve25519.KeyAgreement.PrivateKey()
        let psk = SymmetricKey()
        let prologue = Array("secure-channel test".utf8)
        func parameters(_ side: ChannelSide) -> ChannelEndpoint.Parameters {
            ChannelEndpoint.Parameters(
                side: side, view: 3, geometry: window.geometry, mode: mode, suite: suite,
                notificationPort: 1, prologue: prologue,
                staticKey: side == .initiator ? a : b,
                peerStaticKey: side == .initiator ? b.publicKey : a.publicKey,
                presharedKey: side == .initiator ? psk : (responderPSK ?? psk))
        }
        let initiatorParameters = parameters(.initiator), responderParameters = parameters(.responder)
        nonisolated(unsafe) let pi = initiatorParameters
        nonisolated(unsafe) let pr = responderParameters
        let responderThread = ThreadResult { () throws -> UncheckedBox<ChannelEndpoint> in
            let platform = LoopbackPlatform(domain: 2, channelView: 3, window: window)
            return UncheckedBox(try ChannelEndpoint(platform: platform, window: window.base, parameters: pr, options: options))
        }
        let initiatorThread = ThreadResult { () throws -> UncheckedBox<ChannelEndpoint> in
            let platform = LoopbackPlatform(domain: 1, channelView: 3, window: window)
            return UncheckedBox(try ChannelEndpoint(platform: platform, window: window.base, parameters: pi, options: options))
        }
        let responderResult = Result { try responderThread.value() }
        let initiator = try initiatorThread.value().value
        let responder = try responderResult.get().value
        return EndpointPair(initiator: initiator, responder: responder, window: window)
    }
}

extension EndpointPair {
    /// Two endpoints keyed by a KKpsk2 handshake run on the calling thread
    /// (no ring traffic): cheap enough to make thousands of sessions.
    static func makeKeyed(pages: Int, mode: ChannelMode,
                          options: ChannelEndpoint.Options = ChannelEndpoint.Options(wait: .spin)) throws -> EndpointPair {
        try makeKeyedWithKeys(pages: pages, mode: mode, options: options).pair
    }

    /// Like ``makeKeyed(pages:mode:options:)``, and also returns the
    /// initiator's session keys (the same cipher objects its endpoint
    /// holds), for tests that forge the initiator's frames themselves.
    static func makeKeyedWithKeys(pages: Int, mode: ChannelMode, suite: ChannelSuite = .chachapoly,
                                  options: ChannelEndpoint.Options,
                                  window given: TestWindow? = nil) throws -> (pair: EndpointPair, initiatorKeys: HandshakeResult) {
        let window = try given ?? TestWindow(pages: pages)
        let a = Curve25519.KeyAgreement.PrivateKey(), b = Curve25519.KeyAgreement.PrivateKey()
        let psk = SymmetricKey()
        let noise = NoiseProtocol(pattern: .kkpsk2, cipher: suite == .aesgcm ? .aesGCM : .chaChaPoly, hash: .blake2b)
        let i = try HandshakeState(noise, role: .initiator, staticKey: a, remoteStaticKey: b.publicKey, presharedKeys: [psk])
        let r = try HandshakeState(noise, role: .responder, staticKey: b, remoteStaticKey: a.publicKey, presharedKeys: [psk])
        _ = try r.readMessage(try i.writeMessage())
        _ = try i.readMessage(try r.writeMessage())
        func parameters(_ side: ChannelSide) -> ChannelEndpoint.Parameters {
            ChannelEndpoint.Parameters(side: side, view: 3, geometry: window.geometry, mode: mode, suite: suite,
                                       notificationPort: 1, prologue: [], staticKey: side == .initiator ? a : b,
                                       peerStaticKey: side == .initiator ? b.publicKey : a.publicKey, presharedKey: psk)
        }
        let initiatorKeys = try i.finish()
        let initiator = try ChannelEndpoint(platform: LoopbackPlatform(domain: 1, channelView: 3, window: window), window: window.base,
                                            parameters: parameters(.initiator), options: options, keys: initiatorKeys)
        let responder = try ChannelEndpoint(platform: LoopbackPlatform(domain: 2, channelView: 3, window: window), window: window.base,
                                            parameters: parameters(.responder), options: options, keys: try r.finish())
        return (EndpointPair(initiator: initiator, responder: responder, window: window), initiatorKeys)
    }

    /// Where the next frame written into `ring` will start (no padding
    /// expected in these short tests).
    func nextFrame(ring: Int) -> UnsafeMutableRawPointer {
        let produced = ControlPage(base: window.base).producer(ring: ring).pointee.load(ordering: .acquiring)
        return window.base + window.geometry.ringOffsets[ring] + Int(produced & UInt64(window.geometry.ringSize - 1))
    }
}

struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

@Suite("Channel endpoint", .serialized)
struct ChannelEndpointTests {
    @Test("the handshake agrees on a hash and messages flow both ways, encrypted and isolated",
          arguments: [ChannelMode.encrypted, .isolated])
    func roundTrip(mode: ChannelMode) throws {
        let pair = try EndpointPair.make(mode: mode)
        #expect(pair.initiator.handshakeHash == pair.responder.handshakeHash)
        #expect(pair.initiator.handshakeHash.count == 64)
        for size in [0, 1, 63, 64, 1000, pair.initiator.maximumMessageBytes] {
            let message = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) }
            try pair.initiator.send(message)
            #expect(try pair.responder.receive(timeout: .seconds(5)) == message)
            try pair.responder.send(message.reversed())
            #expect(try pair.initiator.receive(timeout: .seconds(5)) == message.reversed())
        }
    }

    @Test("AES-256-GCM sessions work where the CPU has AES-NI", .enabled(if: AESGCM.isAvailable, "skipped: this CPU lacks AES-NI, so libsodium offers no AES-256-GCM"))
    func aesgcm() throws {
        let pair = try EndpointPair.make(suite: .aesgcm)
        try pair.initiator.send([1, 2, 3])
        #expect(try pair.responder.receive(timeout: .seconds(5)) == [1, 2, 3])
    }

    @Test("encrypted frames in the ring are not the plaintext")
    func ciphertextInRing() throws {
        let pair = try EndpointPair.make()
        let secret = Array("attack at dawn, attack at dawn!!".utf8)
        try pair.initiator.send(secret)
        let ring = UnsafeRawBufferPointer(start: pair.window.base + pair.window.geometry.ringOffsets[0],
                                          count: pair.window.geometry.ringSize)
        let bytes = Array(ring)
        #expect(!bytes.indices.dropLast(secret.count).contains { Array(bytes[$0..<$0 + secret.count]) == secret })
        #expect(try pair.responder.receive(timeout: .seconds(5)) == secret)
    }

    @Test("a wrong pre-shared key fails the handshake with authenticationFailed")
    func wrongPSK() throws {
        #expect(throws: ChannelError.authenticationFailed) {
            _ = try EndpointPair.make(options: .init(wait: .spin, handshakeTimeout: .milliseconds(500)),
                                            responderPSK: SymmetricKey())
        }
    }

    @Test("a flipped ciphertext bit in shared memory is reported as authenticationFailed, and the channel stays failed")
    func tamper() throws {
        let pair = try EndpointPair.make()
        let frame = pair.nextFrame(ring: 0)
        try pair.initiator.send([UInt8](repeating: 0x41, count: 100))
        (frame + 16 + 5).storeBytes(of: (frame + 16 + 5).load(as: UInt8.self) ^ 1, as: UInt8.self)
        #expect(throws: ChannelError.authenticationFailed) { _ = try pair.responder.receive(timeout: .seconds(1)) }
        #expect(throws: ChannelError.authenticationFailed) { _ = try pair.responder.receive(timeout: .seconds(1)) }
    }

    @Test("a replayed (rewound) sequence number is a protocol violation")
    func replay() throws {
        let pair = try EndpointPair.make()
        let first = pair.nextFrame(ring: 0)
        try pair.initiator.send([1])
        let second = pair.nextFrame(ring: 0)
        try pair.initiator.send([2])
        // Rewrite the second frame's sequence number to the first one's.
        let firstSequence = (first + 8).load(as: UInt64.self)
        _ = try pair.responder.receive(timeout: .seconds(1))
        (second + 8).storeBytes(of: firstSequence, as: UInt64.self)
        #expect(throws: ChannelError.protocolViolation("frame sequence \(firstSequence), expected \(firstSequence + 1)")) {
            _ = try pair.responder.receive(timeout: .seconds(1))
        }
    }

    @Test("a message that does not fit the buffer is kept, not lost")
    func smallBuffer() throws {
        let pair = try EndpointPair.make()
        try pair.initiator.send([UInt8](repeating: 9, count: 200))
        let small = UnsafeMutableRawBufferPointer.allocate(byteCount: 100, alignment: 16)
        defer { small.deallocate() }
        #expect(throws: ChannelError.bufferTooSmall(needed: 200)) { _ = try pair.responder.tryReceive(into: small) }
        #expect(try pair.responder.receive(timeout: .seconds(5)) == [UInt8](repeating: 9, count: 200))
    }

    @Test("messages larger than a frame are refused with the limit")
    func tooLarge() throws {
        let pair = try EndpointPair.make(pages: 2)
        let limit = pair.initiator.maximumMessageBytes
        #expect(limit == 1024 - 16 - 16)
        #expect(throws: ChannelError.messageTooLarge(limit: limit)) { try pair.initiator.send([UInt8](repeating: 0, count: limit + 1)) }
    }

    @Test("rekeying every few messages keeps both sides in step")
    func rekey() throws {
        let pair = try EndpointPair.make(options: .init(wait: .spin, rekeyInterval: 3))
        for i in 0..<50 {
            try pair.initiator.send([UInt8(i)])
            #expect(try pair.responder.receive(timeout: .seconds(5)) == [UInt8(i)])
        }
    }

    @Test("close flushes every message, then the peer sees peerClosed")
    func close() throws {
        let pair = try EndpointPair.make(pages: 2)
        let receiver = ThreadResult { () throws -> [[UInt8]] in
            var got: [[UInt8]] = []
            while true {
                do { got.append(try pair.responder.receive(timeout: .seconds(10))) } catch ChannelError.peerClosed { return got }
            }
        }
        for i in 0..<100 { try pair.initiator.send([UInt8](repeating: UInt8(i), count: 300)) }
        try pair.initiator.closeSending()
        let got = try receiver.value()
        #expect(got.count == 100)
        #expect(got.last == [UInt8](repeating: 99, count: 300))
        #expect(throws: ChannelError.closed) { try pair.initiator.send([1]) }
    }

    @Test("the host's close flag ends a waiting receive with peerDied")
    func hostClosed() throws {
        let pair = try EndpointPair.make(options: .init(wait: .block))
        let control = ControlPage(base: pair.window.base)
        control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.reason).pointee.store(2, ordering: .relaxed)
        control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.closed).pointee.store(1, ordering: .releasing)
        #expect(throws: ChannelError.peerDied("the peer's domain died")) { _ = try pair.initiator.receive(timeout: .seconds(5)) }
    }

    @Test("receive times out when nothing arrives", arguments: [WaitStrategy.spin, .block, .adaptive])
    func timeout(wait: WaitStrategy) throws {
        let pair = try EndpointPair.make(options: .init(wait: wait))
        #expect(throws: ChannelError.timeout) { _ = try pair.initiator.receive(timeout: .milliseconds(50)) }
    }

    @Test("blocking waits deliver 2000 messages between threads", arguments: [WaitStrategy.block, .adaptive])
    func blocking(wait: WaitStrategy) throws {
        let pair = try EndpointPair.make(pages: 2, options: .init(wait: wait))
        let echo = ThreadResult {
            for _ in 0..<2000 { try pair.responder.send(try pair.responder.receive(timeout: .seconds(10)), timeout: .seconds(10)) }
        }
        for i in 0..<2000 {
            let m = [UInt8(truncatingIfNeeded: i), UInt8(truncatingIfNeeded: i >> 8)]
            try pair.initiator.send(m, timeout: .seconds(10))
            #expect(try pair.initiator.receive(timeout: .seconds(10)) == m)
        }
        try echo.value()
    }
}

@Suite("Long-lived sessions", .serialized)
struct LongLivedSessionTests {
    @Test("fresh handshakes run in band as keys age, with rekeys, while traffic flows both ways")
    func rehandshake() throws {
        let pair = try EndpointPair.make(options: .init(wait: .spin, rekeyInterval: 7, rehandshakeAfter: .milliseconds(15)))
        let firstHash = pair.initiator.handshakeHash
        for i in 0..<400 {
            let m = (0..<(i % 50)).map { UInt8(truncatingIfNeeded: $0 &+ i) }
            try pair.initiator.send(m, timeout: .seconds(5))
            #expect(try pair.responder.receive(timeout: .seconds(5)) == m)
            try pair.responder.send(m.reversed(), timeout: .seconds(5))
            #expect(try pair.initiator.receive(timeout: .seconds(5)) == m.reversed())
            if i % 20 == 0 { usleep(2_000) }
        }
        #expect(pair.initiator.handshakeCount > 3)
        #expect(pair.initiator.handshakeCount == pair.responder.handshakeCount)
        #expect(pair.initiator.handshakeHash == pair.responder.handshakeHash)
        #expect(pair.initiator.handshakeHash != firstHash)
    }

    @Test("a sender that never receives still completes fresh handshakes")
    func oneDirection() throws {
        let pair = try EndpointPair.make(options: .init(wait: .spin, rehandshakeAfter: .milliseconds(10), rejectAfter: .milliseconds(200)))
        let receiver = ThreadResult { () throws -> Int in
            var count = 0
            while true {
                do { _ = try pair.responder.receive(timeout: .seconds(5)); count += 1 } catch ChannelError.peerClosed { return count }
            }
        }
        let end = ContinuousClock.now + .milliseconds(500)
        var sent = 0
        while ContinuousClock.now < end {
            try pair.initiator.send([UInt8(truncatingIfNeeded: sent)], timeout: .seconds(5))
            sent += 1
        }
        try pair.initiator.closeSending()
        #expect(try receiver.value() == sent)
        #expect(pair.initiator.handshakeCount > 3)
    }

    @Test("a side whose peer never renews the keys refuses to send after the hard limit")
    func hardLimit() throws {
        let pair = try EndpointPair.make(options: .init(wait: .spin, rehandshakeAfter: .seconds(3600), rejectAfter: .milliseconds(30)))
        try pair.responder.send([1])
        usleep(40_000)
        #expect(throws: ChannelError.self) { try pair.responder.send([2]) }
        do { try pair.responder.send([2]) } catch { if case .keyLimitReached = error {} else { Issue.record("unexpected \(error)") } }
    }

    @Test("a waiting side declares a silent peer dead after the liveness timeout")
    func liveness() throws {
        let pair = try EndpointPair.make(options: .init(wait: .adaptive, livenessTimeout: .milliseconds(100)))
        let started = ContinuousClock.now
        #expect(throws: ChannelError.peerDied("no sign of life from the peer for 0.1 seconds")) {
            _ = try pair.initiator.receive(timeout: .seconds(5))
        }
        #expect(ContinuousClock.now - started < .seconds(1))
    }

    @Test("two sides that keep waiting on each other are never declared dead")
    func livenessOfWaitingPeer() throws {
        let pair = try EndpointPair.make(options: .init(wait: .adaptive, livenessTimeout: .milliseconds(100)))
        let waiter = ThreadResult { () throws -> [UInt8] in try pair.responder.receive(timeout: .seconds(5)) }
        // Both wait (each moving its liveness counter) for four timeouts.
        #expect(throws: ChannelError.timeout) { _ = try pair.initiator.receive(timeout: .milliseconds(400)) }
        try pair.initiator.send([42])
        #expect(try waiter.value() == [42])
    }
}

@Suite("Zero-copy receive", .serialized)
struct ZeroCopyReceiveTests {
    @Test("withNextMessage lends each message once, in order, in both modes", arguments: [ChannelMode.encrypted, .isolated])
    func lend(mode: ChannelMode) throws {
        let pair = try EndpointPair.make(pages: 2, mode: mode)
        for i in 0..<300 {
            let message = (0..<(i % 97)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) }
            try pair.initiator.send(message, timeout: .seconds(5))
            let got = try pair.responder.withNextMessage(timeout: .seconds(5)) { Array($0) }
            #expect(got == message)
        }
        #expect(throws: ChannelError.timeout) { _ = try pair.responder.withNextMessage(timeout: .milliseconds(20)) { $0.count } }
    }

    @Test("in isolated mode the lent bytes are the ones in the window (no copy)")
    func inPlace() throws {
        let pair = try EndpointPair.make(pages: 2, mode: .isolated)
        let frame = pair.nextFrame(ring: 0)
        try pair.initiator.send([1, 2, 3, 4])
        let address = try pair.responder.withNextMessage(timeout: .seconds(5)) { UnsafeRawPointer($0.baseAddress!) }
        #expect(address == UnsafeRawPointer(frame + 16))
    }

    @Test("a rewound sequence number in isolated mode is still a protocol violation, on every receive call",
          arguments: ["withNextMessage", "receive(into:)", "tryReceive", "receive()"])
    func sequence(call: String) throws {
        let pair = try EndpointPair.makeKeyed(pages: 2, mode: .isolated)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 16)
        defer { buffer.deallocate() }
        try pair.initiator.send([1])
        #expect(try pair.responder.receive(into: buffer, timeout: .seconds(1)) == 1)
        let second = pair.nextFrame(ring: 0)
        try pair.initiator.send([2])
        // The peer (or anyone in the window) rewinds the second frame's
        // sequence number: a replay of the first.
        (second + 8).storeBytes(of: UInt64(0), as: UInt64.self)
        #expect(throws: ChannelError.protocolViolation("frame sequence 0, expected 1")) {
            switch call {
            case "withNextMessage": _ = try pair.responder.withNextMessage(timeout: .seconds(1)) { $0.count }
            case "receive(into:)": _ = try pair.responder.receive(into: buffer, timeout: .seconds(1))
            case "tryReceive": _ = try pair.responder.tryReceive(into: buffer)
            default: _ = try pair.responder.receive(timeout: .seconds(1))
            }
        }
    }
}

@Suite("Polling")
struct PollingTests {
    @Test("a poller with tryReceive learns that the host tore the channel down")
    func tryReceiveSeesHostClose() throws {
        let pair = try EndpointPair.makeKeyed(pages: 2, mode: .encrypted)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 16)
        defer { buffer.deallocate() }
        #expect(try pair.responder.tryReceive(into: buffer) == nil)
        let control = ControlPage(base: pair.window.base)
        control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.reason).pointee.store(1, ordering: .relaxed)
        control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.closed).pointee.store(1, ordering: .releasing)
        #expect(throws: ChannelError.peerDied("the peer's domain died")) { _ = try pair.responder.tryReceive(into: buffer) }
    }
}
