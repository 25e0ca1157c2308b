import Altp2m
import SecureChannel
import Synchronization

/// Target `ring`: one side's `RingProducer` and `RingConsumer` against a
/// window the fuzzer writes as a hostile peer would.
///
/// Input: a geometry byte, the four indices as they stand before this side
/// opens, then a script. Each step is either a peer action (move an index,
/// write a header or raw bytes anywhere in the window, publish a well-formed
/// frame, consume what this side published) or a victim call (`receive`,
/// `peekFrame`/`release`, `reserve`/`commit`, the producer's queries).
///
/// Oracle: no trap and no access outside the window (the window is its own
/// heap allocation, so the address sanitizer sees any overrun); every call
/// returns a frame, nothing, or a `RingViolation`; a received frame's length
/// fits the buffer it was copied into; a reserved slot lies inside the ring.
package enum RingTarget {
    static let target = FuzzTarget(
        name: "ring", summary: "ring producer and consumer against a hostile window and peer script",
        run: { bytes throws(OracleViolation) in try run(bytes) }, seeds: seeds)

    enum Step: UInt8, CaseIterable {
        case peerProducerIndex, peerConsumerIndex, peerHeader, peerBytes, peerPublish, peerConsumeAll
        case receive, peekAndRelease, reserveAndCommit, producerQueries
    }

    static func run(_ bytes: [UInt8]) throws(OracleViolation) {
        _ = try replay(bytes)
    }

    /// Runs one input; returns how many frames the victim received and
    /// committed, for tests that check the seeds reach deep code.
    package static func replay(_ bytes: [UInt8]) throws(OracleViolation) -> (received: Int, committed: Int) {
        var received = 0, committed = 0
        var input = FuzzInput(bytes)
        let shape = input.byte()
        let oneWay = shape & 4 != 0
        let geometry = try! RingGeometry(pageCount: 2 + Int(shape & 3), oneWay: oneWay)
        // One-way: this side is the writer or the reader of ring 0;
        // two-way: the initiator (writes ring 0, reads ring 1).
        let writes = !oneWay || shape & 8 == 0
        let reads = !oneWay || shape & 8 != 0
        let sendRing = 0, receiveRing = oneWay ? 0 : 1

        let window = FuzzWindow(geometry: geometry)
        defer { window.release() }
        // The indices as the peer left them before this side opens.
        for ring in 0..<(oneWay ? 1 : 2) {
            window.index(.producer, ring: ring).pointee.store(input.u64(), ordering: .relaxed)
            window.index(.consumer, ring: ring).pointee.store(input.u64(), ordering: .relaxed)
        }
        let producer: RingProducer?
        let consumer: RingConsumer?
        do {
            producer = writes ? try RingProducer(window: window.base, geometry: geometry, ring: sendRing) : nil
            consumer = reads ? try RingConsumer(window: window.base, geometry: geometry, ring: receiveRing) : nil
        } catch {
            return (0, 0)  // refused at open: the documented outcome for bad indices
        }
        var peer = ScriptedPeer(window: window, receiveRing: receiveRing, sendRing: sendRing)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: geometry.maximumPayloadBytes, alignment: 16)
        defer { buffer.deallocate() }

        var steps = 0
        while !input.isExhausted, steps < 512 {
            steps += 1
            guard let step = Step(rawValue: input.byte() % UInt8(Step.allCases.count)) else { continue }
            do {
                switch step {
                case .peerProducerIndex, .peerConsumerIndex, .peerHeader, .peerBytes, .peerPublish, .peerConsumeAll:
                    peer.act(step, &input)
                case .receive:
                    guard let consumer else { continue }
                    if let header = try consumer.receive(into: buffer) {
                        guard Int(header.length) <= buffer.count else {
                            throw OracleViolation("receive returned \(header.length) bytes into a \(buffer.count)-byte buffer")
                        }
                        received += 1
                    }
                case .peekAndRelease:
                    guard let consumer else { continue }
                    if let (header, payload) = try consumer.peekFrame() {
                        try window.check(payload, count: Int(header.length), what: "peeked payload")
                        consumer.release(header)
                    }
                case .reserveAndCommit:
                    let requested = Int(input.u16())
                    guard let producer else { continue }
                    let length = requested % (producer.maximumPayloadBytes + 1)
                    if let slot = try producer.reserve(payloadBytes: length) {
                        try window.check(UnsafeRawPointer(slot), count: length, what: "reserved slot")
                        producer.commit(FrameHeader(length: UInt32(length), type: .data, sequence: UInt64(steps)))
                        committed += 1
                    }
                case .producerQueries:
                    guard let producer else { continue }
                    _ = try producer.isDrained()
                    _ = try producer.consumed(through: producer.publishedIndex)
                    _ = try producer.consumerProgressed(since: producer.lastSeenConsumedWord)
                    _ = producer.consumerHadCaughtUp()
                }
            } catch let violation as OracleViolation {
                throw violation
            } catch {
                // A RingViolation: the documented answer to a hostile peer.
                // The side stops using the ring, as the endpoint does.
                return (received, committed)
            }
        }
        return (received, committed)
    }

    /// A benign run of each geometry: frames both ways, wrapping the ring.
    package static func seeds() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for shape: UInt8 in [0, 1, 4, 12] {
            // Zero indices: two per ring.
            var bytes: [UInt8] = [shape] + [UInt8](repeating: 0, count: shape & 4 != 0 ? 16 : 32)
            for round in 0..<24 {
                let length = UInt16(100 + round * 97)
                if shape & 8 == 0 {
                    bytes += [Step.reserveAndCommit.rawValue, UInt8(length & 0xFF), UInt8(length >> 8)]
                    bytes += [Step.peerConsumeAll.rawValue]
                }
                bytes += [Step.peerPublish.rawValue, UInt8(length & 0xFF), UInt8(length >> 8), FrameType.data.rawValue]
                bytes += [Step.receive.rawValue, Step.producerQueries.rawValue]
            }
            seeds.append(bytes)
        }
        return seeds
    }
}

