import Altp2m
import Synchronization

/// The writing end of one data ring (single producer).
///
/// The producer keeps its index in private memory and publishes it with a
/// store; the peer's consumer index is the only shared value it reads, and it
/// is checked before use. `reserve` and `commit` allocate nothing and make no
/// system calls, so the data path is exit-less.
public final class RingProducer {
    private let ring: UnsafeMutableRawPointer
    private let size: UInt64
    private let mask: UInt64
    private let maximumFrameBytes: Int
    private let producerIndex: UnsafeMutablePointer<Atomic<UInt64>>
    private let consumerIndex: UnsafeMutablePointer<Atomic<UInt64>>
    /// Which ring this is (0 or 1), for the messages that name a field.
    private let ringIndex: Int

    /// Next free position (free-running; the ring offset is `produced & mask`).
    private var produced: UInt64 = 0
    /// Last consumer index read from shared memory and found valid.
    private var cachedConsumed: UInt64 = 0
    /// Where `reserve` put the frame that `commit` will publish.
    private var reservedAt: UInt64 = 0
    private var reservedPayloadBytes = -1
    /// The published index before the frame `reserve` prepared (its padding
    /// included), and before the last committed frame.
    private var reserveStartedAt: UInt64 = 0
    private var publishedBeforeLastFrame: UInt64 = 0

    /// The writer of ring `ringIndex` of the window at `window`, resuming
    /// from the indices published in the window (zero for a fresh one).
    ///
    /// Both indices sit in shared memory, where the peer can have written
    /// anything before this side opened, so they are checked before the
    /// first use: a position that is not a frame boundary would put a
    /// header across the end of the ring.
    /// - Throws: `RingViolation` naming the index when either is not a
    ///   multiple of 16, or the consumer is not within one ring behind the
    ///   producer.
    public init(window: UnsafeMutableRawPointer, geometry: RingGeometry, ring ringIndex: Int) throws(RingViolation) {
        let control = ControlPage(base: window)
        self.ringIndex = ringIndex
        ring = window + geometry.ringOffsets[ringIndex]
        size = UInt64(geometry.ringSize)
        mask = UInt64(geometry.ringSize - 1)
        maximumFrameBytes = geometry.maximumFrameBytes
        producerIndex = control.producer(ring: ringIndex)
        consumerIndex = control.consumer(ring: ringIndex)
        let alignment = UInt64(FrameHeader.alignment)
        let start = producerIndex.pointee.load(ordering: .acquiring)
        guard start % alignment == 0 else {
            throw RingViolation("ring \(ringIndex) producer index \(start) is not a multiple of \(alignment) (read at open)")
        }
        let consumed = consumerIndex.pointee.load(ordering: .acquiring)
        guard consumed % alignment == 0, start &- consumed <= size else {
            throw RingViolation("ring \(ringIndex) consumer index \(consumed) is impossible at open (producer index \(start), ring \(size) bytes)")
        }
        produced = start
        cachedConsumed = consumed
    }

    /// The largest payload one frame can carry.
    public var maximumPayloadBytes: Int { maximumFrameBytes - FrameHeader.byteCount }

    /// Bytes published and not yet released by the consumer.
    public var bytesInFlight: UInt64 { produced &- cachedConsumed }

