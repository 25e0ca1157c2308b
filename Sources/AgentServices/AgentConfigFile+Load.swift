#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension AgentConfigFile {
    /// Why a configuration file could not be used.
    package enum LoadError: Error, CustomStringConvertible, Equatable {
        /// No file at the path.
        case missing(path: String)
        /// It exists but cannot be read (permissions, a directory, too large).
        case unreadable(path: String, reason: String)
        /// Others than its owner could change it while the agent runs as root.
        case unsafe(path: String, problem: String)
        /// It was read; a line is wrong.
        case content(ContentError)

        package var description: String {
            switch self {
            case .missing(let path):
                "no configuration file at \(path); check the path given to --config (or --no-config to use none)"
            case .unreadable(let path, let reason):
                "cannot read the configuration file \(path): \(reason); check the path and its permissions"
            case .unsafe(_, let problem):
                problem
            case .content(let error):
                "bad configuration file \(error.description)"
            }
        }
    }

    /// A file larger than this is not a configuration file.
    package static let maximumFileBytes = 64 * 1024

    /// Reads, checks and parses the file at `path`. The permission check and
    /// the read use one descriptor, so the file checked is the file read.
    /// - Parameter runningAsRoot: whether to insist that only root can change the file.
    package static func load(_ path: String, runningAsRoot: Bool) throws(LoadError) -> AgentConfigFile {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw .missing(path: path) }
            throw .unreadable(path: path, reason: String(cString: strerror(code)))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .unreadable(path: path, reason: "it is not a regular file") }
        if let problem = permissionProblem(path: path, mode: UInt32(info.st_mode), owner: UInt32(info.st_uid),
                                           runningAsRoot: runningAsRoot) {
            throw .unsafe(path: path, problem: problem)
        }
        let bytes: [UInt8]
        do {
            bytes = try SmallFile.readToEnd(fd, limit: maximumFileBytes)
        } catch {
            throw .unreadable(path: path, reason: error.reason(limit: maximumFileBytes, expected: "the agent's configuration file"))
        }
        do {
            return try parse(String(decoding: bytes, as: UTF8.self), file: path, directory: directory(of: path))
        } catch {
            throw .content(error)
        }
    }

    /// Why the agent, running as root, must not trust the file: it names key
    /// files and the state directory, so whoever can change it chooses the
    /// agent's identity. Nil when it is safe (or the agent is not root).
    package static func permissionProblem(path: String, mode: UInt32, owner: UInt32, runningAsRoot: Bool) -> String? {
        guard runningAsRoot else { return nil }
        let octal = "0" + String(mode & 0o7777, radix: 8)
        if owner != 0 {
            return "the configuration file \(path) belongs to uid \(owner), not root, and the agent runs as root: its owner could choose the agent's keys; chown root:root \(path) && chmod 600 \(path) (or 644)"
        }
        if mode & 0o022 != 0 {
            return "the configuration file \(path) is writable by others than its owner (mode \(octal)) and the agent runs as root: they could choose the agent's keys; chmod 600 \(path) (or 644)"
        }
        return nil
    }
}
