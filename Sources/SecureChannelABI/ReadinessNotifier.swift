import CPlatform
import SecureChannel
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// sc_fd on the simulator: a pipe made readable when the peer may have
/// sent something, for callers that wait in poll(2) instead of sc_recv.
///
/// The simulator's wake-up is a futex wake on a word of the window, which no
/// file descriptor can wait for. So a thread stands for the event-channel
/// driver a Xen guest's kernel has: while armed with the word's value at
/// the moment sc_recv found the ring empty, it sleeps in a futex wait on the
/// word (as the channel's own sleeps do: the futex call stands for the event
/// channel; nothing is read from the window), and when woken, or when the
/// word already moved, it disarms and writes a byte into the pipe.
///
/// The owner (the one thread using the channel) arms it in sc_recv after an
/// announced "would block" and drains the pipe just before arming, so a
/// wake-up after the drain is never lost; a wake-up from an earlier arming
/// may make the descriptor readable spuriously, which the contract allows.
final class ReadinessNotifier {
    /// The descriptor sc_fd hands out: the pipe's reading end.
    let fd: Int32
    /// The pipe's writing end (a pipe rather than an eventfd: Swift's Glibc
    /// module has no eventfd, and both poll the same).
    private let signalFD: Int32
    /// The word the peer's publishes change (fixed for the channel).
    private let word: UnsafeMutablePointer<UInt32>
    /// 0 when idle; else `armedBit | observed value`.
    private let armed = Atomic<UInt64>(0)
    private static let armedBit: UInt64 = 1 << 32
    /// Bumped (and futex-woken) on every arming and at stop, so an idle
    /// thread sleeps on it without a timeout.
    private let doorbell: UnsafeMutablePointer<UInt32>
    private let stopping = Atomic<Bool>(false)
    private var thread: pthread_t?
    /// The longest a futex wait on the channel word lasts: only a bound,
    /// since every event that matters (publish, close, teardown) wakes it.
    private static let waitBoundNanoseconds: Int64 = 100_000_000

    /// Makes the pipe (readable at first, so the caller looks once) and
    /// starts the thread.
    /// - Throws: SC_EPLATFORM when either cannot be made.
    init(word: UnsafeMutablePointer<UInt32>) throws(ABIError) {
        self.word = word
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw .platform("sc_fd: cannot make a pipe: \(String(cString: strerror(errno)))") }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        fd = ends[0]
        signalFD = ends[1]
        doorbell = .allocate(capacity: 1)
        doorbell.initialize(to: 0)
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { context in
            Unmanaged<ReadinessNotifier>.fromOpaque(context!).takeUnretainedValue().watch()
            return nil
        }, Unmanaged.passUnretained(self).toOpaque())
        guard started == 0 else {
            close(fd)
            close(signalFD)
            doorbell.deallocate()
            throw .platform("sc_fd: cannot start the notification thread: \(String(cString: strerror(started)))")
        }
        self.thread = thread
        signal()
    }

    /// Stops and joins the thread and closes the descriptor.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        ring()
        // A thread in the futex wait on the channel word sees `stopping`
        // within the wait's bound; waking the word ends it now (only this
        // side sleeps on that word).
        _ = cplatform_futex_wake(word, Int32.max)
        if let thread { pthread_join(thread, nil) }
        thread = nil
        close(fd)
        close(signalFD)
        doorbell.deallocate()
    }

    /// Owner: forget any arming (the caller is about to look at the ring).
    func disarm() {
        armed.store(0, ordering: .releasing)
    }

    /// Owner: empty the pipe (it stays not readable until the next signal).
    func drain() {
        var bytes: (UInt64, UInt64) = (0, 0)
        while read(fd, &bytes, 16) > 0 {}
    }

    /// Makes the descriptor readable (a full pipe already is).
    private func signal() {
        var byte: UInt8 = 1
        _ = write(signalFD, &byte, 1)
    }

    /// Owner: wait for the word to leave `observed`, then signal.
    func arm(observed: UInt32) {
        armed.store(Self.armedBit | UInt64(observed), ordering: .releasing)
        ring()
    }

    private func ring() {
        let bell = UnsafeMutableRawPointer(doorbell).assumingMemoryBound(to: Atomic<UInt32>.self)
        _ = bell.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        _ = cplatform_futex_wake(doorbell, Int32.max)
    }

    private func watch() {
        let bell = UnsafeMutableRawPointer(doorbell).assumingMemoryBound(to: Atomic<UInt32>.self)
        while true {
            let rung = bell.pointee.load(ordering: .sequentiallyConsistent)
            if stopping.load(ordering: .sequentiallyConsistent) { return }
            let state = armed.load(ordering: .acquiring)
            guard state & Self.armedBit != 0 else {
                _ = cplatform_futex_wait(doorbell, rung, -1)
                continue
            }
            let rc = cplatform_futex_wait(word, UInt32(truncatingIfNeeded: state), Self.waitBoundNanoseconds)
            let moved = rc == 0 || errno == EAGAIN
            if moved, armed.compareExchange(expected: state, desired: 0, ordering: .acquiringAndReleasing).exchanged {
                signal()
            }
        }
    }
}