/// The peer's side of the ring target: moves indices, writes frames and
/// arbitrary bytes, as a hostile guest sharing the window can.
struct ScriptedPeer {
    let window: FuzzWindow
    let receiveRing: Int
    let sendRing: Int
    /// Where a well-formed frame from this peer goes next (its own producer index).
    var produced: UInt64

    init(window: FuzzWindow, receiveRing: Int, sendRing: Int) {
        self.window = window
        self.receiveRing = receiveRing
        self.sendRing = sendRing
        produced = window.index(.producer, ring: receiveRing).pointee.load(ordering: .relaxed) & ~15
    }

    mutating func act(_ step: RingTarget.Step, _ input: inout FuzzInput) {
        switch step {
        case .peerProducerIndex:
            window.index(.producer, ring: receiveRing).pointee.store(nextIndex(around: produced, &input), ordering: .relaxed)
        case .peerConsumerIndex:
            let current = window.index(.consumer, ring: sendRing).pointee.load(ordering: .relaxed)
            window.index(.consumer, ring: sendRing).pointee.store(nextIndex(around: current, &input), ordering: .relaxed)
        case .peerHeader:
            let offset = Int(input.u16()) & (window.geometry.ringSize - 1) & ~15
            let header = input.bytes(16) + [UInt8](repeating: 0, count: 16)
            window.write(header[0..<16], at: window.geometry.ringOffsets[receiveRing] + offset)
        case .peerBytes:
            let offset = Int(input.u16()) % window.byteCount
            let count = Int(input.byte() % 33)
            window.write(input.bytes(count)[...], at: offset)
        case .peerPublish:
            publish(length: Int(input.u16()), type: input.byte())
        case .peerConsumeAll:
            let published = window.index(.producer, ring: sendRing).pointee.load(ordering: .relaxed)
            window.index(.consumer, ring: sendRing).pointee.store(published, ordering: .relaxed)
        default:
            break
        }
    }

    /// An index near `current` (most interesting values are), or anywhere.
    private func nextIndex(around current: UInt64, _ input: inout FuzzInput) -> UInt64 {
        let choice = input.byte()
        switch choice & 3 {
        case 0: return current &+ UInt64(input.u16())
        case 1: return current &- UInt64(input.u16())
        case 2: return current &+ UInt64(input.byte()) * 16
        default: return input.u64()
        }
    }

    /// Writes a frame as a genuine producer would (with a padding frame at
    /// the tail when needed) and publishes it.
    private mutating func publish(length: Int, type: UInt8) {
        let size = UInt64(window.geometry.ringSize)
        let payload = min(length, window.geometry.maximumPayloadBytes)
        let frame = UInt64(FrameHeader.frameBytes(payloadBytes: payload))
        let base = window.geometry.ringOffsets[receiveRing]
        var position = produced & (size - 1)
        if frame > size - position {
            let padding = FrameHeader(length: UInt32(size - position) - UInt32(FrameHeader.byteCount), type: .padding, sequence: 0)
            padding.store(to: window.base + base + Int(position))
            produced &+= size - position
            position = 0
        }
        let header = FrameHeader(length: UInt32(payload), type: FrameType(rawValue: type % 5) ?? .data, sequence: produced)
        header.store(to: window.base + base + Int(position))
        let filler = [UInt8](repeating: UInt8(truncatingIfNeeded: produced >> 4), count: min(payload, 64))
        window.write(filler[...], at: base + Int(position) + FrameHeader.byteCount)
        produced &+= frame
        window.index(.producer, ring: receiveRing).pointee.store(produced, ordering: .sequentiallyConsistent)
    }
}
