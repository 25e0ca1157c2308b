import Altp2m
import Synchronization

/// The reading end of one data ring (single consumer).
///
/// Every frame is copied out of shared memory into a private buffer before
/// anything in it is interpreted (copy-then-verify): the peer can rewrite the
/// ring at any moment, so only the private copy is validated and used. The
/// only shared value the consumer writes is its own index.
public final class RingConsumer {
    private let ring: UnsafeMutableRawPointer
    let size: UInt64
    private let mask: UInt64
    private let maximumFrameBytes: Int
    let producerIndex: UnsafeMutablePointer<Atomic<UInt64>>
    let consumerIndex: UnsafeMutablePointer<Atomic<UInt64>>

    /// Which ring this is (0 or 1), for the messages that name a field.
    let ringIndex: Int
    /// Next position to read (free-running).
    var consumed: UInt64 = 0
    /// Last producer index read from shared memory and found valid.
    var cachedProduced: UInt64 = 0

    /// The producer's incarnation word and session start in its state line,
    /// once watched (`RingConsumer+Incarnations.swift`): nil for a ring read
    /// on its own (the ring tests, the fuzzer's ring target).
    var incarnationWord: UnsafeMutablePointer<Atomic<UInt32>>?
    var startWord: UnsafeMutablePointer<Atomic<UInt64>>?
    /// The producer incarnation whose frames this consumer reads (0: none yet).
    public internal(set) var pairedIncarnation: UInt32 = 0
    /// Where the producer's next incarnation starts, once seen: nothing at or
    /// past it is read in this session.
    public internal(set) var restartBoundary: UInt64?

    /// The reader of ring `ringIndex` of the window at `window`, resuming
    /// from the consumer index published in the window (zero for a fresh one).
    ///
    /// That index sits in shared memory, where the peer can have written
    /// anything before this side opened: it is checked like every other
    /// shared value, so a position that is not a frame boundary never
    /// becomes the place a 16-byte header is read from.
    /// - Throws: `RingViolation` naming the index when it is not a multiple
    ///   of 16, or the producer index is not within one ring of it.
    public init(window: UnsafeMutableRawPointer, geometry: RingGeometry, ring ringIndex: Int) throws(RingViolation) {
        let control = ControlPage(base: window)
        self.ringIndex = ringIndex
        ring = window + geometry.ringOffsets[ringIndex]
        size = UInt64(geometry.ringSize)
        mask = UInt64(geometry.ringSize - 1)
        maximumFrameBytes = geometry.maximumFrameBytes
        producerIndex = control.producer(ring: ringIndex)
        consumerIndex = control.consumer(ring: ringIndex)
        let start = consumerIndex.pointee.load(ordering: .acquiring)
        guard start % UInt64(FrameHeader.alignment) == 0 else {
            throw RingViolation("ring \(ringIndex) consumer index \(start) is not a multiple of \(FrameHeader.alignment) (read at open)")
        }
        // The producer index is checked against it now, not at the first
        // receive, so a bad pair is reported by the open that found it.
        let produced = producerIndex.pointee.load(ordering: .acquiring)
        let ahead = produced &- start
        guard ahead <= size, ahead % UInt64(FrameHeader.alignment) == 0 else {
            throw RingViolation("ring \(ringIndex) producer index \(produced) is not a frame boundary within one ring (\(size) bytes) ahead of consumer index \(start) (read at open)")
        }
        consumed = start
        cachedProduced = produced
    }

    /// The largest payload one frame can carry; receive buffers need this much.
    public var maximumPayloadBytes: Int { maximumFrameBytes - FrameHeader.byteCount }

