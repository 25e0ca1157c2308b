import Altp2m
import ChannelCrypto
import CPlatform
import Foundation
import Synchronization
import Testing
@testable import SecureChannel

/// An attacker racing the victim: a third thread with its own mapping of
/// the window writes random and adversarial values at random offsets of
/// the whole window (control page, both rings, every line) all the time
/// two genuine endpoints exchange messages on their own threads. It stands
/// for code in either guest that reached the channel view.
///
/// Oracle: nothing traps; every call returns within its deadline (plus a
/// margin) with a message or a documented error; in encrypted mode every
/// delivered message is, byte for byte, the next one the genuine peer
/// sent. The attack must be seen to happen (failures observed), so the
/// test cannot pass vacuously. It runs 60 s in all by default, split over
/// its cases; `SECURE_CHANNEL_ATTACK_SECONDS` sets another total.
@Suite("Channel against a racing attacker", .serialized)
struct RacingAttackerTests {
    enum Config: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case chachaSpin, chachaBlock, chachaAdaptive, isolatedSpin, isolatedBlock, isolatedAdaptive
        var mode: ChannelMode { rawValue.hasPrefix("isolated") ? .isolated : .encrypted }
        var wait: WaitStrategy {
            if rawValue.hasSuffix("Spin") { return .spin }
            if rawValue.hasSuffix("Block") { return .block }
            return .adaptive(spinFor: .microseconds(20))
        }
        var testDescription: String { rawValue }
    }

    /// Seconds per case: the total over the cases that run (ten with AES).
    static var seconds: Double {
        let total = ProcessInfo.processInfo.environment["SECURE_CHANNEL_ATTACK_SECONDS"].flatMap(Double.init) ?? 60
        return total / Double(Config.allCases.count + 2 + (AESGCM.isAvailable ? 2 : 0))
    }

    @Test("random and adversarial writes race two genuine endpoints: no trap, no hang, no forged delivery",
          arguments: Config.allCases)
    func race(config: Config) throws {
        let stats = try Self.attack(mode: config.mode, suite: .chachapoly, wait: config.wait, seconds: Self.seconds)
        print("racing attacker (\(config.rawValue)): \(stats)")
        try stats.check(mode: config.mode)
    }

    @Test("a writer flipping bits where frames are being sealed never gets an altered message delivered",
          arguments: [WaitStrategy.spin, .block])
    func raceTheSeal(wait: WaitStrategy) throws {
        let stats = try Self.attack(mode: .encrypted, suite: .chachapoly, wait: wait, seconds: Self.seconds, style: .sealing)
        print("racing attacker (sealing, \(wait)): \(stats)")
        try stats.check(mode: .encrypted, attacks: 100, failures: 3)
    }

    @Test("the same with AES-256-GCM", .enabled(if: AESGCM.isAvailable, "skipped: this CPU lacks AES-NI, so libsodium offers no AES-256-GCM"),
          arguments: [WaitStrategy.spin, .block])
    func raceAESGCM(wait: WaitStrategy) throws {
        let stats = try Self.attack(mode: .encrypted, suite: .aesgcm, wait: wait, seconds: Self.seconds)
        print("racing attacker (aesgcm, \(wait)): \(stats)")
        try stats.check(mode: .encrypted)
    }

    final class Stats: @unchecked Sendable, CustomStringConvertible {
        // @unchecked: counters are atomics; `errors` is guarded by `lock`.
        let attacks = Atomic<Int>(0)
        let deliveries = Atomic<Int>(0)
        let forged = Atomic<Int>(0)
        let sent = Atomic<Int>(0)
        let slowCalls = Atomic<Int>(0)
        /// Cleared to stop the attacker.
        let attacking = Atomic<Bool>(true)
        var sessions = 0
        var elapsed: Duration = .zero
        private let lock = Mutex<[String: Int]>([:])

        func record(_ error: ChannelError, by side: String) {
            let kind = switch error {
            case .protocolViolation: "protocolViolation"
            case .authenticationFailed: "authenticationFailed"
            case .peerDied: "peerDied"
            case .peerClosed: "peerClosed"
            case .timeout: "timeout"
            // The host line and the state lines are the attacker's to write:
            // a generation or an incarnation it wrote ends the session.
            case .descriptorsReissued: "descriptorsReissued"
            case .peerRestarted: "peerRestarted"
            default: "other: \(error)"
            }
            lock.withLock { $0["\(side) \(kind)", default: 0] += 1 }
        }

        var errors: [String: Int] { lock.withLock { $0 } }

        var description: String {
            "\(elapsed), \(sessions) sessions, \(attacks.load(ordering: .relaxed)) attacking writes, "
                + "\(sent.load(ordering: .relaxed)) sent, \(deliveries.load(ordering: .relaxed)) delivered, "
                + "\(forged.load(ordering: .relaxed)) forged deliveries, \(slowCalls.load(ordering: .relaxed)) late returns, errors \(errors.sorted { $0.key < $1.key })"
        }

        /// The oracle, and proof that the attack happened: at least
        /// `attacks` writes and `failures` failures it caused (the hunt for
        /// the seal writes once per frame, so it makes far fewer of both).
        func check(mode: ChannelMode, attacks minimumAttacks: Int = 1_000, failures minimumFailures: Int = 20) throws {
            let errors = self.errors
            #expect(attacks.load(ordering: .relaxed) > minimumAttacks, "the attack did not happen")
            #expect(errors.values.reduce(0, +) > minimumFailures, "too few failures observed: the attack did not reach the victim")
            #expect(deliveries.load(ordering: .relaxed) > 100, "too few deliveries to say anything")
            #expect(slowCalls.load(ordering: .relaxed) == 0, "calls returned past their deadline")
            #expect(!errors.keys.contains { $0.contains("other") }, "undocumented errors: \(errors)")
            if mode == .encrypted {
                #expect(forged.load(ordering: .relaxed) == 0, "messages the peer never sent were delivered as authentic")
            }
        }
    }

    /// A deterministic message for each number: its number, then bytes derived from it.
    static func message(_ n: UInt64, into buffer: UnsafeMutableRawBufferPointer, style: Style) -> Int {
        // Long messages while hunting the seal: the longer the AEAD takes,
        // the longer the window between writing a byte and authenticating it.
        let length = (style == .sealing ? 1200 : 8) + Int(n &* 0x9E37_79B9 % 200)
        buffer.storeBytes(of: n, as: UInt64.self)
        for i in 8..<length { buffer[i] = UInt8(truncatingIfNeeded: n &* 31 &+ UInt64(i)) }
        return length
    }

    static let callTimeout: Duration = .milliseconds(100)
    static let margin: Duration = .seconds(2)

    /// How the attacker writes: `.mixed` everywhere with pauses and storms,
    /// `.sealing` nothing but storms where the next frame is being sealed.
    enum Style: Sendable { case mixed, sealing }

    static func attack(mode: ChannelMode, suite: ChannelSuite, wait: WaitStrategy, seconds: Double,
                       style: Style = .mixed) throws -> Stats {
        let stats = Stats()
        let pages = style == .sealing ? 4 : 2
        let window = try TestWindow(pages: pages, aliased: true)
        let started = ContinuousClock.now
        let end = started + .milliseconds(Int64(seconds * 1000))
        // The attacker runs for the whole test, across sessions.
        let attacker = ThreadResult { attackLoop(window: window, stats: stats, style: style) }
        var seed = SplitMix64(state: 0xA77AC4)
        while ContinuousClock.now < end {
            window.reset()
            // Small rekey and renewal intervals, so attacks land on those too.
            let options = ChannelEndpoint.Options(wait: wait, rekeyInterval: 16 + seed.next() % 64,
                                                  rehandshakeAfterMessages: 100 + seed.next() % 400)
            guard let (pair, _) = try? EndpointPair.makeKeyedWithKeys(pages: pages, mode: mode, suite: suite, options: options, window: window)
            else { continue }   // the attacker broke the header before open: a refused open is fine
            stats.sessions += 1
            let sessionEnd = min(end, ContinuousClock.now + .seconds(1))
            let stop = Atomic<Bool>(false)
            nonisolated(unsafe) let sender = pair.initiator, receiver = pair.responder
            let sending = ThreadResult {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
                defer { buffer.deallocate() }
                var n: UInt64 = 0
                while !stop.load(ordering: .relaxed), ContinuousClock.now < sessionEnd {
                    let length = message(n, into: buffer, style: style)
                    let callStarted = ContinuousClock.now
                    do {
                        if n % 5 == 0 {
                            while try !sender.trySend(UnsafeRawBufferPointer(rebasing: buffer[0..<length])) {
                                if stop.load(ordering: .relaxed) || ContinuousClock.now >= sessionEnd { return }
                            }
                        } else {
                            try sender.send(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), timeout: callTimeout)
                        }
                    } catch let error as ChannelError {
                        if ContinuousClock.now - callStarted > callTimeout + margin { stats.slowCalls.add(1, ordering: .relaxed) }
                        stats.record(error, by: "sender")
                        stop.store(true, ordering: .relaxed)
                        return
                    } catch {}
                    if ContinuousClock.now - callStarted > callTimeout + margin { stats.slowCalls.add(1, ordering: .relaxed) }
                    stats.sent.add(1, ordering: .relaxed)
                    n += 1
                }
            }
            let receiving = ThreadResult {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
                let expected = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
                defer { buffer.deallocate(); expected.deallocate() }
                var next: UInt64 = 0
                while !stop.load(ordering: .relaxed), ContinuousClock.now < sessionEnd {
                    let callStarted = ContinuousClock.now
                    do {
                        let got: Int? = next % 3 == 0
                            ? try receiver.tryReceive(into: buffer)
                            : try receiver.receive(into: buffer, timeout: callTimeout)
                        if ContinuousClock.now - callStarted > callTimeout + margin { stats.slowCalls.add(1, ordering: .relaxed) }
                        guard let count = got else { continue }
                        if count > receiver.maximumMessageBytes { stats.forged.add(1, ordering: .relaxed) }
                        if mode == .encrypted {
                            // In encrypted mode every delivery is the next genuine message.
                            let length = message(next, into: expected, style: style)
                            if count != length || memcmp(buffer.baseAddress!, expected.baseAddress!, length) != 0 {
                                stats.forged.add(1, ordering: .relaxed)
                                stop.store(true, ordering: .relaxed)
                                return
                            }
                        }
                        stats.deliveries.add(1, ordering: .relaxed)
                        next += 1
                    } catch let error as ChannelError {
                        if ContinuousClock.now - callStarted > callTimeout + margin { stats.slowCalls.add(1, ordering: .relaxed) }
                        if error == .timeout, !stop.load(ordering: .relaxed) { continue }   // the sender may be slow
                        stats.record(error, by: "receiver")
                        stop.store(true, ordering: .relaxed)
                        return
                    } catch {}
                }
            }
            _ = try receiving.value(within: .seconds(2) + margin * 2, "the receiver's session")
            stop.store(true, ordering: .relaxed)
            _ = try sending.value(within: margin * 2, "the sender's session")
        }
        stats.attacking.store(false, ordering: .relaxed)
        _ = try attacker.value(within: .seconds(5), "the attacker")
        stats.elapsed = ContinuousClock.now - started
        return stats
    }

    /// Writes through the window's second mapping until told to stop.
    /// Mostly a few writes at random offsets (a bit, a byte, a word, an
    /// index-like value) with pauses, so sessions live long enough to carry
    /// messages; now and then a storm of bit flips over the rings' data
    /// for up to 200 µs, to land inside frames while they are written.
    static func attackLoop(window: TestWindow, stats: Stats, style: Style) {
        let target = window.alias!
        let size = window.geometry.windowBytes
        let ringSize = UInt64(window.geometry.ringSize)
        var rng = SplitMix64(state: 0x5CA1AB1E)
        if style == .sealing {
            huntTheSeal(window: window, stats: stats, rng: &rng)
            return
        }
        while stats.attacking.load(ordering: .relaxed) {
            if Int.random(in: 0..<10, using: &rng) == 0 {
                // A storm: where the next frame of a ring is being written
                // (the published producer index is where the writer seals
                // its next frame), or anywhere in the rings.
                let ring = Int.random(in: 0..<window.geometry.ringCount, using: &rng)
                let control = ControlPage(base: target)
                let ringBase = target + window.geometry.ringOffsets[ring]
                let until = cplatform_monotonic_ns() + UInt64.random(in: 20_000...200_000, using: &rng)
                let inFlight = Bool.random(using: &rng)
                while cplatform_monotonic_ns() < until {
                    let p: UnsafeMutableRawPointer
                    if inFlight {
                        let at = Int(control.producer(ring: ring).pointee.load(ordering: .relaxed) & (ringSize - 1))
                        p = ringBase + (at + 16 + Int.random(in: 0..<256, using: &rng)) % Int(ringSize)
                    } else {
                        p = target + Int.random(in: RingGeometry.pageSize..<size, using: &rng)
                    }
                    p.storeBytes(of: p.load(as: UInt8.self) ^ (1 << UInt8.random(in: 0...7, using: &rng)), as: UInt8.self)
                    stats.attacks.add(1, ordering: .relaxed)
                }
            } else {
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    write(into: target, size: size, ringSize: ringSize, rng: &rng)
                    stats.attacks.add(1, ordering: .relaxed)
                }
            }
            usleep(UInt32.random(in: 50...1_000, using: &rng))
        }
    }

    /// Aims at the moment a frame is sealed: each time a ring's producer
    /// index moves, the next frame will be written at the new index, so
    /// after a random delay one byte near the start of its payload gets a
    /// random value, once. A writer that seals in the window may then
    /// authenticate that byte (the AEAD reads back what it wrote); a writer
    /// that seals in private memory and copies cannot.
    static func huntTheSeal(window: TestWindow, stats: Stats, rng: inout SplitMix64) {
        let target = window.alias!
        let control = ControlPage(base: target)
        let mask = window.geometry.ringSize - 1
        var last = [UInt64](repeating: .max, count: window.geometry.ringCount)
        while stats.attacking.load(ordering: .relaxed) {
            for ring in 0..<window.geometry.ringCount {
                let produced = control.producer(ring: ring).pointee.load(ordering: .relaxed)
                guard produced != last[ring] else { continue }
                last[ring] = produced
                let until = cplatform_monotonic_ns() + UInt64.random(in: 0...3_000, using: &rng)
                while cplatform_monotonic_ns() < until { cplatform_cpu_relax() }
                let offset = (Int(produced) & mask) + FrameHeader.byteCount + Int.random(in: 0..<64, using: &rng)
                target.storeBytes(of: UInt8.random(in: 0...255, using: &rng),
                                  toByteOffset: window.geometry.ringOffsets[ring] + offset % window.geometry.ringSize, as: UInt8.self)
                stats.attacks.add(1, ordering: .relaxed)
            }
        }
    }

    /// One attacking write at a random offset: half of them in the rings'
    /// data, the rest anywhere (the control page's indices and lines too).
    static func write(into target: UnsafeMutableRawPointer, size: Int, ringSize: UInt64, rng: inout SplitMix64) {
        let offset = Bool.random(using: &rng)
            ? Int.random(in: RingGeometry.pageSize..<size, using: &rng)
            : Int.random(in: 0..<size, using: &rng)
        switch Int.random(in: 0..<10, using: &rng) {
        case 0..<5:
            let p = target + offset
            p.storeBytes(of: p.load(as: UInt8.self) ^ (1 << UInt8.random(in: 0...7, using: &rng)), as: UInt8.self)
        case 5..<7:
            target.storeBytes(of: UInt8.random(in: 0...255, using: &rng), toByteOffset: offset, as: UInt8.self)
        case 7, 8:
            // An index-like value: near a ring boundary, off the grid, far
            // away, or the top of the counter.
            let aligned = min(offset & ~7, size - 8)
            let values: [UInt64] = [ringSize - 8, ringSize, 8, 1, .max, .max - 15, rng.next(), 2 * ringSize + 8]
            target.storeBytes(of: values.randomElement(using: &rng)!, toByteOffset: aligned, as: UInt64.self)
        default:
            let aligned = min(offset & ~3, size - 4)
            target.storeBytes(of: UInt32(truncatingIfNeeded: rng.next()), toByteOffset: aligned, as: UInt32.self)
        }
    }
}
