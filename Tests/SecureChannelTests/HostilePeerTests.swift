import Altp2m
import ChannelCrypto
import Synchronization
import Testing
@testable import SecureChannel

/// A peer that follows the protocol some of the time and otherwise writes
/// random and adversarial values into every shared field it can reach. The
/// victim must never crash, never hang past its timeout, never hand out data
/// the real peer did not send, and must name what went wrong.
@Suite("Channel against a hostile peer", .serialized)
struct HostilePeerTests {
    // Sessions are keyed by running both handshake states on this thread
    // (`EndpointPair.makeKeyed`): an attack ends a session, and tens of
    // thousands of handshakes over the ring across threads would dominate
    // the run. The handshake over the ring has its own tests.
    /// What the victim may report when attacked.
    static func isExpectedFailure(_ error: ChannelError) -> Bool {
        switch error {
        case .protocolViolation, .authenticationFailed, .peerClosed, .peerDied, .timeout: return true
        default: return false
        }
    }

    struct Stats: CustomStringConvertible {
        var iterations = 0, delivered = 0, violations = 0, authFailures = 0, closes = 0, sessions = 1
        var description: String {
            "\(iterations) iterations, \(sessions) sessions, \(delivered) messages delivered, \(violations) protocol violations, \(authFailures) authentication failures, \(closes) closes"
        }
    }

    @Test("100 000 iterations of attacks on an encrypted channel", arguments: [ChannelMode.encrypted])
    func encrypted(mode: ChannelMode) throws {
        let stats = try attack(mode: mode, iterations: 100_000, seed: 0xC0FFEE)
        print("hostile peer (\(mode)): \(stats)")
        #expect(stats.iterations == 100_000)
        #expect(stats.violations > 1_000)
        #expect(stats.authFailures > 100)
        #expect(stats.delivered > 10_000)
    }

    @Test("20 000 iterations of index and header attacks on an isolated channel")
    func isolated() throws {
        let stats = try attack(mode: .isolated, iterations: 20_000, seed: 0xBADF00D)
        print("hostile peer (isolated): \(stats)")
        #expect(stats.violations > 500)
        #expect(stats.delivered > 2_000)
    }

