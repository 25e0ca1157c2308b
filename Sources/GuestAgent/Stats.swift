import Altp2mSim
import AgentPlatform
import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `guest-agent stats`: what `guest-agent run` serves, channel by channel,
/// from the snapshots it writes (`ChannelStatsReporter`), in the manner of
/// `wg show`. Attaches to nothing.
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the statistics of the channels guest-agent run serves for a domain (as of its last snapshot).",
        discussion: """
            guest-agent run writes a snapshot per channel every second, at once on SIGUSR1, \
            and when a session ends, in STATE/agent-stats-DOMAIN/CHANNEL.json. One block per \
            channel: the peer domain, the state, the session's age, the latest handshake \
            and the counters (summed over the sessions run has opened on the channel). A \
            snapshot whose writer is no longer running is marked so.
            """)

    @Option(help: "The domain whose agent's channels to show (as given to guest-agent run --domain).")
    var domain: String

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("The state directory guest-agent run was given (the same default).", valueName: "path"))
    var stateDir: String?

    @Option(help: "The backend guest-agent run uses: decides the default state directory.")
    var backend: GuestBackend = .sim

    @Option(help: "Show only this channel.")
    var channel: String?

    @Flag(help: "Print {\"ok\":true,\"channels\":[...]} instead.")
    var json = false

    func run() throws {
        let state = backend.isSimulated ? StateDirectory.resolveForTool(explicit: stateDir, tool: "guest-agent").path : stateDir
        let directory = ChannelStatsDirectory(stateDirectory: state, domain: domain)
        var snapshots = try directory.read()
        if let channel { snapshots = snapshots.filter { $0.channel == channel } }
        if let channel, snapshots.isEmpty {
            throw AgentFailure.failure("no statistics for channel \(channel) in \(directory.path); is guest-agent run --domain \(domain) serving it?")
        }
        let now = UInt64(max(0, time(nil)))
        if json {
            print(jsonObject(["ok": .bool(true), "channels": .array(snapshots.map { .object(Self.fields($0)) })]))
            return
        }
        guard !snapshots.isEmpty else {
            print("no channels: guest-agent run --domain \(domain) has written no statistics in \(directory.path)")
            return
        }
        print(snapshots.map { Self.block($0, now: now) }.joined(separator: "\n\n"))
    }

    /// Whether the process that wrote a snapshot still runs.
    static func writerRuns(_ s: ChannelStatsSnapshot) -> Bool { kill(s.pid, 0) == 0 || errno == EPERM }

    static func fields(_ s: ChannelStatsSnapshot) -> [(String, JSONField)] {
        [("channel", .string(s.channel)), ("domain", .string(s.domain)), ("peer_domain", .uint(UInt64(s.peerDomain))),
         ("role", .string(s.role)), ("state", .string(s.state)), ("agent_running", .bool(writerRuns(s))),
         ("service", .string(s.service)), ("mode", .string(s.mode)), ("suite", .string(s.suite)),
         ("generation", .uint(s.generation)), ("sessions", .int(Int64(s.sessions))),
         ("session_opened_at", .uint(s.sessionOpenedAt)), ("seconds_since_handshake", .double(s.secondsSinceHandshake)),
         ("updated_at", .uint(s.updatedAt)), ("pid", .int(Int64(s.pid))),
         ("messages_sent", .uint(s.messagesSent)), ("bytes_sent", .uint(s.bytesSent)),
         ("messages_received", .uint(s.messagesReceived)), ("bytes_received", .uint(s.bytesReceived)),
         ("handshakes", .uint(s.handshakes)), ("rekeys", .uint(s.rekeys)),
         ("protocol_violations", .uint(s.protocolViolations)), ("authentication_failures", .uint(s.authenticationFailures)),
         ("waits", .uint(s.waits)), ("sleeps", .uint(s.sleeps)), ("wakeups_sent", .uint(s.wakeupsSent))]
    }

    /// One channel, `wg show` style.
    static func block(_ s: ChannelStatsSnapshot, now: UInt64) -> String {
        func ago(_ seconds: UInt64) -> String { seconds == 1 ? "1 second ago" : "\(seconds) seconds ago" }
        let age = now > s.updatedAt ? now - s.updatedAt : 0
        let writer = writerRuns(s) ? "" : " (agent pid \(s.pid) not running)"
        let sessionAge = s.updatedAt > s.sessionOpenedAt ? s.updatedAt - s.sessionOpenedAt : 0
        return [
            "channel: \(s.channel)",
            "  peer domain: \(s.peerDomain)",
            "  role: \(s.role), service: \(s.service), \(s.mode) \(s.suite), generation \(s.generation)",
            "  state: \(s.state)\(writer), session \(s.sessions) open for \(sessionAge) s",
            "  latest handshake: \(Int(s.secondsSinceHandshake.rounded())) s before the snapshot",
            "  transfer: \(bytes(s.bytesReceived)) received (\(s.messagesReceived) messages), \(bytes(s.bytesSent)) sent (\(s.messagesSent) messages)",
            "  handshakes: \(s.handshakes), rekeys: \(s.rekeys)",
            "  protocol violations: \(s.protocolViolations), authentication failures: \(s.authenticationFailures)",
            "  waits: \(s.waits), sleeps: \(s.sleeps), wake-ups sent: \(s.wakeupsSent)",
            "  snapshot: \(ago(age)) by pid \(s.pid)",
        ].joined(separator: "\n")
    }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n), unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: "%.2f %@", value, units[unit])
    }
}
