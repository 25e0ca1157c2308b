import Logging
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// Writes one served channel's statistics snapshot for `guest-agent stats`:
/// every second, at once after a SIGUSR1, and when a session ends.
///
/// It runs on the channel's own thread (the one that uses the channel), so
/// it reads the channel's plain counters without any synchronisation; a
/// `tick` between messages costs a clock read.
final class ChannelStatsReporter {
    private let directory: ChannelStatsDirectory
    private let name: String
    private let domain: String
    private let service: String
    private let log: Logger
    /// The counters of the sessions that ended.
    private var earlier = ChannelStatistics()
    private var sessions = 0
    private var sessionOpenedAt: UInt64 = 0
    private var lastWrite: UInt64 = 0
    private var requestsSeen = AgentSignals.statsRequestCount
    private var failed = false
    private var last: ChannelStatsSnapshot?

    /// How often the snapshot is refreshed.
    static let interval: UInt64 = 1_000_000_000

    init(directory: ChannelStatsDirectory, channel name: String, domain: String, service: String, log: Logger) {
        self.directory = directory
        self.name = name
        self.domain = domain
        self.service = service
        self.log = log
    }

    /// A session opened on `channel`: written at once.
    func opened(_ channel: SecureChannel) {
        sessions += 1
        sessionOpenedAt = UInt64(max(0, time(nil)))
        write(channel, state: "open")
    }

    /// Between two messages: writes when a second has passed or a SIGUSR1 came.
    @inline(__always)
    func tick(_ channel: SecureChannel) {
        let requests = AgentSignals.statsRequestCount
        let now = monotonicNanoseconds()
        guard requests != requestsSeen || now &- lastWrite >= Self.interval else { return }
        requestsSeen = requests
        write(channel, state: "open")
    }

    /// The session on `channel` ended: its counters are kept for the totals.
    /// `state` says what comes next (`reopening`, `stopped`).
    func ended(_ channel: SecureChannel, state: String) {
        write(channel, state: state)
        earlier = Self.sum(earlier, channel.statistics)
        earlier.nanosecondsSinceHandshake = channel.statistics.nanosecondsSinceHandshake
    }

    /// The channel is gone or the agent stops, with no session open: the
    /// last snapshot is written again with `state`.
    func finished(state: String) {
        guard var snapshot = last, snapshot.state != state else { return }
        snapshot.state = state
        snapshot.updatedAt = UInt64(max(0, time(nil)))
        store(snapshot)
    }

    private func write(_ channel: SecureChannel, state: String) {
        lastWrite = monotonicNanoseconds()
        let now = Self.sum(earlier, channel.statistics)
        let d = channel.descriptor
        let snapshot = ChannelStatsSnapshot(
            channel: name, domain: domain, peerDomain: d.peer.rawValue, role: "\(d.side)", state: state,
            service: service, mode: d.mode.description, suite: d.suite.description, generation: d.generation,
            sessions: sessions, sessionOpenedAt: sessionOpenedAt,
            secondsSinceHandshake: Double(channel.statistics.nanosecondsSinceHandshake) / 1e9,
            updatedAt: UInt64(max(0, time(nil))), pid: getpid(),
            messagesSent: now.messagesSent, bytesSent: now.bytesSent, messagesReceived: now.messagesReceived,
            bytesReceived: now.bytesReceived, handshakes: now.handshakes, rekeys: now.rekeys,
            protocolViolations: now.protocolViolations, authenticationFailures: now.authenticationFailures,
            waits: now.waits, sleeps: now.sleeps, wakeupsSent: now.wakeupsSent)
        store(snapshot)
    }

    private func store(_ snapshot: ChannelStatsSnapshot) {
        last = snapshot
        do {
            try directory.write(snapshot)
            failed = false
            log.trace("statistics snapshot written", metadata: ["state": "\(snapshot.state)", "directory": "\(directory.path)"])
        } catch {
            // Said once, not every second; serving goes on.
            if !failed { log.warning("statistics: \(error.description)") }
            failed = true
        }
    }

    static func sum(_ a: ChannelStatistics, _ b: ChannelStatistics) -> ChannelStatistics {
        var s = ChannelStatistics()
        s.messagesSent = a.messagesSent &+ b.messagesSent
        s.bytesSent = a.bytesSent &+ b.bytesSent
        s.messagesReceived = a.messagesReceived &+ b.messagesReceived
        s.bytesReceived = a.bytesReceived &+ b.bytesReceived
        s.handshakes = a.handshakes &+ b.handshakes
        s.rekeys = a.rekeys &+ b.rekeys
        s.protocolViolations = a.protocolViolations &+ b.protocolViolations
        s.authenticationFailures = a.authenticationFailures &+ b.authenticationFailures
        s.waits = a.waits &+ b.waits
        s.sleeps = a.sleeps &+ b.sleeps
        s.wakeupsSent = a.wakeupsSent &+ b.wakeupsSent
        return s
    }
}
