import Foundation
import Synchronization

/// The messages arriving on a ``SecureChannel``, as an `AsyncSequence`:
///
/// ```swift
/// for try await message in channel.messages {
///     try handle(message)
/// }
/// // The loop ends when the peer closes; a failure is thrown as a ChannelError.
/// ```
///
/// Receiving happens on a dedicated OS thread (a Foundation `Thread`) that
/// calls the channel's blocking receive, so the channel's waits (spinning or
/// sleeping like a vCPU) never occupy a thread of Swift concurrency's
/// cooperative pool. The thread starts at the first `next()` and ends with
/// the iteration.
///
/// - **End and errors.** The sequence ends (`next()` returns nil) when the
///   peer closes cleanly and every message it sent has been handed out. Any
///   other failure is thrown as the ``ChannelError`` the channel reported
///   (``ChannelError/peerDied(_:)``, ``ChannelError/authenticationFailed``,
///   ...), after the messages received before it.
/// - **Back-pressure.** At most `bufferLimit` messages wait between the
///   thread and the loop. When the buffer is full the thread stops
///   receiving and waits for the loop, the ring fills, and the peer's sends
///   wait for room: a slow consumer never makes memory grow and nothing is
///   dropped. With `bufferLimit` 0 (``SecureChannel/messages``) the thread
///   receives only while the loop waits in `next()`.
/// - **Cancellation.** Cancelling the task that iterates ends the sequence
///   (`next()` returns nil) within one wait slice of the channel (at once
///   when it spins, at most 10 ms when it sleeps), and only after the thread
///   has let go of the channel. Nothing is lost: a message the thread
///   received but did not hand out stays receivable, in order, through the
///   channel's `receive` methods or a new iteration. The channel stays open
///   and usable; close it as usual.
/// - **Leaving early.** `break` (dropping the iterator) stops the thread the
///   same way; the next call on the channel waits for it to let go (at most
///   one wait slice) and then returns the messages it had received first.
///
/// The channel is not thread-safe. While `next()` is waiting, do not use the
/// channel from elsewhere, and never receive from it other than through the
/// iteration (calls would race with the receiving thread). Between
/// messages, in the loop body, the channel is yours:
///
/// - with `bufferLimit` 0 the thread is idle then, so the body may send on
///   the channel (request/response) at no cost;
/// - with a buffer, the thread may be receiving ahead; any call on the
///   channel first pauses it (waiting up to one wait slice), hands the
///   messages it had buffered to the channel's `receive` methods, and the
///   iteration resumes receiving at its next `next()`.
///
/// Only one iteration runs at a time: starting another one stops the
/// previous one (its buffered messages come first in the new one).
/// Calls on ``SecureChannel/endpoint`` bypass all of this; don't mix them
/// with an iteration.
public struct ChannelMessages: AsyncSequence {
    public typealias Element = [UInt8]
    public typealias Failure = ChannelError

    let channel: SecureChannel
    let bufferLimit: Int

    init(channel: SecureChannel, bufferLimit: Int) {
        precondition(bufferLimit >= 0, "a message buffer limit cannot be negative")
        self.channel = channel
        self.bufferLimit = bufferLimit
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(channel: channel, bufferLimit: bufferLimit)
    }

    /// Iterates the messages; see ``ChannelMessages``.
    public struct Iterator: AsyncIteratorProtocol {
        public typealias Element = [UInt8]
        public typealias Failure = ChannelError

        private let channel: SecureChannel
        private let bufferLimit: Int
        /// Stops the receiving thread when the last copy of the iterator goes
        /// (a `break` out of the loop), so no thread outlives its iteration.
        private var handle: IterationHandle?
        private var done = false

        init(channel: SecureChannel, bufferLimit: Int) {
            self.channel = channel
            self.bufferLimit = bufferLimit
        }

        public mutating func next() async throws(ChannelError) -> [UInt8]? {
            try await next(isolation: nil)
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(ChannelError) -> [UInt8]? {
            if done { return nil }
            // Messages an earlier iteration (or a pause) left behind come first.
            if let message = channel.takeUndelivered() { return message }
            let iteration: MessageIteration
            if let handle {
                iteration = handle.iteration
            } else {
                // Another iteration still holding the channel ends here.
                if let previous = channel.activeIteration {
                    await previous.stopAndWait()
                    channel.detach(previous)
                    if let message = channel.takeUndelivered() { return message }
                }
                iteration = MessageIteration(channel: channel, bufferLimit: bufferLimit)
                channel.activeIteration = iteration
                handle = IterationHandle(iteration)
            }
            if Task.isCancelled {
                await iteration.stopAndWait()
                return finish(iteration, nil)
            }
            let outcome = await withTaskCancellationHandler {
                await iteration.nextMessage()
            } onCancel: {
                iteration.requestStop()
            }
            switch outcome {
            case let .message(message):
                return message
            case .stopped:
                // A stop can be seen before the thread has let go of the
                // channel (cancelled before this call); wait for it, so the
                // caller may use the channel as soon as this returns.
                await iteration.stopAndWait()
                return finish(iteration, nil)
            case .closed:
                return finish(iteration, nil)
            case let .failed(error):
                _ = finish(iteration, nil)
                throw error
            }
        }

        /// Ends this iterator: whatever the thread had buffered goes back to
        /// the channel (receivable in order), and the channel forgets the
        /// iteration.
        private mutating func finish(_ iteration: MessageIteration, _ value: [UInt8]?) -> [UInt8]? {
            done = true
            channel.detach(iteration)
            handle = nil
            return value
        }
    }
}

/// Owned by an iterator; its release stops the receiving thread.
final class IterationHandle {
    let iteration: MessageIteration

