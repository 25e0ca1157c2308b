import Altp2m
import CPlatform
import ChannelCrypto
import Synchronization

// Waiting for the peer and waking it: polling in bursts inside the view,
// the announced and unannounced sleeps, liveness, and what ends a wait.
extension ChannelEndpoint {
    /// Waits until the peer made progress (data arrived, or room was made),
    /// the deadline passed, or the peer went away. With `interruptible`, also
    /// returns once ``receiveInterrupt`` is set (within one sleep, at most
    /// 10 ms); the caller checks the flag.
    func waitForPeer(forSpace: Bool, deadline: UInt64, allowPeerClosed: Bool = false,
                             interruptible: Bool = false) throws(ChannelError) {
        var fixed = WaitDeadline(absolute: deadline)
        try waitForPeer(forSpace: forSpace, deadline: &fixed, allowPeerClosed: allowPeerClosed, interruptible: interruptible)
    }

    func waitForPeer(forSpace: Bool, deadline: inout WaitDeadline, allowPeerClosed: Bool = false,
                             interruptible: Bool = false) throws(ChannelError) {
        counters.waits &+= 1
        let spinBudget = options.wait.spinNanoseconds
        // Spinning polls in bursts inside one visit to the channel view (a
        // VMFUNC pair per burst, not per poll); blocking checks once per visit.
        let burst = spinBudget == 0 ? 1 : Self.pollBurst
        // The clock is read at the first checkpoint, not on entry: a wait
        // that ends within the first bursts reads no clock at all.
        var start: UInt64 = spinBudget == 0 ? cplatform_monotonic_ns() : 0
        if start != 0 { peerLivenessChangedAt = start }
        let word = forSpace ? producer!.spaceWord : consumer!.wakeWord
        // Waiting for room: wait for the consumer index to move past the
        // value `reserve` saw (a fresh read could already include the
        // consumer's last move, and then nothing would ever change it again).
        // Waiting for data: the wake word as read (inside the view) before a
        // burst that found the ring empty, so a frame published after that
        // read changes it and the sleep below returns at once.
        var observed = forSpace ? producer!.lastSeenConsumedWord : 0
        var spins: UInt64 = 0
        while true {
            if interruptible, receiveInterrupt.load(ordering: .relaxed) { return }
            // Re-check the condition from inside the view.
            let ready = try withChannelView { () throws(ChannelError) -> Bool in
                try checkPeerAlive(allowPeerClosed: allowPeerClosed, forSpace: forSpace)
                if !forSpace {
                    observed = UnsafeMutableRawPointer(word).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .acquiring)
                }
                for _ in 0..<burst {
                    let progressed = try ringCall { () throws(RingViolation) -> Bool in
                        forSpace ? try producer!.consumerProgressed(since: observed) : try consumer!.hasFrame()
                    }
                    if progressed { return true }
                    cplatform_cpu_relax()
                }
                return false
            }
            if ready { return }
            spins &+= UInt64(burst)
            if spins & 0xFF == 0 || spinBudget == 0 {
                let now = cplatform_monotonic_ns()
                if start == 0 { start = now; peerLivenessChangedAt = now }
                let limit = deadline.resolve(now: now)
                if now >= limit { throw .timeout }
                try tendLiveness(now: now)
                if now &- start >= spinBudget {
                    try sleep(on: word, observed: observed, forSpace: forSpace, deadline: limit)
                    continue
                }
            }
        }
    }

    /// A wait's deadline, fixed against the clock only when the wait first
    /// reads the time: a receive whose message arrives within the first
    /// polls reads no clock at all.
    struct WaitDeadline {
        var at: UInt64?
        let after: UInt64

        init(absolute: UInt64) { at = absolute; after = 0 }

        init(timeout: Duration?) {
            if let timeout { at = nil; after = ChannelEndpoint.nanoseconds(timeout) } else { at = .max; after = 0 }
        }

        mutating func resolve(now: UInt64) -> UInt64 {
            if let at { return at }
            let fixed = ChannelEndpoint.saturatingAdd(now, after)
            at = fixed
            return fixed
        }
    }

    /// Polls per visit to the channel view while spinning: long enough that
    /// the VMFUNC pair is a small part of a wait, short enough (about a
    /// microsecond) that the view is held only for the moment of a poll.
    static let pollBurst = 32

    /// While waiting: shows this side is alive (its counter moves at most
    /// once a millisecond) and, when a liveness timeout is set, declares the
    /// peer dead once its counter stood still that long.
    ///
    /// One-way channels: the reader writes no counter, so the writer's view
    /// of the reader's never moves; since a wait for room ends as soon as
    /// the consumer index moves, the timeout then means "the reader consumed
    /// nothing for that long". The reader watches the writer's counter as
    /// usual but moves none of its own.
    func tendLiveness(now: UInt64) throws(ChannelError) {
        let own = control.u64(at: sideOffset(side) + ControlPage.SideField.liveness)
        let peer = control.u64(at: sideOffset(side.peer) + ControlPage.SideField.liveness)
        let writesState = producer != nil
        let seen = try withChannelView { () throws(ChannelError) -> UInt64 in
            if writesState, now &- lastLivenessBump >= 1_000_000 {
                ownLiveness &+= 1
                own.pointee.store(ownLiveness, ordering: .relaxed)
                lastLivenessBump = now
            }
            return peer.pointee.load(ordering: .relaxed)
        }
        if seen != peerLiveness {
            peerLiveness = seen
            peerLivenessChangedAt = now
        } else if let timeout = options.livenessTimeout, now &- peerLivenessChangedAt > Self.nanoseconds(timeout) {
            failure = .peerDied(isOneWay && side == .initiator
                ? "the reader consumed nothing for \(timeout)"
                : "no sign of life from the peer for \(timeout)")
            throw failure!
        }
    }

    func sleep(on word: UnsafeMutablePointer<UInt32>, observed: UInt32, forSpace: Bool,
                       deadline: UInt64) throws(ChannelError) {
        if producer == nil {
            try sleepWithoutAnnouncing(on: word, observed: observed, deadline: deadline)
            return
        }
        let bit: UInt32 = forSpace ? 2 : 1
        let flag = control.u32(at: sideOffset(side) + ControlPage.SideField.waiting)
        try withChannelView { () throws(ChannelError) in
            _ = flag.pointee.bitwiseOr(bit, ordering: .sequentiallyConsistent)
        }
        defer {
            _ = try? withChannelView { () throws(ChannelError) in
                _ = flag.pointee.bitwiseAnd(~bit, ordering: .sequentiallyConsistent)
            }
        }
        // Re-check after announcing (the peer may have published just before
        // it could see the flag), then sleep at most 10 ms at a time so close
        // flags and deadlines are noticed even without a wake-up.
        try sleepUnlessChanged(on: word, observed: observed, deadline: deadline)
    }

    /// The reader of a one-way channel may not set its `waiting` flag, so
    /// it sleeps unannounced: the writer wakes it when it had caught up
    /// (see ``wakePeerIfWaiting(dataWaiting:)``), and otherwise it re-checks
    /// after at most 10 ms like every sleeper.
    func sleepWithoutAnnouncing(on word: UnsafeMutablePointer<UInt32>, observed: UInt32,
                                        deadline: UInt64) throws(ChannelError) {
        // Sequentially consistent, the counterpart of the writer's publish
        // then consumer-index read: either the writer saw this side caught
        // up (and wakes it) or this load sees the new producer index.
        try sleepUnlessChanged(on: word, observed: observed, deadline: deadline)
    }

    /// Reads `word` (sequentially consistent, inside the view) and sleeps on
    /// it for at most 10 ms, or until the deadline, if it still holds `observed`.
    func sleepUnlessChanged(on word: UnsafeMutablePointer<UInt32>, observed: UInt32,
                                    deadline: UInt64) throws(ChannelError) {
        let current = try withChannelView { () throws(ChannelError) -> UInt32 in
            UnsafeMutableRawPointer(word).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .sequentiallyConsistent)
        }
        guard current == observed else { return }
        counters.sleeps &+= 1
        let now = cplatform_monotonic_ns()
        let remaining = deadline > now ? deadline - now : 0
        platform.wait(WakeTarget(word: word, port: port), expected: observed,
                      timeoutNanoseconds: min(remaining, 10_000_000))
    }

    func wakePeerIfWaiting(dataWaiting: Bool) {
        if isOneWay, dataWaiting {
            wakeOneWayReader()
            return
        }
        let waiting = (try? withChannelView { () throws(ChannelError) -> Bool in
            peerIsWaitingInView(dataWaiting: dataWaiting)
        }) ?? false
        if waiting { notifyPeer(dataWaiting: dataWaiting) }
    }

    /// Inside the view, right after publishing: whether the peer announced
    /// it sleeps waiting for data (or for room). The index was published
    /// with a sequentially consistent store, so this load cannot pass it.
    @inline(__always)
    func peerIsWaitingInView(dataWaiting: Bool) -> Bool {
        let bit: UInt32 = dataWaiting ? 1 : 2
        let flag = control.u32(at: sideOffset(side.peer) + ControlPage.SideField.waiting)
        return flag.pointee.load(ordering: .sequentiallyConsistent) & bit != 0
    }

    func notifyPeer(dataWaiting: Bool) {
        counters.wakeupsSent &+= 1
        platform.notify(WakeTarget(word: dataWaiting ? producer!.wakeWord : consumer!.spaceWord, port: port))
    }

    /// The writer of a one-way channel cannot see whether the reader sleeps
    /// (it announces nothing). It may be asleep only if it had consumed
    /// everything published before this frame, so that is when the writer
    /// wakes it. A `.spin` writer never does: it keeps spin mode free of
    /// system calls, and a reader that blocks behind it re-checks every
    /// 10 ms instead.
    func wakeOneWayReader() {
        if case .spin = options.wait { return }
        let caughtUp = (try? withChannelView { () throws(ChannelError) -> Bool in
            producer!.consumerHadCaughtUp()
        }) ?? false
        if caughtUp {
            counters.wakeupsSent &+= 1
            platform.notify(WakeTarget(word: producer!.wakeWord, port: port))
        }
    }

    /// Throws when the host tore the channel down, or (waiting for data) the
    /// peer closed its sending side and nothing is left to receive, or
    /// (waiting for room) the peer stopped reading. A peer that only
    /// half-closed still reads, so a wait for room goes on.
    func checkPeerAlive(allowPeerClosed: Bool, forSpace: Bool = false) throws(ChannelError) {
        let host = control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.closed).pointee.load(ordering: .acquiring)
        if host != 0 {
            let reason = control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.reason).pointee.load(ordering: .acquiring)
            let why = reason == 0 ? "the host revoked the channel" : "the peer's domain died"
            failure = .peerDied(why)
            throw .peerDied(why)
        }
        // The peer's agent process went away but its domain lives, so the
        // host left the channel up. What it published before it went is
        // still in the ring and is delivered first; once the ring is empty
        // (or, waiting for room, at once: nobody will consume) the session
        // is over. A restarted agent opens a new session.
        let exits = control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.processExits(of: side.peer))
            .pointee.load(ordering: .acquiring)
        if exits != peerProcessExits, !peerLineInUse {
            // Not paired yet: the process that went away ran an earlier
            // incarnation (one that closed, so this side reopened, and
            // exited after this side read the count at open). The one
            // this side waits for has yet to open: count from here.
            peerProcessExits = exits
        } else if exits != peerProcessExits {
            var pending = false
            if !forSpace, let consumer {
                pending = try ringCall { () throws(RingViolation) in try consumer.hasFrame() }
            }
            if !pending {
                let why = "the peer's agent process went away (its domain still runs)"
                failure = .peerDied(why)
                throw .peerDied(why)
            }
        }
        try checkIncarnations(forSpace: forSpace)
        // Before pairing, the peer's closed bits may be an earlier
        // incarnation's (a peer that closed and has not opened again).
        guard peerLineInUse else { return }
        // The writer of a one-way channel has nothing to receive, and its
        // reader never writes a closed flag.
        if forSpace {
            let closed = control.u32(at: sideOffset(side.peer) + ControlPage.SideField.closed).pointee.load(ordering: .acquiring)
            if closed & ControlPage.ClosedBits.stoppedReading != 0 { throw .peerClosed }
        } else if !allowPeerClosed, let consumer {
            if peerClosed { throw .peerClosed }
            // The flag is not authenticated; the close frame is. A closing
            // peer publishes the frame before the flag, so a reader that sees
            // the flag also sees the frame, and a flag over an empty ring
            // was written by someone else: it must not end the stream as if
            // everything had been sent (a truncation).
            let closed = control.u32(at: sideOffset(side.peer) + ControlPage.SideField.closed).pointee.load(ordering: .acquiring)
            if closed & ControlPage.ClosedBits.sendingClosed != 0, try !ringCall({ () throws(RingViolation) in try consumer.hasFrame() }) {
                failure = .protocolViolation("the peer's closed flag is set but its close frame never arrived")
                throw failure!
            }
        }
    }

    func sideOffset(_ s: ChannelSide) -> Int {
        s == .initiator ? ControlPage.Offset.initiatorState : ControlPage.Offset.responderState
    }
}
