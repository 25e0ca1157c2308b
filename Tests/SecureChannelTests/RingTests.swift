import Testing
import Synchronization
import Altp2m
@testable import SecureChannel

/// A page-aligned, zeroed window in private memory standing in for the
/// shared channel window.
final class TestWindow: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let geometry: RingGeometry

    init(pages: Int, oneWay: Bool = false) throws {
        geometry = try RingGeometry(pageCount: pages, oneWay: oneWay)
        base = UnsafeMutableRawPointer.allocate(byteCount: geometry.windowBytes, alignment: 4096)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: geometry.windowBytes)
        ControlPage(base: base).initialize(geometry: geometry)
    }

    deinit { base.deallocate() }
}

/// A deterministic generator so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Ring geometry")
struct RingGeometryTests {
    @Test("two-way windows split the data pages into two power-of-two rings")
    func twoWay() throws {
        let g2 = try RingGeometry(pageCount: 2, oneWay: false)
        #expect(g2.ringSize == 2048)
        #expect(g2.ringOffsets == [4096, 6144])
        let g3 = try RingGeometry(pageCount: 3, oneWay: false)
        #expect(g3.ringSize == 4096)
        // 511 data pages hold two 512 KiB rings, not two 1 MiB ones: the
        // best windows are 1 + 2 * 2^k pages (3, 5, 9, ..., 257).
        let g512 = try RingGeometry(pageCount: 512, oneWay: false)
        #expect(g512.ringSize == 1 << 19)
        #expect(g512.ringOffsets[1] + g512.ringSize <= g512.windowBytes)
        #expect(g512.maximumPayloadBytes == (1 << 18) - 16)
        let g257 = try RingGeometry(pageCount: 257, oneWay: false)
        #expect(g257.ringSize == 1 << 19)
    }

    @Test("one-way windows have a single ring")
    func oneWay() throws {
        let g = try RingGeometry(pageCount: 9, oneWay: true)
        #expect(g.ringCount == 1)
        #expect(g.ringSize == 32768)
    }

    @Test("page counts outside 2...512 are refused by name")
    func outOfRange() {
        #expect(throws: RingGeometry.GeometryError.pageCountOutOfRange(1)) { try RingGeometry(pageCount: 1, oneWay: false) }
        #expect(throws: RingGeometry.GeometryError.pageCountOutOfRange(513)) { try RingGeometry(pageCount: 513, oneWay: false) }
    }

    @Test("the control page header is checked against the descriptor's geometry")
    func header() throws {
        let w = try TestWindow(pages: 4)
        let page = ControlPage(base: w.base)
        #expect(page.validateHeader(against: w.geometry) == nil)
        #expect(page.validateHeader(against: try RingGeometry(pageCount: 5, oneWay: false)) != nil)
        w.base.storeBytes(of: UInt64(0), as: UInt64.self)
        #expect(page.validateHeader(against: w.geometry)?.contains("magic") == true)
    }
}

@Suite("Ring data path")
struct RingDataPathTests {
    private func send(_ producer: RingProducer, _ bytes: [UInt8], sequence: UInt64) throws -> Bool {
        guard let p = try producer.reserve(payloadBytes: bytes.count) else { return false }
        bytes.withUnsafeBytes { if $0.count > 0 { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        producer.commit(FrameHeader(length: UInt32(bytes.count), type: .data, sequence: sequence))
        return true
    }

    @Test("frames of every size arrive intact and in order across many wrap-arounds")
    func roundTrip() throws {
        let w = try TestWindow(pages: 2)
        let producer = RingProducer(window: w.base, geometry: w.geometry, ring: 0)
        let consumer = RingConsumer(window: w.base, geometry: w.geometry, ring: 0)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: consumer.maximumPayloadBytes, alignment: 16)
        defer { buffer.deallocate() }
        var rng = SplitMix64(state: 1)
        var sent: [[UInt8]] = []
        var received = 0
        for sequence in 0..<20_000 as Range<UInt64> {
            let size = Int.random(in: 0...producer.maximumPayloadBytes, using: &rng)
            let message = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            while try !send(producer, message, sequence: sequence) {
                // Full: drain one frame and retry.
                let header = try #require(try consumer.receive(into: buffer))
                #expect(header.sequence == UInt64(received))
                #expect(Array(UnsafeRawBufferPointer(rebasing: buffer[0..<Int(header.length)])) == sent[received])
                received += 1
            }
            sent.append(message)
        }
        while let header = try consumer.receive(into: buffer) {
            #expect(header.sequence == UInt64(received))
            #expect(Array(UnsafeRawBufferPointer(rebasing: buffer[0..<Int(header.length)])) == sent[received])
            received += 1
        }
        #expect(received == sent.count)
        #expect(try consumer.hasFrame() == false)
    }

    @Test("a full ring refuses a frame instead of overwriting unread data")
    func backPressure() throws {
        let w = try TestWindow(pages: 2)
        let producer = RingProducer(window: w.base, geometry: w.geometry, ring: 1)
        let consumer = RingConsumer(window: w.base, geometry: w.geometry, ring: 1)
        var accepted = 0
        while try send(producer, [UInt8](repeating: 7, count: 100), sequence: UInt64(accepted)) { accepted += 1 }
        // 2048-byte ring, 128-byte frames.
        #expect(accepted == 16)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 16)
        defer { buffer.deallocate() }
        #expect(try consumer.receive(into: buffer)?.sequence == 0)
        #expect(try send(producer, [1], sequence: 16))
    }

    @Test("two threads stream 200 000 frames without loss or reordering")
    func concurrent() throws {
        let w = try TestWindow(pages: 4)
        let count: UInt64 = 200_000
        let producerThread = ThreadResult {
            let producer = RingProducer(window: w.base, geometry: w.geometry, ring: 0)
            var rng = SplitMix64(state: 99)
            for sequence in 0..<count {
                let size = Int.random(in: 8...200, using: &rng)
                while true {
                    if let p = try producer.reserve(payloadBytes: size) {
                        p.storeBytes(of: sequence &* 0x9E37_79B9, as: UInt64.self)
                        producer.commit(FrameHeader(length: UInt32(size), type: .data, sequence: sequence))
                        break
                    }
                }
            }
        }
        let consumer = RingConsumer(window: w.base, geometry: w.geometry, ring: 0)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: consumer.maximumPayloadBytes, alignment: 16)
        defer { buffer.deallocate() }
        var expected: UInt64 = 0
        while expected < count {
            guard let header = try consumer.receive(into: buffer) else { continue }
            #expect(header.sequence == expected)
            #expect(buffer.load(as: UInt64.self) == expected &* 0x9E37_79B9)
            expected += 1
        }
        try producerThread.value()
        #expect(expected == count)
    }
}