    init(_ iteration: MessageIteration) {
        self.iteration = iteration
    }

    deinit {
        iteration.requestStop()
    }
}

/// What `next()` gets from the receiving thread.
enum IterationOutcome: Sendable {
    case message([UInt8])
    /// The iteration was stopped (cancelled, dropped, or superseded).
    case stopped
    /// The peer closed cleanly and everything was handed out.
    case closed
    case failed(ChannelError)
}

/// The state shared by an iterator and its receiving thread.
///
/// Every field is guarded by `state`'s mutex; the thread touches the channel
/// only while `worker` is `.receiving`, and the consumer side (the iterator
/// and the channel's own methods) touches it only while it is not, which is
/// what makes handing the channel back and forth safe. The hand-over points
/// are the mutex's lock and unlock.
final class MessageIteration: @unchecked Sendable {
    // @unchecked: mutable state lives in the Mutex; `endpoint` is used by the
    // receiving thread only while it holds the channel (worker == .receiving)
    // and otherwise only by the consumer side, never by both at once.

    enum Worker: Equatable {
        /// No thread yet (started by the first `nextMessage`).
        case notStarted
        /// Inside the channel's receive.
        case receiving
        /// Waiting for demand or room, or paused: not touching the channel.
        case idle
        /// The thread is gone.
        case exited
    }

    enum End {
        case closed
        case failed(ChannelError)
    }

    struct State {
        var worker: Worker = .notStarted
        /// The worker sleeps on `wake`; whoever changes what it waits for signals.
        var workerSleeping = false
        /// Received and not yet handed out, oldest first; at most `bufferLimit`
        /// unless a message arrived for a `next()` that was cancelled meanwhile.
        var buffer: [[UInt8]] = []
        /// A `next()` waiting for a message.
        var waiter: CheckedContinuation<IterationOutcome, Never>?
        /// Set by the channel's own methods: leave the channel and stay idle
        /// until the next `next()`.
        var paused = false
        var stopRequested = false
        var end: End?
        /// Called once the worker is out of the channel (not `.receiving`).
        var leaveWaiters: [@Sendable () -> Void] = []
    }

    let state = Mutex<State>(State())
    private let wake = DispatchSemaphore(value: 0)
    let bufferLimit: Int
    /// Weak: the channel holds its iteration; the thread, once started,
    /// holds the channel (and so its mapped window) until it exits.
    private weak var channel: SecureChannel?
    /// Used by the thread (while it holds the channel) and for its interrupt flag.
    private let endpoint: ChannelEndpoint

    init(channel: SecureChannel, bufferLimit: Int) {
        self.bufferLimit = bufferLimit
        self.channel = channel
        self.endpoint = channel.endpoint
    }

    // MARK: Consumer side

    /// The next message, the end, or `.stopped`. Starts the thread if needed
    /// and resumes it if it was paused or idle.
    func nextMessage() async -> IterationOutcome {
        await withCheckedContinuation { (continuation: CheckedContinuation<IterationOutcome, Never>) in
            var start = false
            var signal = false
            let immediate: IterationOutcome? = state.withLock { s in
                if !s.buffer.isEmpty {
                    let message = s.buffer.removeFirst()
                    // Room again: a thread waiting for it may continue.
                    if s.workerSleeping, !s.paused { s.workerSleeping = false; signal = true }
                    return .message(message)
                }
                if let end = s.end {
                    switch end {
                    case .closed: return .closed
                    case let .failed(error): return .failed(error)
                    }
                }
                if s.stopRequested { return .stopped }
                s.waiter = continuation
                s.paused = false
                if s.worker == .notStarted {
                    s.worker = .idle
                    start = true
                } else if s.workerSleeping {
                    s.workerSleeping = false
                    signal = true
                }
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
            if signal { wake.signal() }
            if start { startThread() }
        }
    }

    /// Asks the thread to stop (cancellation, a dropped iterator). Does not
    /// wait; the thread lets go of the channel within one wait slice.
    func requestStop() {
        let signal = state.withLock { s -> Bool in
            s.stopRequested = true
            if s.worker == .receiving { endpoint.receiveInterrupt.store(true, ordering: .releasing) }
            if s.workerSleeping { s.workerSleeping = false; return true }
            return false
        }
        if signal { wake.signal() }
    }

    /// Stops the thread and waits (without blocking a thread) until it no
    /// longer touches the channel.
    func stopAndWait() async {
        requestStop()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let out = state.withLock { s -> Bool in
                if s.worker != .receiving { return true }
                s.leaveWaiters.append { continuation.resume() }
                return false
            }
            if out { continuation.resume() }
        }
    }

