import Logging
import ServiceNotify

/// What `guest-agent run` tells a service manager that started it as a
/// `Type=notify` unit (secure-channel-agent.service), through
/// `ServiceManagerNotifier`; nothing at all without `$NOTIFY_SOCKET`.
///
/// - `READY=1` (with a `STATUS=` line) once the agent has attached, listed
///   the descriptors published for its domain and every channel of that
///   first listing has left its handshake: opened, or failed to open (a
///   peer that never answers holds readiness back for at most
///   `--handshake-timeout`).
/// - `WATCHDOG=1` every half of `$WATCHDOG_USEC` from the serving loop, so
///   a loop that stops turning is noticed.
/// - `STOPPING=1` when a stop signal arrives.
final class ServiceReadiness {
    private let notifier: ServiceManagerNotifier?
    private let log: Logger
    /// The first listing's channels still in their handshake; nil before it.
    private var pending: Set<String>?
    private var told = false
    private var nextWatchdog: UInt64 = 0
    /// Send failures are logged once each, not on every turn.
    private var reportedFailure = false

    /// Reads the environment; a malformed `$NOTIFY_SOCKET` or
    /// `$WATCHDOG_USEC` fails before the agent attaches.
    init(log: Logger) throws(AgentFailure) {
        self.log = log
        do { notifier = try ServiceManagerNotifier.fromEnvironment() } catch {
            throw .failure(error.description)
        }
        if let notifier {
            let watchdog = notifier.watchdogInterval.map { ", watchdog every \($0)" } ?? ""
            log.info("service manager at \(notifier.socketName): READY=1 once the published channels are open\(watchdog)")
        }
    }

    /// The serving loop's pass over a successful listing: `started` are the
    /// channels it began to open. Only the first such pass counts.
    func listed(started: [String]) {
        if pending == nil { pending = Set(started) }
    }

    /// Each turn of the serving loop: READY=1 when due, WATCHDOG=1 when due.
    /// `phase` gives a channel's current phase.
    func turn(now: UInt64, phase: (String) -> ServedPhase?) {
        guard let notifier else { return }
        if !told, let waiting = pending {
            let opening = waiting.filter { phase($0) == .opening }
            pending = opening
            if opening.isEmpty {
                told = true
                let serving = waiting.filter { phase($0) == .serving || phase($0) == .reopening }.count
                send("READY=1", "STATUS=serving \(serving) channel(s)")
                log.info("told the service manager: ready", metadata: ["serving": "\(serving)"])
            }
        }
        if let interval = notifier.watchdogInterval, now >= nextWatchdog {
            send("WATCHDOG=1")
            nextWatchdog = now + Self.nanoseconds(interval)
        }
    }

    /// How long the loop may sleep (microseconds) so the next keep-alive is on time.
    func sleepMicroseconds(upTo bound: UInt32, now: UInt64) -> UInt32 {
        guard notifier?.watchdogInterval != nil else { return bound }
        let untilDue = nextWatchdog > now ? (nextWatchdog - now) / 1000 : 0
        return UInt32(min(UInt64(bound), max(untilDue, 1000)))
    }

    /// A stop signal arrived: the agent is closing its channels.
    func stopping() {
        guard notifier != nil else { return }
        send("STOPPING=1", "STATUS=closing channels")
    }

    private func send(_ lines: String...) {
        guard let notifier else { return }
        do { try notifier.notify(lines) } catch {
            if !reportedFailure { log.error("\(error.description)") }
            reportedFailure = true
        }
    }

    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds)) / 1_000_000_000
    }
}
