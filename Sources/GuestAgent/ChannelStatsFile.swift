import Foundation
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// One channel's statistics as `guest-agent run` last wrote them: the
/// file `STATE/agent-stats-DOMAIN/CHANNEL.json` (0600, in a 0700 directory,
/// replaced atomically), read by `guest-agent stats`.
struct ChannelStatsSnapshot: Codable, Equatable {
    var channel: String
    /// This agent's domain, as `--domain` named it.
    var domain: String
    /// The peer's domain id.
    var peerDomain: UInt16
    /// `initiator` or `responder`.
    var role: String
    /// `open`, `reopening` (the session ended; waiting for the peer to
    /// open the channel again), `stopped` (the agent stopped) or `closed`
    /// (the channel is gone).
    var state: String
    var service: String
    var mode: String
    var suite: String
    /// The descriptor generation of the current session.
    var generation: UInt64
    /// Sessions opened on this channel since the agent started serving it.
    var sessions: Int
    /// When the current session opened (Unix seconds).
    var sessionOpenedAt: UInt64
    /// Seconds since the last completed handshake (the session keys' age).
    var secondsSinceHandshake: Double
    /// When this snapshot was written (Unix seconds), and by which process.
    var updatedAt: UInt64
    var pid: Int32
    /// The counters, summed over every session of this agent on the channel.
    var messagesSent: UInt64
    var bytesSent: UInt64
    var messagesReceived: UInt64
    var bytesReceived: UInt64
    var handshakes: UInt64
    var rekeys: UInt64
    var protocolViolations: UInt64
    var authenticationFailures: UInt64
    var waits: UInt64
    var sleeps: UInt64
    var wakeupsSent: UInt64
}

/// Where the snapshots of one domain's channels live, and how they are
/// written and read.
struct ChannelStatsDirectory {
    let path: String

    /// `STATE/agent-stats-DOMAIN`: `stateDirectory` as `run` resolves it
    /// (the simulator's state directory, or on Xen `--state-dir`, by
    /// default /var/lib/guest-agent).
    init(stateDirectory: String?, domain: String) {
        path = (stateDirectory ?? "/var/lib/guest-agent") + "/agent-stats-" + Self.fileSafe(domain)
    }

    /// A name as a single path component (channel names already are; a
    /// domain given as anything else is made one).
    static func fileSafe(_ name: String) -> String {
        String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    /// Replaces the channel's snapshot (temporary file, rename): a reader
    /// sees the old one or the new one, never half of one.
    func write(_ snapshot: ChannelStatsSnapshot) throws(AgentFailure) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw .failure("cannot create the statistics directory \(path): \(String(cString: strerror(errno))); check --state-dir")
        }
        let target = path + "/" + Self.fileSafe(snapshot.channel) + ".json"
        let temporary = target + ".tmp-\(getpid())"
        guard var bytes = try? Array(Self.encoder.encode(snapshot)) else {
            throw .failure("cannot encode the statistics of \(snapshot.channel)")
        }
        bytes.append(UInt8(ascii: "\n"))
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw .failure("cannot write \(temporary): \(String(cString: strerror(errno))); check --state-dir")
        }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
        close(fd)
        guard written == bytes.count, rename(temporary, target) == 0 else {
            unlink(temporary)
            throw .failure("cannot write \(target): \(String(cString: strerror(errno))); check --state-dir and free space")
        }
    }

    /// Every channel's snapshot, by channel name; none when `run` never wrote any.
    func read() throws(AgentFailure) -> [ChannelStatsSnapshot] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return [] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var snapshots: [ChannelStatsSnapshot] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            let file = path + "/" + name
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            do {
                snapshots.append(try decoder.decode(ChannelStatsSnapshot.self, from: data))
            } catch {
                throw .failure("\(file) is not a statistics snapshot (\(error)); remove it, guest-agent run writes it again")
            }
        }
        return snapshots
    }
}