    /// The shared word to sleep on while the ring is empty.
    public var wakeWord: UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(producerIndex).assumingMemoryBound(to: UInt32.self)
    }

    /// The shared word a producer sleeps on while this ring is full (the low
    /// half of this consumer's index).
    public var spaceWord: UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(consumerIndex).assumingMemoryBound(to: UInt32.self)
    }

    /// Whether a frame is waiting (reads the producer index if needed).
    /// - Throws: `RingViolation` for an impossible producer index.
    @inline(__always)
    public func hasFrame() throws(RingViolation) -> Bool {
        if consumed != cachedProduced { return true }
        try refreshProduced()
        return consumed != cachedProduced
    }

    // The consumer index is published with a sequentially consistent store
    // for the same reason as the producer's: the consumer reads the
    // producer's "waiting for space" flag right after, and on x86 a plain
    // release store may still sit in the store buffer when that load runs,
    // so both sides could miss each other (a lost wake-up).

    /// Validates the next frame and returns its header (copied to private
    /// memory and checked) and where its payload sits in the ring, without
    /// consuming it; padding at the tail is consumed on the way. Nil when the
    /// ring is empty. `release(_:)` consumes the frame.
    ///
    /// The payload bytes stay in shared memory: the peer may change them at
    /// any time, so only `receive` (which copies them out) is safe for data
    /// that will be verified.
    /// - Throws: `RingViolation` for any index, length, type or alignment
    ///   that a correct peer cannot produce.
    @inline(__always)
    public func peekFrame() throws(RingViolation) -> (header: FrameHeader, payload: UnsafeRawPointer)? {
        var afterPadding = false
        while true {
            guard try hasFrame() else { return nil }
            let available = cachedProduced &- consumed
            let position = consumed & mask
            let toEnd = size - position
            // Copy the header out before looking at it.
            var raw = (UInt64(0), UInt64(0))
            let header: FrameHeader? = withUnsafeMutableBytes(of: &raw) { h in
                h.baseAddress!.copyMemory(from: ring + Int(position), byteCount: FrameHeader.byteCount)
                return FrameHeader.load(from: h.baseAddress!)
            }
            guard let header else {
                throw RingViolation("frame at index \(consumed) has an unknown type or non-zero reserved bits")
            }
            if header.type == .padding {
                // A correct producer pads only the tail before a frame that
                // did not fit, so the frame after a padding frame starts the
                // ring and is never padding itself: a second one in a row is
                // a peer trying to keep this loop (and the caller) busy.
                guard !afterPadding else {
                    throw RingViolation("padding frame at index \(consumed) follows a padding frame")
                }
                guard UInt64(header.length) &+ UInt64(FrameHeader.byteCount) == toEnd, available >= toEnd else {
                    throw RingViolation("padding frame at index \(consumed) claims \(header.length) bytes; the tail has \(toEnd &- UInt64(FrameHeader.byteCount))")
                }
                consumed &+= toEnd
                consumerIndex.pointee.store(consumed, ordering: .sequentiallyConsistent)
                afterPadding = true
                continue
            }
            let frame = UInt64(FrameHeader.frameBytes(payloadBytes: Int(header.length)))
            guard frame <= UInt64(maximumFrameBytes), frame <= toEnd, frame <= available else {
                throw RingViolation("frame at index \(consumed) claims \(header.length) payload bytes; at most \(min(UInt64(maximumFrameBytes), toEnd, available) &- UInt64(FrameHeader.byteCount)) fit")
            }
            return (header, UnsafeRawPointer(ring + Int(position) + FrameHeader.byteCount))
        }
    }

    /// Consumes the frame `peekFrame` returned (its header as returned).
    @inline(__always)
    public func release(_ header: FrameHeader) {
        consumed &+= UInt64(FrameHeader.frameBytes(payloadBytes: Int(header.length)))
        consumerIndex.pointee.store(consumed, ordering: .sequentiallyConsistent)
    }

    /// Copies the next frame's payload into `buffer` and releases its space.
    ///
    /// - Parameter buffer: private memory of at least `maximumPayloadBytes`.
    /// - Returns: the frame's header (its `length` bytes of payload are at the
    ///   start of `buffer`), or nil when the ring is empty.
    /// - Throws: `RingViolation` for any index, length, type or alignment
    ///   that a correct peer cannot produce.
    @inline(__always)
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(RingViolation) -> FrameHeader? {
        var direct = false
        return try receive(into: buffer, dataFitting: nil, wentDirect: &direct)
    }

    /// Like ``receive(into:)``, but a data frame whose payload fits `direct`
    /// is copied there instead (`wentDirect` is then true): a plaintext
    /// receive copies once, straight to the caller's private buffer.
    public func receive(into buffer: UnsafeMutableRawBufferPointer, dataFitting direct: UnsafeMutableRawBufferPointer?,
                        wentDirect: inout Bool) throws(RingViolation) -> FrameHeader? {
        guard let (header, payload) = try peekFrame() else { return nil }
        var buffer = buffer
        if let direct, header.type == .data, Int(header.length) <= direct.count {
            buffer = direct
            wentDirect = true
        }
        try take(header, payload: payload, into: buffer)
        return header
    }

    /// Takes the next frame into `buffer` only if `accept` approves its
    /// header; otherwise leaves it in the ring and returns nil.
    ///
    /// The header is fetched from shared memory once: the copy `accept`
    /// judges is the one that decides the payload's length and what the
    /// caller does with the frame, so a peer that rewrites the header
    /// between a look and a take cannot swap the frame.
    public func receive(into buffer: UnsafeMutableRawBufferPointer,
                        ifHeader accept: (FrameHeader) -> Bool) throws(RingViolation) -> FrameHeader? {
        guard let (header, payload) = try peekFrame(), accept(header) else { return nil }
        try take(header, payload: payload, into: buffer)
        return header
    }

    /// Copies the payload of the frame `peekFrame` returned into `buffer`
    /// and releases the frame.
    @inline(__always)
    private func take(_ header: FrameHeader, payload: UnsafeRawPointer,
                      into buffer: UnsafeMutableRawBufferPointer) throws(RingViolation) {
        guard Int(header.length) <= buffer.count else {
            throw RingViolation("frame of \(header.length) bytes exceeds the receive buffer (\(buffer.count))")
        }
        if header.length > 0 {
            buffer.baseAddress!.copyMemory(from: payload, byteCount: Int(header.length))
        }
        release(header)
    }

    /// Reads and checks the producer index: it may only move forward, by at
    /// most the ring's size past what was consumed, in whole 16-byte units.
    @inline(__always)
    private func refreshProduced() throws(RingViolation) {
        // The session ends at a restart boundary; and before it paired
        // with an incarnation, a watched consumer reads nothing.
        if restartBoundary != nil || (incarnationWord != nil && pairedIncarnation == 0) { return }
        let produced = producerIndex.pointee.load(ordering: .acquiring)
        let ahead = produced &- consumed
        guard ahead <= size, ahead >= cachedProduced &- consumed, ahead % UInt64(FrameHeader.alignment) == 0 else {
            throw RingViolation("ring \(ringIndex) producer index \(produced) is impossible (consumed \(consumed), ring \(size) bytes)")
        }
        // New frames: the producer's incarnation is read after the index
        // (acquire), and a new incarnation publishes itself before its
        // first frame, so frames of a later incarnation are never taken
        // for this session's.
        if produced != cachedProduced, let word = incarnationWord,
           word.pointee.load(ordering: .acquiring) != pairedIncarnation {
            try noteRestart(produced: produced)
            return
        }
        cachedProduced = produced
    }
}
