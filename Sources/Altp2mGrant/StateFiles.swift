#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// File-system primitives for the grant module's state directory: a private
/// directory, whole-file reads, crash-safe replacement of a file, and the
/// lock that keeps two grant modules from working on one directory.
enum StateFiles {
    /// Creates `path` (and missing parents) with mode 0700, or checks that
    /// the existing directory is owned by this user and closed to others.
    static func preparePrivateDirectory(_ path: String) throws(GrantError) {
        var components: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            components.append(part)
            let prefix = (path.hasPrefix("/") ? "/" : "") + components.joined(separator: "/")
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw .stateDirectory("cannot create \(prefix): \(errorText(errno))")
            }
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw .stateDirectory("cannot stat \(path): \(errorText(errno))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw .stateDirectory("\(path) is not a directory; remove it or choose another state directory")
        }
        guard info.st_uid == geteuid() else {
            throw .stateDirectory("\(path) belongs to uid \(info.st_uid), not to this user (uid \(geteuid())); use a state directory of your own")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw .stateDirectory("\(path) is accessible to other users (mode \(String(info.st_mode & 0o7777, radix: 8))); it holds the host signing key; run: chmod 700 \(path)")
        }
    }

    /// The contents of `path`, or `nil` if it does not exist.
    static func read(_ path: String, limit: Int = 16 << 20) throws(GrantError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw .stateDirectory("cannot open \(path): \(errorText(errno))")
        }
        defer { _ = close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .stateDirectory("cannot read \(path): \(errorText(errno))")
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[0..<n])
            guard data.count <= limit else { throw .stateDirectory("\(path) is larger than \(limit) bytes") }
        }
        return data
    }

    /// Replaces `path` with `bytes` so that a crash leaves either the old or
    /// the new contents: a temporary file in the same directory, written,
    /// `fsync`ed, renamed over the target, then the directory `fsync`ed.
    static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws(GrantError) {
        let temporary = "\(path).tmp-\(getpid())"
        _ = unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw .stateDirectory("cannot create \(temporary): \(errorText(errno))") }
        var committed = false
        defer { if !committed { _ = unlink(temporary) } }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let code = errno
                _ = close(fd)
                throw .stateDirectory("cannot write \(temporary): \(errorText(code))")
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            let code = errno
            _ = close(fd)
            throw .stateDirectory("cannot fsync \(temporary): \(errorText(code))")
        }
        guard close(fd) == 0 else { throw .stateDirectory("cannot close \(temporary): \(errorText(errno))") }
        guard rename(temporary, path) == 0 else {
            throw .stateDirectory("cannot rename \(temporary) to \(path): \(errorText(errno))")
        }
        committed = true
        syncDirectory(containing: path)
    }

    /// Makes a rename durable; best effort (some file systems refuse).
    private static func syncDirectory(containing path: String) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_CLOEXEC | O_DIRECTORY)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        _ = close(fd)
    }

    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }
}

/// An exclusive `flock` on a file in the state directory, held for the
/// owner's lifetime: one grant module per state directory at a time.
final class StateLock {
    private let fd: Int32

    /// Takes the lock, waiting up to `waitMilliseconds` for its holder to
    /// let go (0: fail at once). The wait polls a non-blocking `flock`
    /// every 20 ms rather than blocking in `LOCK_EX`: a blocked `flock` has
    /// no timeout, and a signal would be needed to end it.
    init(path: String, waitMilliseconds: Int = 0) throws(GrantError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .stateDirectory("cannot open \(path): \(StateFiles.errorText(errno))") }
        var waited = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            if code == EWOULDBLOCK && waited < waitMilliseconds {
                let step = min(20, waitMilliseconds - waited)
                usleep(useconds_t(step * 1000))
                waited += step
                continue
            }
            _ = close(fd)
            if code == EWOULDBLOCK {
                let how = waitMilliseconds > 0 ? " (waited \(Self.seconds(waitMilliseconds)))" : ""
                throw .stateDirectory("another process is using the grant state in \(path)\(how); wait for it to finish and try again, or see which process holds it: fuser \(path)")
            }
            throw .stateDirectory("cannot lock \(path): \(StateFiles.errorText(code))")
        }
        self.fd = fd
    }

    private static func seconds(_ milliseconds: Int) -> String {
        milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(Double(milliseconds) / 1000) s"
    }

    deinit { _ = close(fd) }
}
