#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation

/// The grant module's append-only audit log: `audit.log` in the state
/// directory, opened `O_APPEND`, mode 0600, one JSON object per line, each
/// line `fsync`ed before the operation's answer goes out. Nothing in the
/// package rewrites or truncates it; rotating it is the operator's business
/// (move it away: the next operation starts a new file).
final class AuditLog {
    let path: String

    init(path: String) {
        self.path = path
    }

    /// Appends one record as one line and `fsync`s it.
    /// - Throws: ``GrantError/stateDirectory(_:)`` naming the file and the fix.
    func append(_ record: AuditRecord) throws(GrantError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Strings, integers and optionals always encode; JSON escapes any
        // newline inside them, so a record is exactly one line.
        let line = ((try? encoder.encode(record)).map(Array.init) ?? []) + [UInt8(ascii: "\n")]
        let fd = try open()
        defer { _ = close(fd) }
        var offset = 0
        while offset < line.count {
            let n = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw .stateDirectory("cannot append to the audit log \(path): \(StateFiles.errorText(errno)); free space on its file system")
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            throw .stateDirectory("cannot fsync the audit log \(path): \(StateFiles.errorText(errno))")
        }
    }

    /// Opens the log for appending, creating it 0600; refuses a file others
    /// can read or that belongs to another user.
    private func open() throws(GrantError) -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw .stateDirectory("cannot open the audit log \(path): \(StateFiles.errorText(errno)); it must be a regular file this user can write")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            _ = close(fd)
            throw .stateDirectory("cannot stat the audit log \(path): \(StateFiles.errorText(code))")
        }
        guard info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(), info.st_mode & 0o077 == 0 else {
            _ = close(fd)
            throw .stateDirectory("the audit log \(path) must be a regular file of this user closed to others (mode \(String(info.st_mode & 0o7777, radix: 8))); run: chmod 600 \(path)")
        }
        return fd
    }

    /// Every record, oldest first (none when the file does not exist).
    /// - Throws: ``GrantError/stateDirectory(_:)`` naming the line that does not parse.
    func records() throws(GrantError) -> [AuditRecord] {
        guard let bytes = try StateFiles.read(path, limit: 256 << 20) else { return [] }
        let decoder = JSONDecoder()
        var records: [AuditRecord] = []
        for (index, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated()
        where !line.isEmpty {
            do {
                records.append(try decoder.decode(AuditRecord.self, from: Data(line)))
            } catch {
                throw .stateDirectory("\(path):\(index + 1): not an audit record (\(error)); the file was changed by hand")
            }
        }
        return records
    }

    /// `seconds` since the Unix epoch as UTC ISO 8601 (`2026-12-05T12:00:00Z`).
    static func timestamp(_ seconds: UInt64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}
