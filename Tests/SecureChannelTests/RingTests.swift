import Altp2m
import CPlatform
import Foundation
import Synchronization
import Testing
@testable import SecureChannel

/// A page-aligned, zeroed window in private memory standing in for the
/// shared channel window.
final class TestWindow: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let geometry: RingGeometry
    /// With `aliased`, a second mapping of the same memory (a file in
    /// memory mapped twice): what another party with its own mapping of
    /// the window writes through.
    let alias: UnsafeMutableRawPointer?

    init(pages: Int, oneWay: Bool = false, aliased: Bool = false) throws {
        geometry = try RingGeometry(pageCount: pages, oneWay: oneWay)
        if aliased {
            let bytes = geometry.windowBytes
            let fd = cplatform_memfd_create("test-window", CPLATFORM_MFD_CLOEXEC)
            guard fd >= 0, ftruncate(fd, off_t(bytes)) == 0 else { throw POSIXError(.ENOMEM) }
            defer { close(fd) }
            let maps = [mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
                        mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)]
            guard let first = maps[0], let second = maps[1], first != MAP_FAILED, second != MAP_FAILED else {
                throw POSIXError(.ENOMEM)
            }
            base = first
            alias = second
        } else {
            base = UnsafeMutableRawPointer.allocate(byteCount: geometry.windowBytes, alignment: 4096)
            alias = nil
        }
        reset()
    }

    /// Zeroes the window and writes the host's header, as at creation.
    func reset() {
        base.initializeMemory(as: UInt8.self, repeating: 0, count: geometry.windowBytes)
        ControlPage(base: base).initialize(geometry: geometry)
    }

    deinit {
        if let alias {
            munmap(alias, geometry.windowBytes)
            munmap(base, geometry.windowBytes)
        } else {
            base.deallocate()
        }
    }
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
        let producer = try RingProducer(window: w.base, geometry: w.geometry, ring: 0)
        let consumer = try RingConsumer(window: w.base, geometry: w.geometry, ring: 0)
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
        let producer = try RingProducer(window: w.base, geometry: w.geometry, ring: 1)
        let consumer = try RingConsumer(window: w.base, geometry: w.geometry, ring: 1)
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
            let producer = try RingProducer(window: w.base, geometry: w.geometry, ring: 0)
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
        let consumer = try RingConsumer(window: w.base, geometry: w.geometry, ring: 0)
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
        var refusedAtOpen = 0
        for _ in 0..<100_000 {
            // A fresh consumer each round, resuming from whatever index is
            // shared: any value, aligned or not (the peer can write it
            // before this side opens).
            let start: UInt64 = switch UInt64.random(in: 0...3, using: &rng) {
            case 0: UInt64.random(in: 0...4096, using: &rng)
            case 1: UInt64.random(in: 0...UInt64.max, using: &rng)
            default: UInt64.random(in: 0...4096, using: &rng) & ~15
            }
            control.consumer(ring: 0).pointee.store(start, ordering: .relaxed)
            control.producer(ring: 0).pointee.store(start, ordering: .relaxed)
            let consumer: RingConsumer
            do {
                consumer = try RingConsumer(window: w.base, geometry: w.geometry, ring: 0)
            } catch {
                #expect(start % 16 != 0, "an aligned index was refused: \(error)")
                #expect(error.reason.contains("consumer index"))
                refusedAtOpen += 1
                continue
            }
            #expect(start % 16 == 0, "an unaligned consumer index \(start) was taken at open")
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
        #expect(refusedAtOpen > 10_000, "unaligned indices were not tried")
    }

    @Test("a consumer index that runs backwards or past the producer is a violation")
    func hostileConsumer() throws {
        let w = try TestWindow(pages: 2)
        let producer = try RingProducer(window: w.base, geometry: w.geometry, ring: 0)
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

    /// Values a peer can leave in an index before the victim opens: off
    /// the 16-byte grid near the end of the ring (where a header would run
    /// past it), far ahead, behind, and near the top of the counter.
    static func hostileIndexValues(ringSize: Int) -> [UInt64] {
        let size = UInt64(ringSize)
        return [8, 1, 15, size - 8, size - 1, size + 8, 2 * size, 2 * size + 16, size * 3 - 8,
                UInt64.max, UInt64.max - 7, UInt64.max - 15, UInt64.max & ~15, 1 << 63]
    }

    @Test("every index the victim reads at open, aligned or not, is checked before use (ring 0 and 1)",
          arguments: [0, 1])
    func indicesAtOpen(ring: Int) throws {
        for value in Self.hostileIndexValues(ringSize: 2048) {
            for field in ["producer", "consumer"] {
                let w = try TestWindow(pages: 2)
                let control = ControlPage(base: w.base)
                let index = field == "producer" ? control.producer(ring: ring) : control.consumer(ring: ring)
                index.pointee.store(value, ordering: .relaxed)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: w.geometry.maximumPayloadBytes, alignment: 16)
                defer { buffer.deallocate() }
                // The writer: opens refusing the index by name, or sends
                // without writing outside the ring.
                do {
                    let producer = try RingProducer(window: w.base, geometry: w.geometry, ring: ring)
                    #expect(value % 16 == 0, "ring \(ring) \(field) index \(value) was taken by the producer")
                    for size in [0, 100, producer.maximumPayloadBytes] {
                        if let slot = try producer.reserve(payloadBytes: size) {
                            #expect(slot >= w.base + w.geometry.ringOffsets[ring] + 16)
                            #expect(slot + size <= w.base + w.geometry.ringOffsets[ring] + w.geometry.ringSize)
                            producer.commit(FrameHeader(length: UInt32(size), type: .data, sequence: 0))
                        }
                    }
                } catch {
                    #expect(error.reason.contains("ring \(ring)"), "the violation names the ring: \(error)")
                    #expect(error.reason.contains("index"), "the violation names the index: \(error)")
                }
                // The reader, on a fresh copy of the same hostile value.
                let r = try TestWindow(pages: 2)
                let rc = ControlPage(base: r.base)
                (field == "producer" ? rc.producer(ring: ring) : rc.consumer(ring: ring)).pointee.store(value, ordering: .relaxed)
                do {
                    let consumer = try RingConsumer(window: r.base, geometry: r.geometry, ring: ring)
                    #expect(field == "producer" || value % 16 == 0, "ring \(ring) consumer index \(value) was taken")
                    while try consumer.receive(into: buffer) != nil {}
                } catch {
                    #expect(error.reason.contains("ring \(ring)"), "the violation names the ring: \(error)")
                    #expect(error.reason.contains("\(field) index"), "the violation names the \(field) index: \(error)")
                }
            }
        }
    }

    @Test("a producer that pads twice in a row is refused, so padding cannot keep a receive looping")
    func paddingAfterPadding() throws {
        let w = try TestWindow(pages: 2)
        let control = ControlPage(base: w.base)
        let size = UInt64(w.geometry.ringSize)
        let ring = w.base + w.geometry.ringOffsets[0]
        // Start near the end: a padding frame over the tail, then another
        // at offset 0 claiming the whole ring.
        control.consumer(ring: 0).pointee.store(size - 64, ordering: .relaxed)
        control.producer(ring: 0).pointee.store(size - 64, ordering: .relaxed)
        let consumer = try RingConsumer(window: w.base, geometry: w.geometry, ring: 0)
        FrameHeader(length: 48, type: .padding, sequence: 0).store(to: ring + Int(size - 64))
        FrameHeader(length: UInt32(size - 16), type: .padding, sequence: 0).store(to: ring)
        control.producer(ring: 0).pointee.store(size - 64 + 64 + size - 64, ordering: .relaxed)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: w.geometry.maximumPayloadBytes, alignment: 16)
        defer { buffer.deallocate() }
        #expect { _ = try consumer.receive(into: buffer) } throws: { error in
            (error as? RingViolation)?.reason.contains("follows a padding frame") == true
        }
    }

    @Test("a consumer index off the 16-byte grid is a violation once the ring runs")
    func unalignedConsumerLater() throws {
        let w = try TestWindow(pages: 2)
        let producer = try RingProducer(window: w.base, geometry: w.geometry, ring: 0)
        let control = ControlPage(base: w.base)
        for i in 0..<4 {
            _ = try #require(try producer.reserve(payloadBytes: 100))
            producer.commit(FrameHeader(length: 100, type: .data, sequence: UInt64(i)))
        }
        control.consumer(ring: 0).pointee.store(8, ordering: .relaxed)
        #expect { _ = try producer.isDrained() } throws: { error in
            (error as? RingViolation)?.reason.contains("ring 0 consumer index 8") == true
        }
    }
}
