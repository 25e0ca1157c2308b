import Altp2m
import Synchronization

// A channel outlives its sessions: each side's state line holds its
// incarnation (incremented by every open) and the producer index its
// session starts at. The consumer reads one producer incarnation at a time:
// it pairs with an incarnation none of its own earlier incarnations read
// from, starts at that incarnation's first frame, and stops where the next
// one starts. Old frames are skipped, never interpreted; nothing is reset,
// every index keeps its single writer (docs/PROTOCOL.md, "Restarts").
extension RingConsumer {
    /// Watches the producer's incarnation and session start (words of its
    /// state line). Until ``pair()`` succeeds nothing of the ring is read
    /// as a session's.
    public func watchProducer(incarnation: UnsafeMutablePointer<Atomic<UInt32>>,
                              start: UnsafeMutablePointer<Atomic<UInt64>>) {
        incarnationWord = incarnation
        startWord = start
        cachedProduced = consumed
    }

    /// Whether the consumer has read everything the paired incarnation
    /// published before the producer opened again.
    public var restartBoundaryReached: Bool {
        restartBoundary.map { $0 == consumed } ?? false
    }

    /// Pairs with the producer's current incarnation if this consumer may
    /// read it: the producer opened (its incarnation is not 0) and no
    /// earlier incarnation of this side consumed any of its frames (its
    /// start is not behind the consumer index, which every incarnation of
    /// this side shares). Then skips to that start, past whatever an older
    /// producer incarnation left unread, and publishes the index.
    ///
    /// - Returns: the incarnation paired with, or nil when there is none to
    ///   pair with yet (the producer never opened, is reopening right now,
    ///   or is still in a session with an earlier incarnation of this side,
    ///   which ends once it sees this side's new incarnation).
    /// - Throws: `RingViolation` for a start or producer index no correct
    ///   producer writes (off the grid, or past the producer index).
    public func pair() throws(RingViolation) -> UInt32? {
        guard let incarnationWord, let startWord else { return nil }
        let incarnation = incarnationWord.pointee.load(ordering: .acquiring)
        guard incarnation != 0 else { return nil }
        let start = startWord.pointee.load(ordering: .acquiring)
        // Read as a pair: a producer that opened again in between wrote
        // another start; the next look pairs with that one.
        guard incarnationWord.pointee.load(ordering: .acquiring) == incarnation else { return nil }
        let produced = producerIndex.pointee.load(ordering: .acquiring)
        let ahead = produced &- consumed
        guard ahead <= size, ahead % UInt64(FrameHeader.alignment) == 0 else {
            throw RingViolation("ring \(ringIndex) producer index \(produced) is impossible (consumed \(consumed), ring \(size) bytes)")
        }
        guard start % UInt64(FrameHeader.alignment) == 0 else {
            throw RingViolation("ring \(ringIndex) producer's session start \(start) is not a multiple of \(FrameHeader.alignment)")
        }
        if start &- consumed > ahead {
            // Ahead of the producer index (by less than half the index
            // space): not a start at all. Behind this consumer: an earlier
            // incarnation of this side read that session.
            guard start &- produced > UInt64.max / 2 else {
                throw RingViolation("ring \(ringIndex) producer's session start \(start) lies past its producer index \(produced)")
            }
            return nil
        }
        consumed = start
        cachedProduced = produced
        pairedIncarnation = incarnation
        restartBoundary = nil
        consumerIndex.pointee.store(consumed, ordering: .sequentiallyConsistent)
        return incarnation
    }

    /// The producer published frames under another incarnation than the
    /// paired one: they start at its new session start, so this session
    /// reads up to there and no further.
    func noteRestart(produced: UInt64) throws(RingViolation) {
        let start = startWord!.pointee.load(ordering: .acquiring)
        guard start % UInt64(FrameHeader.alignment) == 0,
              start &- cachedProduced <= produced &- cachedProduced
        else {
            throw RingViolation("ring \(ringIndex) producer's new session start \(start) is outside [\(cachedProduced), \(produced)]")
        }
        restartBoundary = start
        cachedProduced = start
    }

    /// Whether the producer's incarnation differs from the paired one (a
    /// look at its state line; the ring itself is not read).
    public var producerReopened: Bool {
        guard let incarnationWord, pairedIncarnation != 0 else { return false }
        return incarnationWord.pointee.load(ordering: .acquiring) != pairedIncarnation
    }

    /// Whether the frames this consumer reads belong to a session: it paired
    /// with a producer incarnation, or it watches none.
    public var readsSession: Bool { incarnationWord == nil || pairedIncarnation != 0 }
}