    /// The shared word a consumer sleeps on (the low half of the producer index).
    public var wakeWord: UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(producerIndex).assumingMemoryBound(to: UInt32.self)
    }

    /// The shared word this producer sleeps on when the ring is full (the low
    /// half of the consumer index, which the peer advances).
    public var spaceWord: UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(consumerIndex).assumingMemoryBound(to: UInt32.self)
    }

    /// Reserves room for a frame with `payloadBytes` of payload and returns
    /// where to write the payload, or nil when the ring is full right now.
    ///
    /// Writing a padding frame over the tail of the ring happens here when
    /// the frame would not fit before the end; it becomes visible with the
    /// next `commit`.
    /// - Throws: `RingViolation` when the peer's consumer index is impossible.
    @inline(__always)
    public func reserve(payloadBytes: Int) throws(RingViolation) -> UnsafeMutableRawPointer? {
        // The endpoint checks every size a caller gives before it gets here.
        precondition(payloadBytes >= 0 && payloadBytes <= maximumPayloadBytes,
                     "frame payload of \(payloadBytes) bytes exceeds the ring's \(maximumPayloadBytes)")
        let frame = UInt64(FrameHeader.frameBytes(payloadBytes: payloadBytes))
        let startedAt = produced
        var position = produced & mask
        let toEnd = size - position
        let needed = frame <= toEnd ? frame : frame + toEnd
        if size - (produced &- cachedConsumed) < needed {
            try refreshConsumed()
            if size - (produced &- cachedConsumed) < needed { return nil }
        }
        if frame > toEnd {
            // Padding frame: header only, its length covers the rest of the tail.
            FrameHeader(length: UInt32(toEnd) - UInt32(FrameHeader.byteCount), type: .padding, sequence: 0)
                .store(to: ring + Int(position))
            produced &+= toEnd
            position = 0
        }
        reservedAt = produced
        reserveStartedAt = startedAt
        reservedPayloadBytes = payloadBytes
        return ring + Int(position) + FrameHeader.byteCount
    }

    /// Writes `header` in front of the reserved payload and publishes the
    /// frame (and any padding before it) to the consumer.
    ///
    /// `header.length` may be at most the reserved payload size (an encrypted
    /// frame reserves room for the tag and commits its exact length).
    @inline(__always)
    public func commit(_ header: FrameHeader) {
        precondition(reservedPayloadBytes >= 0 && Int(header.length) <= reservedPayloadBytes,
                     "commit without a matching reserve")
        header.store(to: ring + Int(reservedAt & mask))
        produced = reservedAt &+ UInt64(FrameHeader.frameBytes(payloadBytes: Int(header.length)))
        publishedBeforeLastFrame = reserveStartedAt
        reservedPayloadBytes = -1
        // Sequentially consistent: the store must be visible before this side
        // reads the peer's "waiting" flag (a Dekker-style handshake with a
        // consumer about to sleep), or a wake-up could be lost.
        producerIndex.pointee.store(produced, ordering: .sequentiallyConsistent)
    }

    /// Whether the consumer had released everything published before the
    /// last committed frame: then it may be asleep waiting for that very
    /// frame. For a reader that cannot announce its sleep (one-way channels).
    ///
    /// Sequentially consistent after the sequentially consistent publish in
    /// `commit`: a consumer about to sleep either is seen here caught up, or
    /// its own later load sees the new producer index. The value is only a
    /// wake-up hint, so it is not validated.
    public func consumerHadCaughtUp() -> Bool {
        let consumed = consumerIndex.pointee.load(ordering: .sequentiallyConsistent)
        return consumed &- publishedBeforeLastFrame <= produced &- publishedBeforeLastFrame
    }

    /// Whether the consumer has released everything published so far.
    /// The producer index: where the next frame will go.
    public var publishedIndex: UInt64 { produced }

    /// True once the consumer has released every byte before `index` (an
    /// earlier ``publishedIndex``).
    public func consumed(through index: UInt64) throws(RingViolation) -> Bool {
        try refreshConsumed()
        return produced &- cachedConsumed <= produced &- index
    }

    public func isDrained() throws(RingViolation) -> Bool {
        try refreshConsumed()
        return cachedConsumed == produced
    }

    /// The low 32 bits of the consumer index as this producer last saw it
    /// (when `reserve` found the ring full): the value to wait for a change of.
    public var lastSeenConsumedWord: UInt32 { UInt32(truncatingIfNeeded: cachedConsumed) }

    /// Whether the consumer index moved since its low 32 bits read `observed`
    /// (the word a producer sleeps on while the ring is full).
    public func consumerProgressed(since observed: UInt32) throws(RingViolation) -> Bool {
        try refreshConsumed()
        return UInt32(truncatingIfNeeded: cachedConsumed) != observed
    }

    /// Reads and checks the consumer index: it may only move forward, and
    /// never past what was produced.
    @inline(__always)
    private func refreshConsumed() throws(RingViolation) {
        let consumed = consumerIndex.pointee.load(ordering: .acquiring)
        let advance = consumed &- cachedConsumed
        guard advance <= produced &- cachedConsumed, advance % UInt64(FrameHeader.alignment) == 0 else {
            throw RingViolation("ring \(ringIndex) consumer index \(consumed) is outside [\(cachedConsumed), \(produced)] or not a multiple of \(FrameHeader.alignment)")
        }
        cachedConsumed = consumed
    }
}
