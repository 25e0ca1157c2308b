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
    private let size: UInt64
    private let mask: UInt64
    private let maximumFrameBytes: Int
    private let producerIndex: UnsafeMutablePointer<Atomic<UInt64>>
    private let consumerIndex: UnsafeMutablePointer<Atomic<UInt64>>

    /// Next position to read (free-running).
    private var consumed: UInt64 = 0
    /// Last producer index read from shared memory and found valid.
    private var cachedProduced: UInt64 = 0

    /// The reader of ring `ringIndex` of the window at `window`.
    public init(window: UnsafeMutableRawPointer, geometry: RingGeometry, ring ringIndex: Int) {
        let control = ControlPage(base: window)
        ring = window + geometry.ringOffsets[ringIndex]
        size = UInt64(geometry.ringSize)
        mask = UInt64(geometry.ringSize - 1)
        maximumFrameBytes = geometry.maximumFrameBytes
        producerIndex = control.producer(ring: ringIndex)
        consumerIndex = control.consumer(ring: ringIndex)
        consumed = consumerIndex.pointee.load(ordering: .relaxed)
        cachedProduced = consumed
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
                guard UInt64(header.length) + UInt64(FrameHeader.byteCount) == toEnd, available >= toEnd else {
                    throw RingViolation("padding frame at index \(consumed) claims \(header.length) bytes; the tail has \(toEnd - UInt64(FrameHeader.byteCount))")
                }
                consumed &+= toEnd
                consumerIndex.pointee.store(consumed, ordering: .sequentiallyConsistent)
                continue
            }
            let frame = UInt64(FrameHeader.frameBytes(payloadBytes: Int(header.length)))
            guard frame <= UInt64(maximumFrameBytes), frame <= toEnd, frame <= available else {
                throw RingViolation("frame at index \(consumed) claims \(header.length) payload bytes; at most \(min(UInt64(maximumFrameBytes), toEnd, available) - UInt64(FrameHeader.byteCount)) fit")
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
        guard Int(header.length) <= buffer.count else {
            throw RingViolation("frame of \(header.length) bytes exceeds the receive buffer (\(buffer.count))")
        }
        if header.length > 0 {
            buffer.baseAddress!.copyMemory(from: payload, byteCount: Int(header.length))
        }
        release(header)
        return header
    }

    /// The header of the next frame without consuming it, or nil when the
    /// ring is empty. The caller may then `receive` it or leave it for later.
    public func peekHeader() throws(RingViolation) -> FrameHeader? {
        try peekFrame()?.header
    }

    /// Reads and checks the producer index: it may only move forward, by at
    /// most the ring's size past what was consumed, in whole 16-byte units.
    @inline(__always)
    private func refreshProduced() throws(RingViolation) {
        let produced = producerIndex.pointee.load(ordering: .acquiring)
        let ahead = produced &- consumed
        guard ahead <= size, ahead >= cachedProduced &- consumed, ahead % UInt64(FrameHeader.alignment) == 0 else {
            throw RingViolation("producer index \(produced) is impossible (consumed \(consumed), ring \(size) bytes)")
        }
        cachedProduced = produced
    }
}