    /// For the channel's own methods (synchronous): makes the thread leave the
    /// channel, waiting for it if it is inside (at most one wait slice), and
    /// takes back what it had buffered. Returns the buffered messages and
    /// whether the iteration is over (ended or stopped).
    func pauseAndTakeBuffer() -> (messages: [[UInt8]], over: Bool) {
        let left = DispatchSemaphore(value: 0)
        let mustWait = state.withLock { s -> Bool in
            s.paused = true
            guard s.worker == .receiving else { return false }
            endpoint.receiveInterrupt.store(true, ordering: .releasing)
            s.leaveWaiters.append { left.signal() }
            return true
        }
        if mustWait { left.wait() }
        return state.withLock { s in
            let messages = s.buffer
            s.buffer.removeAll()
            return (messages, s.stopRequested || s.end != nil)
        }
    }

    // MARK: Receiving thread

    private func startThread() {
        // The caller (an iterator) holds the channel, so it is there.
        let box = ChannelBox(channel!)
        let thread = Thread { [self] in
            withExtendedLifetime(box) { run() }
        }
        thread.name = "SecureChannel.messages"
        thread.stackSize = 1 << 20
        thread.start()
    }

    private enum Step {
        case receive
        case sleep
        case exit
    }

    private func run() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(endpoint.maximumMessageBytes, 1), alignment: 16)
        defer {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            buffer.deallocate()
        }
        while true {
            var wakeUps: [@Sendable () -> Void] = []
            let step = state.withLock { s -> Step in
                let step: Step
                if s.stopRequested {
                    step = .exit
                    s.worker = .exited
                    if let waiter = s.waiter {
                        s.waiter = nil
                        waiter.resume(returning: .stopped)
                    }
                } else if !s.paused, s.waiter != nil || s.buffer.count < bufferLimit {
                    step = .receive
                    s.worker = .receiving
                    // Cleared under the lock: whoever sets it does so under
                    // the lock too, and only while the worker is receiving.
                    endpoint.receiveInterrupt.store(false, ordering: .relaxed)
                } else {
                    step = .sleep
                    s.worker = .idle
                    s.workerSleeping = true
                }
                if s.worker != .receiving {
                    wakeUps = s.leaveWaiters
                    s.leaveWaiters.removeAll()
                }
                return step
            }
            for wakeUp in wakeUps { wakeUp() }
            switch step {
            case .exit:
                return
            case .sleep:
                wake.wait()
                continue
            case .receive:
                break
            }
            let outcome: IterationOutcome?
            do {
                if let n = try endpoint.receiveInterruptibly(into: buffer) {
                    outcome = .message(Array(UnsafeRawBufferPointer(rebasing: buffer[0..<n])))
                } else {
                    outcome = nil   // interrupted: the next round decides
                }
            } catch .peerClosed {
                outcome = .closed
            } catch {
                outcome = .failed(error)
            }
            guard let outcome else { continue }
            let ended = state.withLock { s -> Bool in
                switch outcome {
                case let .message(message):
                    // Oldest first: a waiter gets the head of the buffer.
                    s.buffer.append(message)
                    if let waiter = s.waiter {
                        s.waiter = nil
                        waiter.resume(returning: .message(s.buffer.removeFirst()))
                    }
                    return false
                case .closed, .failed:
                    s.end = outcome.end
                    if s.buffer.isEmpty, let waiter = s.waiter {
                        s.waiter = nil
                        waiter.resume(returning: outcome)
                    }
                    s.worker = .exited
                    let wakeUps = s.leaveWaiters
                    s.leaveWaiters.removeAll()
                    for wakeUp in wakeUps { wakeUp() }
                    return true
                case .stopped:
                    return false
                }
            }
            if ended { return }
        }
    }
}

private extension IterationOutcome {
    var end: MessageIteration.End? {
        switch self {
        case .closed: return .closed
        case let .failed(error): return .failed(error)
        case .message, .stopped: return nil
        }
    }
}

/// Hands the channel to the receiving thread. @unchecked: see
/// ``MessageIteration``; the thread uses the channel only while it holds it.
final class ChannelBox: @unchecked Sendable {
    let channel: SecureChannel
    init(_ channel: SecureChannel) { self.channel = channel }
}
