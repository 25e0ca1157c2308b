import Altp2m
import Synchronization

// Waiting for data outside the library: a caller that sleeps in poll(2) on
// a file descriptor rather than in `receive` (the C interface's sc_fd). The
// caller announces the wait as `sleep(on:)` does, so the peer wakes it
// after its next publish, and hands the word and its value to whatever
// stands for the event channel (on the simulator, a thread in a futex wait).
extension ChannelEndpoint {
    /// The word an outside waiter sleeps on: every publish by the peer
    /// changes it (the low half of the producer index of the ring this side
    /// reads), and the peer's wake-up and the host's teardown wake it. Nil
    /// on the writer of a one-way channel, which reads no ring.
    package var dataWaitWord: UnsafeMutablePointer<UInt32>? { consumer?.wakeWord }

    /// Announces that this side waits for data outside the library, so the
    /// peer wakes it after its next publish, and returns the value of
    /// ``dataWaitWord`` to wait on: any other value, or a wake-up, means
    /// "receive again".
    ///
    /// Returns nil when waiting would be wrong: a frame (or a message that
    /// did not fit the caller's buffer) is already there, or the session
    /// ended; receive instead. The announcement lasts until
    /// ``withdrawDataWait()``, which the caller makes before its next call
    /// on the channel. The reader of a one-way channel writes nothing but
    /// its consumer index, so it announces nothing; its writer wakes it when
    /// it had caught up (``wakeOneWayReader()``), as with its own sleeps.
    /// - Throws: ``ChannelError/sendOnly`` on the writer of a one-way
    ///   channel; `.peerDied` when the host tore the channel down.
    package func announceDataWait() throws(ChannelError) -> UInt32? {
        try checkCanReceive()
        guard pendingLength < 0, failure == nil, !peerClosed, let consumer else { return nil }
        let word = consumer.wakeWord
        let flag = control.u32(at: sideOffset(side) + ControlPage.SideField.waiting)
        let announces = producer != nil
        return try withChannelView { () throws(ChannelError) -> UInt32? in
            // Announce, then read the word, then look at the ring once more,
            // all sequentially consistent: either the peer's publish sees the
            // flag (and wakes), or this look sees its frame.
            if announces { _ = flag.pointee.bitwiseOr(1, ordering: .sequentiallyConsistent) }
            let value = UnsafeMutableRawPointer(word).assumingMemoryBound(to: Atomic<UInt32>.self).pointee
                .load(ordering: .sequentiallyConsistent)
            let ready: Bool
            do throws(ChannelError) {
                try checkPeerAlive(allowPeerClosed: true)
                ready = try ringCall { () throws(RingViolation) -> Bool in try consumer.hasFrame() }
            } catch {
                if announces { _ = flag.pointee.bitwiseAnd(~1, ordering: .sequentiallyConsistent) }
                throw error
            }
            if ready {
                if announces { _ = flag.pointee.bitwiseAnd(~1, ordering: .sequentiallyConsistent) }
                return nil
            }
            return value
        }
    }

    /// Ends an announcement of ``announceDataWait()``: the peer no longer
    /// wakes this side for data.
    package func withdrawDataWait() {
        guard producer != nil, consumer != nil else { return }
        let flag = control.u32(at: sideOffset(side) + ControlPage.SideField.waiting)
        _ = try? withChannelView { () throws(ChannelError) in
            _ = flag.pointee.bitwiseAnd(~1, ordering: .sequentiallyConsistent)
        }
    }
}
