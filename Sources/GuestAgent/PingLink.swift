import Altp2m
import Logging
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// The channel `ping` times round trips over: one round trip at a time,
/// and with `--reconnect` the channel opened again (the descriptor as
/// published now) when the peer restarts, closes, or the descriptors are
/// re-issued, the round trip in flight repeated.
final class PingLink {
    private(set) var channel: SecureChannel
    private(set) var reconnects = 0
    /// Timed round trips done, for the messages.
    var completed = 0
    private let name: String
    private let agent: AgentOptions
    private let platform: GuestPlatform
    private let wait: WaitStrategy
    private let reconnect: Double
    private let count: Int
    private let limit: Duration
    private let log: Logger
    private let message: UnsafeMutableRawBufferPointer
    private let reply: UnsafeMutableRawBufferPointer

    init(_ channel: SecureChannel, name: String, agent: AgentOptions, platform: GuestPlatform, wait: WaitStrategy,
         reconnect: Double, timeout: Double, size: Int, count: Int, log: Logger) {
        self.channel = channel
        self.name = name
        self.agent = agent
        self.platform = platform
        self.wait = wait
        self.reconnect = reconnect
        self.count = count
        self.limit = .seconds(timeout)
        self.log = log
        message = .allocate(byteCount: size, alignment: 16)
        reply = .allocate(byteCount: channel.maximumMessageBytes, alignment: 16)
        for i in 0..<size { message[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
    }

    deinit {
        message.deallocate()
        reply.deallocate()
    }

    /// Whether the last reply holds the message byte for byte.
    var echoed: Bool { memcmp(message.baseAddress!, reply.baseAddress!, message.count) == 0 }

    /// One round trip, in nanoseconds.
    func roundTrip() throws(AgentFailure) -> UInt64 {
        while true {
            let error: ChannelError
            switch try attempt() {
            case .success(let rtt): return rtt
            case .failure(let failure): error = failure
            }
            if reconnect > 0, Self.peerMayReturn(error) {
                log.notice("\(name): \(error); opening the channel again (waiting up to \(reconnect) s)")
                try? channel.close(timeout: .milliseconds(200))
                channel = try openChannel(name, options: agent, platform: platform, wait: wait, timeout: reconnect)
                reconnects += 1
                continue
            }
            if error == .peerClosed {
                // A polite close (the peer agent stopped or its service
                // ended), not a crash: say so in words, with how far it got.
                throw .failure("peerClosed: the peer closed channel \(name) after \(completed) of \(count) round trips (its agent stopped or stopped serving the channel); the run is incomplete")
            }
            throw .failure("round trip on \(name) failed: \(error)\(error == .timeout ? "; is guest-agent run serving the peer domain?" : "")")
        }
    }

    private func attempt() throws(AgentFailure) -> Result<UInt64, ChannelError> {
        let start = monotonicNanoseconds()
        do {
            try channel.send(UnsafeRawBufferPointer(message), timeout: limit)
            let n = try channel.receive(into: reply, timeout: limit)
            let end = monotonicNanoseconds()
            guard n == message.count else {
                throw AgentFailure.failure("the echo on \(name) returned \(n) bytes for \(message.count); is the peer running guest-agent run?")
            }
            return .success(end - start)
        } catch let failure as AgentFailure {
            throw failure
        } catch let error as ChannelError {
            return .failure(error)
        } catch {
            throw .failure("round trip on \(name) failed: \(error)")
        }
    }

    /// The errors after which the peer may open the channel again by itself.
    static func peerMayReturn(_ error: ChannelError) -> Bool {
        switch error {
        case .peerClosed, .peerDied, .peerRestarted, .descriptorsReissued: return true
        default: return false
        }
    }
}
