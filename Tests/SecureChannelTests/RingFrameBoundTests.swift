import Testing
import Synchronization
import Altp2m
import SecureChannel

/// The consumer's bound on a frame's claimed length, one limit at a time: a
/// random fuzzer rarely builds the one header that only a single limit
/// stops, so each gets a frame crafted to pass the others.
@Suite("Ring frame bounds")
struct RingFrameBoundTests {
    /// A two-page window (two rings of 2 KiB, frames up to 1 KiB) in private
    /// memory, a hostile producer's index and one header written at
    /// `position`, and a consumer that starts at `consumed`.
    private static func consumer(consumed: UInt64, produced: UInt64, header: FrameHeader,
                                 body: (RingConsumer, RingGeometry) throws -> Void) throws {
        let geometry = try RingGeometry(pageCount: 2, oneWay: false)
        let window = UnsafeMutableRawPointer.allocate(byteCount: geometry.windowBytes, alignment: 4096)
        defer { window.deallocate() }
        window.initializeMemory(as: UInt8.self, repeating: 0, count: geometry.windowBytes)
        let control = ControlPage(base: window)
        control.initialize(geometry: geometry)
        control.consumer(ring: 0).pointee.store(consumed, ordering: .relaxed)
        control.producer(ring: 0).pointee.store(produced, ordering: .relaxed)
        let position = Int(consumed % UInt64(geometry.ringSize))
        header.store(to: window + geometry.ringOffsets[0] + position)
        try body(RingConsumer(window: window, geometry: geometry, ring: 0), geometry)
    }

    @Test("a frame longer than the largest frame is refused, even where the ring holds that much")
    func longerThanTheLargestFrame() throws {
        let geometry = try RingGeometry(pageCount: 2, oneWay: false)
        // At the ring's start, with the whole ring produced: only the
        // largest-frame limit stands in the way.
        let payload = geometry.maximumPayloadBytes + FrameHeader.alignment
        try Self.consumer(consumed: 0, produced: UInt64(geometry.ringSize),
                          header: FrameHeader(length: UInt32(payload), type: .data, sequence: 0)) { consumer, _ in
            #expect(throws: RingViolation.self, "a \(payload)-byte payload was lent out") { _ = try consumer.peekFrame() }
        }
    }

    @Test("a frame that runs past the end of the ring is refused, even where enough was produced")
    func pastTheEndOfTheRing() throws {
        let geometry = try RingGeometry(pageCount: 2, oneWay: false)
        // 64 bytes before the end, 512 produced (wrapping): the frame is
        // within the largest frame and within what was produced, but its
        // payload would be read beyond the ring.
        let consumed = UInt64(geometry.ringSize - 64)
        try Self.consumer(consumed: consumed, produced: consumed + 512,
                          header: FrameHeader(length: 200, type: .data, sequence: 0)) { consumer, geometry in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: geometry.maximumPayloadBytes, alignment: 16)
            defer { buffer.deallocate() }
            #expect(throws: RingViolation.self, "a frame crossing the ring's end was read") {
                _ = try consumer.receive(into: buffer)
            }
        }
    }

    @Test("a frame longer than what was produced is refused")
    func longerThanProduced() throws {
        try Self.consumer(consumed: 0, produced: 64,
                          header: FrameHeader(length: 200, type: .data, sequence: 0)) { consumer, _ in
            #expect(throws: RingViolation.self) { _ = try consumer.peekFrame() }
        }
    }
}