@Suite("Ring against a hostile peer")
struct RingHostilePeerTests {
    @Test("random producer indices and headers never crash the consumer or escape the ring")
    func hostileProducer() throws {
        let w = try TestWindow(pages: 2)
        let control = ControlPage(base: w.base)
        let ringBytes = UnsafeMutableRawBufferPointer(start: w.base + w.geometry.ringOffsets[0], count: w.geometry.ringSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: w.geometry.maximumPayloadBytes, alignment: 16)
        defer { buffer.deallocate() }
        var rng = SplitMix64(state: 7)
        var violations = 0, frames = 0
        for _ in 0..<100_000 {
            // A fresh consumer each round, resuming from whatever index is shared.
            control.consumer(ring: 0).pointee.store(UInt64.random(in: 0...4096, using: &rng) & ~15, ordering: .relaxed)
            let consumer = RingConsumer(window: w.base, geometry: w.geometry, ring: 0)
            let consumed = control.consumer(ring: 0).pointee.load(ordering: .relaxed)
            // The attacker writes an arbitrary producer index...
            let choice = UInt64.random(in: 0...3, using: &rng)
            let produced: UInt64 = switch choice {
            case 0: UInt64.random(in: 0...UInt64.max, using: &rng)
            case 1: consumed &+ UInt64.random(in: 0...4096, using: &rng)
            case 2: consumed &- UInt64.random(in: 1...64, using: &rng)
            default: consumed &+ (UInt64.random(in: 0...128, using: &rng) * 16)
            }
            control.producer(ring: 0).pointee.store(produced, ordering: .relaxed)
            // ...and arbitrary bytes where headers are read.
            for _ in 0..<8 {
                let at = Int.random(in: 0..<(ringBytes.count / 16), using: &rng) * 16
                ringBytes.storeBytes(of: rng.next(), toByteOffset: at, as: UInt64.self)
                ringBytes.storeBytes(of: rng.next() & 0xFF_FFFF_0000_07FF, toByteOffset: at + 8, as: UInt64.self)
                if Bool.random(using: &rng) {
                    ringBytes.storeBytes(of: UInt32.random(in: 0...2100, using: &rng), toByteOffset: at, as: UInt32.self)
                    ringBytes.storeBytes(of: UInt32.random(in: 0...5, using: &rng), toByteOffset: at + 4, as: UInt32.self)
                }
            }
            do {
                while let header = try consumer.receive(into: buffer) {
                    frames += 1
                    #expect(Int(header.length) <= w.geometry.maximumPayloadBytes)
                }
            } catch {
                violations += 1
            }
            // Whatever happened, the consumer never published an index past the producer's.
            let after = control.consumer(ring: 0).pointee.load(ordering: .relaxed)
            #expect(after &- consumed <= (produced &- consumed <= UInt64(w.geometry.ringSize) ? produced &- consumed : 0))
        }
        #expect(violations > 10_000)
        #expect(frames > 1_000)
    }

    @Test("a consumer index that runs backwards or past the producer is a violation")
    func hostileConsumer() throws {
        let w = try TestWindow(pages: 2)
        let producer = RingProducer(window: w.base, geometry: w.geometry, ring: 0)
        let control = ControlPage(base: w.base)
        for i in 0..<16 {
            _ = try #require(try producer.reserve(payloadBytes: 100))
            producer.commit(FrameHeader(length: 100, type: .data, sequence: UInt64(i)))
        }
        control.consumer(ring: 0).pointee.store(5000, ordering: .relaxed)
        #expect(throws: RingViolation.self) { _ = try producer.reserve(payloadBytes: 100) }
        control.consumer(ring: 0).pointee.store(UInt64.max, ordering: .relaxed)
        #expect(throws: RingViolation.self) { _ = try producer.reserve(payloadBytes: 100) }
    }
}
