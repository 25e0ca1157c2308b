import Altp2m
import CPlatform
import Synchronization

// Sessions over a channel that outlives them: each open is a new
// incarnation of its side, published in the side's state line, and the
// consumer reads one peer incarnation at a time (RingConsumer+Incarnations).
// What ends a session when the peer opens again, or when the host re-issues
// the descriptors. docs/PROTOCOL.md, "Restarts".
extension ChannelEndpoint {
    /// At open, inside the view: watches the peer's incarnation, and (a side
    /// that writes) publishes its own: the session's start (its producer
    /// index: frames before it belong to earlier incarnations), its `closed`
    /// and `waiting` words cleared, then the incremented incarnation with a
    /// sequentially consistent store, so a peer that sees the incarnation
    /// sees the rest, and every frame of the new session comes after it.
    ///
    /// The old value is read from the window, where the peer can write it
    /// too; it only has to differ from the last one, and the value used
    /// afterwards is this private copy.
    func announceIncarnation() {
        if let consumer {
            let peerLine = sideOffset(side.peer)
            consumer.watchProducer(incarnation: control.u32(at: peerLine + ControlPage.SideField.incarnation),
                                   start: control.u64(at: peerLine + ControlPage.SideField.start))
        }
        // The reader of a one-way channel writes nothing but its consumer index.
        guard let producer else { return }
        let line = sideOffset(side)
        control.u64(at: line + ControlPage.SideField.start).pointee.store(producer.publishedIndex, ordering: .relaxed)
        control.u32(at: line + ControlPage.SideField.closed).pointee.store(0, ordering: .relaxed)
        control.u32(at: line + ControlPage.SideField.waiting).pointee.store(0, ordering: .relaxed)
        let word = control.u32(at: line + ControlPage.SideField.incarnation)
        let next = word.pointee.load(ordering: .relaxed) &+ 1
        ownIncarnation = next == 0 ? 1 : next
        word.pointee.store(ownIncarnation, ordering: .sequentiallyConsistent)
    }

    /// After announcing: wakes a peer asleep on either ring, so a session it
    /// still holds with this side's previous incarnation ends now rather
    /// than at its next re-check.
    func wakePeerForOpen() {
        guard producer != nil else { return }
        if let producer { platform.notify(WakeTarget(word: producer.wakeWord, port: port)) }
        if let consumer { platform.notify(WakeTarget(word: consumer.spaceWord, port: port)) }
    }

    /// Before the first frame of the peer is read: waits until the peer's
    /// current incarnation is one this side may read (see
    /// ``RingConsumer/pair()``) and skips to its start. Only the host line
    /// ends the wait early; the peer's `closed` bits belong to whichever
    /// incarnation wrote them and are not looked at until paired.
    func pairWithPeer(deadline: UInt64) throws(ChannelError) {
        guard let consumer else { return }
        while true {
            let observed = try withChannelView { () throws(ChannelError) -> UInt32? in
                try checkPeerAlive(allowPeerClosed: true)
                let word = UnsafeMutableRawPointer(consumer.wakeWord).assumingMemoryBound(to: Atomic<UInt32>.self)
                let observed = word.pointee.load(ordering: .acquiring)
                return try ringCall { () throws(RingViolation) in try consumer.pair() } == nil ? observed : nil
            }
            guard let observed else { return }
            if cplatform_monotonic_ns() >= deadline { throw .timeout }
            try sleepUnlessChanged(on: consumer.wakeWord, observed: observed, deadline: deadline)
        }
    }

    /// Inside the view, in every wait: the host re-issued the descriptors,
    /// or the paired peer incarnation was followed by another. A wait for
    /// room ends at once (the old incarnation will not read again); a wait
    /// for data once everything the old incarnation sent was read.
    func checkIncarnations(forSpace: Bool) throws(ChannelError) {
        try checkGeneration()
        guard let consumer, consumer.pairedIncarnation != 0 else { return }
        var over = consumer.restartBoundaryReached
        if !over, consumer.producerReopened {
            let pending = forSpace ? false : try ringCall { () throws(RingViolation) in try consumer.hasFrame() }
            over = !pending
        }
        if over {
            failure = .peerRestarted
            throw .peerRestarted
        }
    }

    /// Inside the view: throws ``ChannelError/descriptorsReissued(generation:)``
    /// once the host line names a newer generation than this session's
    /// descriptor. The host line is shared memory: a peer can write it too,
    /// and then only ends the session (as closing would).
    func checkGeneration() throws(ChannelError) {
        let current = control.u64(at: ControlPage.Offset.hostState + ControlPage.HostField.generation)
            .pointee.load(ordering: .acquiring)
        if current > parameters.generation {
            failure = .descriptorsReissued(generation: current)
            throw .descriptorsReissued(generation: current)
        }
    }

    /// Whether the peer's state line belongs to the incarnation this side
    /// talks to: once paired, or when the peer is not watched (the writer
    /// of a one-way channel reads no ring; test sessions keyed without a
    /// handshake).
    var peerLineInUse: Bool {
        guard let consumer else { return true }
        return consumer.readsSession
    }
}
