import CSecureChannelABI
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// What a sc_channel* stands for: the Swift channel, and sc_fd's notifier
/// once asked for. Used by one thread at a time (the header's rule), so
/// nothing here takes a lock.
///
/// The data path copies between the caller's buffers and the ring through
/// the channel's buffer-pointer calls, which allocate nothing.
final class OpenChannel {
    let channel: SecureChannel
    /// The backend: sc_fd exists only on the simulator (see `descriptor()`).
    let onSimulator: Bool
    private var notifier: ReadinessNotifier?
    /// Whether the peer was asked to wake this side for data (sc_fd armed).
    private var announced = false

    init(channel: SecureChannel, onSimulator: Bool) {
        self.channel = channel
        self.onSimulator = onSimulator
    }

    var maximumMessageBytes: Int { channel.maximumMessageBytes }

    // MARK: Data path

    func send(_ data: UnsafeRawPointer?, length: Int, timeoutMilliseconds: Int32) -> Int32 {
        // size_t arrives as Int: a length past Int.max is negative here.
        guard length >= 0, length <= channel.maximumMessageBytes else {
            return ABIError(SC_ETOOBIG, "sc_send: the message has \(UInt(bitPattern: length)) bytes; at most \(channel.maximumMessageBytes) fit (sc_max_message); split it").report()
        }
        guard data != nil || length == 0 else { return ABIError.invalid("sc_send: data is NULL with length \(length)").report() }
        let message = UnsafeRawBufferPointer(start: length == 0 ? nil : data, count: length)
        do {
            if timeoutMilliseconds == 0 {
                guard try channel.trySend(message) else { return ABIError(SC_ETIMEDOUT, fixed: "sc_send: no room in the ring now (timeout 0)").report() }
            } else {
                try channel.send(message, timeout: Self.duration(timeoutMilliseconds))
            }
            return 0
        } catch {
            return ABIError(error, context: "sc_send on \(channel.name)").report()
        }
    }

    func receive(_ buffer: UnsafeMutableRawPointer?, capacity: Int, timeoutMilliseconds: Int32) -> Int {
        guard buffer != nil || capacity == 0 else { return Int(ABIError.invalid("sc_recv: buffer is NULL with capacity \(capacity)").report()) }
        // A buffer larger than any message is used up to the largest message
        // (a size_t past Int.max arrives negative).
        let usable = capacity < 0 ? channel.maximumMessageBytes : min(capacity, channel.maximumMessageBytes)
        let into = UnsafeMutableRawBufferPointer(start: usable == 0 ? nil : buffer, count: usable)
        if let notifier { settle(notifier) }
        do {
            if timeoutMilliseconds != 0 {
                do {
                    return try channel.receive(into: into, timeout: Self.duration(timeoutMilliseconds))
                } catch .timeout {
                    if let notifier { return try armAfterMiss(notifier, into: into, timedOut: true) }
                    return Int(ABIError(SC_ETIMEDOUT, fixed: Self.timedOut).report())
                }
            }
            if let n = try channel.tryReceive(into: into) { return n }
            if let notifier { return try armAfterMiss(notifier, into: into, timedOut: false) }
            return Int(ABIError(SC_ETIMEDOUT, fixed: Self.wouldBlock).report())
        } catch {
            return Int(ABIError(error, context: "sc_recv on \(channel.name)").report())
        }
    }

    // MARK: sc_fd

    /// The notifier's descriptor, made on first use.
    func descriptor() -> Int32 {
        if let notifier { return notifier.fd }
        guard channel.canReceive else {
            return ABIError.invalid("sc_fd on \(channel.name): this is the writing end of a one-way channel; it never receives, so it has no descriptor to poll").report()
        }
        guard onSimulator else {
            return ABIError.platform("sc_fd on \(channel.name): not available on the Xen backend in this build; wait in sc_recv with a timeout instead").report()
        }
        guard let word = channel.endpoint.dataWaitWord else {
            return ABIError.invalid("sc_fd on \(channel.name): this end reads no ring").report()
        }
        do {
            let made = try ReadinessNotifier(word: word)
            notifier = made
            return made.fd
        } catch {
            return error.report()
        }
    }

    /// Before looking at the ring: the peer need not wake this side while
    /// it is inside a call, and the thread forgets the old arming.
    private func settle(_ notifier: ReadinessNotifier) {
        if announced {
            channel.endpoint.withdrawDataWait()
            announced = false
        }
        notifier.disarm()
    }

    /// "Would block" with sc_fd in use: empty the pipe, announce the wait
    /// and arm the thread, unless a frame came meanwhile (then take it).
    private func armAfterMiss(_ notifier: ReadinessNotifier, into: UnsafeMutableRawBufferPointer,
                              timedOut: Bool) throws(ChannelError) -> Int {
        while true {
            notifier.drain()
            if let observed = try channel.endpoint.announceDataWait() {
                announced = true
                notifier.arm(observed: observed)
                return Int(ABIError(SC_ETIMEDOUT, fixed: timedOut ? Self.timedOut : Self.wouldBlock).report())
            }
            // Only control frames may have come: they are taken here and the
            // ring looked at again.
            if let n = try channel.tryReceive(into: into) { return n }
        }
    }

    // MARK: Closing

    func close() -> Int32 {
        if let notifier {
            if announced { channel.endpoint.withdrawDataWait() }
            notifier.stop()
            self.notifier = nil
        }
        do {
            try channel.close(timeout: .seconds(5))
            return 0
        } catch {
            return ABIError(error, context: "sc_close on \(channel.name) (the channel is closed and freed all the same)").report()
        }
    }

    private static let wouldBlock: StaticString = "sc_recv: no message waiting (timeout 0); poll sc_fd or wait with a timeout"
    private static let timedOut: StaticString = "sc_recv: no message arrived within the timeout"

    static func duration(_ milliseconds: Int32) -> Duration? {
        milliseconds < 0 ? nil : .milliseconds(Int(milliseconds))
    }
}