    /// Runs `iterations` rounds. Each round the attacker (who holds the
    /// initiator's endpoint and the raw window) either sends a genuine message
    /// or corrupts something; then the victim (the responder) polls.
    func attack(mode: ChannelMode, iterations: Int, seed: UInt64) throws -> Stats {
        var rng = SplitMix64(state: seed)
        var stats = Stats()
        var pair = try EndpointPair.makeKeyed(pages: 2, mode: mode)
        var expected: [[UInt8]] = []   // genuine messages not yet received, in order
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        var history: [[UInt8]] = []     // raw frames seen in the ring, for replays

        func restart() throws {
            pair = try EndpointPair.makeKeyed(pages: 2, mode: mode)
            expected.removeAll()
            history.removeAll()
            stats.sessions += 1
        }

        while stats.iterations < iterations {
            stats.iterations += 1
            let window = pair.window.base
            let geometry = pair.window.geometry
            let control = ControlPage(base: window)
            let ring0 = window + geometry.ringOffsets[0]
            let mask = UInt64(geometry.ringSize - 1)
            let produced = control.producer(ring: 0).pointee.load(ordering: .relaxed)
            let consumed = control.consumer(ring: 0).pointee.load(ordering: .relaxed)
            let pending = ring0 + Int(consumed & mask)
            let attack = Int.random(in: 0..<100, using: &rng)
            var tampered = false
            var replayed = false
            switch attack {
            case 0..<70:
                // Genuine traffic.
                let message = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if (try? pair.initiator.trySend(message)) == true {
                    expected.append(message)
                    // Record the frame just sent, for replays: it ends at the
                    // producer index (a padding frame may sit before it).
                    let wire = message.count + (mode == .encrypted ? CipherState.tagByteCount : 0)
                    let size = FrameHeader.frameBytes(payloadBytes: wire)
                    let end = Int(control.producer(ring: 0).pointee.load(ordering: .relaxed) & mask)
                    let start = (end == 0 ? geometry.ringSize : end) - size
                    history.append(Array(UnsafeRawBufferPointer(start: ring0 + start, count: size)))
                }
            case 70..<75:
                // Flip a bit of a pending frame (header or payload).
                if produced != consumed {
                    let span = Int(min(produced &- consumed, 64))
                    let at = Int.random(in: 0..<span, using: &rng)
                    (pending + at).storeBytes(of: (pending + at).load(as: UInt8.self) ^ (1 << UInt8.random(in: 0...7, using: &rng)), as: UInt8.self)
                    tampered = true
                }
            case 75..<78:
                // An impossible or random producer index.
                let value: UInt64 = Bool.random(using: &rng) ? rng.next() : produced &+ UInt64.random(in: 1...4096, using: &rng)
                control.producer(ring: 0).pointee.store(value, ordering: .releasing)
                tampered = true
            case 78..<82:
                // A forged header at the read position with a plausible length.
                if produced == consumed {
                    FrameHeader(length: UInt32.random(in: 0...1100, using: &rng),
                                type: FrameType(rawValue: UInt8.random(in: 0...4, using: &rng))!,
                                flags: UInt8.random(in: 0...2, using: &rng), sequence: rng.next() % 4)
                        .store(to: pending)
                    control.producer(ring: 0).pointee.store(consumed &+ UInt64(Int.random(in: 1...64, using: &rng) * 16), ordering: .releasing)
                    tampered = true
                }
            case 82..<86:
                // Replay an earlier genuine frame at the read position: the
                // sequence check refuses it in both modes.
                if produced == consumed, let old = history.randomElement(using: &rng),
                   old.count <= geometry.ringSize - Int(consumed & mask) {
                    old.withUnsafeBytes { pending.copyMemory(from: $0.baseAddress!, byteCount: old.count) }
                    control.producer(ring: 0).pointee.store(consumed &+ UInt64(old.count), ordering: .releasing)
                    tampered = true
                    replayed = true
                }
            case 86..<90:
                // Reorder: send two genuine frames, then swap them.
                let a = [UInt8](repeating: 0xAA, count: 32), b = [UInt8](repeating: 0xBB, count: 32)
                let size = FrameHeader.frameBytes(payloadBytes: 32 + (mode == .encrypted ? 16 : 0))
                let first = pair.nextFrame(ring: 0)
                let contiguous = Int(produced & mask) + 2 * size <= geometry.ringSize
                if (try? pair.initiator.trySend(a)) == true {
                    expected.append(a)
                    if (try? pair.initiator.trySend(b)) == true {
                        expected.append(b)
                        if contiguous {
                            var tmp = [UInt8](repeating: 0, count: size)
                            tmp.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: first, byteCount: size) }
                            first.copyMemory(from: first + size, byteCount: size)
                            tmp.withUnsafeBytes { (first + size).copyMemory(from: $0.baseAddress!, byteCount: size) }
                            tampered = true
                        }
                    }
                }
            case 90..<92:
                // Move the consumer index of the ring the victim writes.
                control.consumer(ring: 1).pointee.store(Bool.random(using: &rng) ? rng.next() : 0, ordering: .releasing)
                if (try? pair.responder.trySend([1, 2, 3])) == nil { stats.violations += 1; try restart(); continue }
            default:
                // Scribble over the attacker's own state line (flags, liveness).
                let line = control.sideState(.initiator)
                line.storeBytes(of: rng.next() & 0xFFFF_FFFF_0000_0003, as: UInt64.self)
                line.storeBytes(of: rng.next(), toByteOffset: 8, as: UInt64.self)
                tampered = true
            }

            // The victim polls; receive with a short timeout must return in time.
            let started = ContinuousClock.now
            do {
                while true {
                    let got: Int?
                    if Bool.random(using: &rng) {
                        got = try pair.responder.tryReceive(into: buffer)
                    } else {
                        do { got = try pair.responder.receive(into: buffer, timeout: .microseconds(200)) } catch ChannelError.timeout { got = nil }
                    }
                    guard let n = got else { break }
                    let message = Array(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                    // Never unauthenticated data: in encrypted mode every
                    // delivered message is the next genuine one.
                    if mode == .encrypted || !tampered {
                        #expect(!expected.isEmpty && message == expected.first!, "delivered data the peer never sent")
                    }
                    // Nothing was pending before a replay: whatever comes out
                    // is the replayed frame, in either mode.
                    #expect(!replayed, "a replayed frame was delivered (\(mode))")
                    // Isolated mode trusts view isolation for the bytes, but
                    // never hands out more than a frame can carry.
                    #expect(n <= pair.responder.maximumMessageBytes)
                    if !expected.isEmpty { expected.removeFirst() }
                    stats.delivered += 1
                }
            } catch {
                #expect(Self.isExpectedFailure(error), "unexpected error \(error)")
                switch error {
                case .protocolViolation: stats.violations += 1
                case .authenticationFailed: stats.authFailures += 1
                default: stats.closes += 1
                }
                try restart()
            }
            #expect(ContinuousClock.now - started < .seconds(2), "the victim hung")
            // Undo scribbles on the attacker's line so sends keep working.
            ControlPage(base: pair.window.base).sideState(.initiator).storeBytes(of: UInt64(0), as: UInt64.self)
        }
        return stats
    }
}
