import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The log handler of `chanctl`, `guest-agent` and the simulator daemon:
/// one line per event on standard error, written with a single `write(2)`
/// so lines from several threads never interleave.
///
/// On a terminal or in a file: `TIME LEVEL LABEL: KEY=VALUE ... MESSAGE`,
/// the time in UTC with milliseconds. Under journald (standard error is the
/// stream `$JOURNAL_STREAM` names, as systemd sets it for a unit's output)
/// the line is `<PRIORITY>LABEL: KEY=VALUE ... MESSAGE` instead: journald
/// reads the `sd-daemon(3)` priority prefix (so `journalctl -p warning`
/// works) and stamps the time itself.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let journal: Bool

    /// A handler for `label` that detects journald once, now.
    public init(label: String) {
        self.label = label
        self.journal = LineLogHandler.standardErrorIsJournal()
    }

    /// Makes every `Logger` of the process use this handler.
    public static func bootstrap() {
        LoggingSystem.bootstrap { LineLogHandler(label: $0) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { _, new in new } }
        if let extra = event.metadata { fields.merge(extra) { _, new in new } }
        var line = journal ? "<\(Self.priority(event.level))>" : "\(Self.timestamp()) \(event.level) "
        line += label + ":"
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
        line += " \(event.message)\n"
        var bytes = Array(line.utf8)
        // One event is one line: a message with newlines in it (a peer's
        // text, an error from a library) must not forge further lines.
        for i in bytes.indices.dropLast() where bytes[i] == 0x0A { bytes[i] = 0x20 }
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(2, raw.baseAddress! + offset, raw.count - offset)
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
    }

    /// `sd-daemon(3)`'s levels: `SD_DEBUG` 7 ... `SD_CRIT` 2.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// `2026-12-05T15:21:12.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let millis = now.tv_nsec / 1_000_000
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }

    /// Whether standard error is the journal stream systemd connected:
    /// `$JOURNAL_STREAM` is `DEVICE:INODE` of that stream (systemd.exec(5)),
    /// and a process whose standard error was redirected elsewhere since
    /// must keep the plain format.
    static func standardErrorIsJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}
