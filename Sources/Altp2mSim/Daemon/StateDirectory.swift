#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The simulator's state directory: the daemon's socket, machine memory,
/// journal, per-domain token and control files.
///
/// Whoever can open this directory can talk to the daemon as the control
/// domain, so it must be private: mode 0700 (nothing for group or other) and
/// owned by the current user. ``prepare()`` creates it that way and refuses an
/// existing directory that is not.
///
/// Layout (see docs/SIMULATOR-DAEMON.md):
///
///     sim.sock              the daemon's Unix socket (0600)
///     daemon.pid            the running daemon's process id
///     daemon.log            the background daemon's standard error
///     memory                machine memory, mmap'ed MAP_SHARED
///     events                event-channel futex words, one block per domain
///     journal               the state-changing requests, replayed on start
///     domains/NAME.token    a domain's attach token (0600)
///     domains/dN.control    domain N's control region (read-only for guests)
///     domains/dN.vcpu       domain N's per-vCPU pages (guest-writable)
public struct StateDirectory: Sendable, Hashable, CustomStringConvertible {
    /// The directory's absolute or relative path, without a trailing slash.
    public let path: String

    /// Names a state directory; nothing is checked or created.
    public init(path: String) {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.path = trimmed
    }

    /// The state directory to use: `explicit` (`--state-dir`) if given, else
    /// `$CHANCTL_STATE_DIR`, else for root ``systemPath``, else (another
    /// user, trying things out) `$XDG_RUNTIME_DIR/secure-channel`, else
    /// `/tmp/secure-channel-$UID`.
    public static func resolve(explicit: String? = nil) -> StateDirectory {
        choose(explicit: explicit).directory
    }

    /// Where the system's simulator keeps its state: root's default, and the
    /// state directory of secure-channel-sim.service.
    public static let systemPath = "/var/lib/secure-channel"

    /// What picked a state directory.
    package enum Origin: Sendable, Equatable {
        /// `--state-dir`.
        case option
        /// `$CHANCTL_STATE_DIR`.
        case environment
        /// Root's default, ``systemPath``.
        case system
        /// An unprivileged user's default, in a per-user temporary directory.
        case userTemporary
    }

    /// ``resolve(explicit:)`` and the rule that chose it.
    package static func choose(explicit: String? = nil) -> (directory: StateDirectory, origin: Origin) {
        if let explicit, !explicit.isEmpty { return (StateDirectory(path: explicit), .option) }
        if let env = environment("CHANCTL_STATE_DIR"), !env.isEmpty { return (StateDirectory(path: env), .environment) }
        if getuid() == 0 { return (StateDirectory(path: systemPath), .system) }
        if let runtime = environment("XDG_RUNTIME_DIR"), !runtime.isEmpty {
            return (StateDirectory(path: runtime + "/secure-channel"), .userTemporary)
        }
        return (StateDirectory(path: "/tmp/secure-channel-\(getuid())"), .userTemporary)
    }

    public var description: String { path }

    // MARK: Layout

    /// The daemon's Unix socket.
    public var socketPath: String { path + "/sim.sock" }
    /// The running daemon's pid (written by the daemon, removed at clean exit).
    public var pidPath: String { path + "/daemon.pid" }
    /// Standard error of a daemon started in the background.
    public var logPath: String { path + "/daemon.log" }
    /// Machine memory.
    public var memoryPath: String { path + "/memory" }
    /// Event-channel words.
    public var eventsPath: String { path + "/events" }
    /// The request journal.
    public var journalPath: String { path + "/journal" }
    /// Per-domain files.
    public var domainsPath: String { path + "/domains" }
    /// The grant module's state (keys, policy, channel registry) when it
    /// runs inside the daemon (`chanctl sim serve`).
    public var grantPath: String { path + "/grant" }
    /// The grant module's channel registry: removed with the simulated host.
    public var grantRegistryPath: String { grantPath + "/channels.json" }

    /// Where `domain create` writes domain `name`'s token.
    public func tokenPath(domain name: String) -> String { domainsPath + "/\(name).token" }
    /// Domain `name`'s view claim table, which its guest processes share
    /// (inside a Xen guest: `/run/secure-channel/view-claims`).
    public func viewClaimsPath(domain name: String) -> String { domainsPath + "/\(name).view-claims" }
    /// Domain `id`'s control region.
    public func controlPath(domain id: UInt16) -> String { domainsPath + "/d\(id).control" }
    /// Domain `id`'s guest-writable per-vCPU pages.
    public func vcpuPagePath(domain id: UInt16) -> String { domainsPath + "/d\(id).vcpu" }

    // MARK: Checks

    /// Creates the directory (and `domains/`) with mode 0700 if missing, then
    /// checks that it is private. Throws ``StateDirectoryError`` naming the
    /// problem and the fix.
    public func prepare() throws(StateDirectoryError) {
        try createPrivateDirectory(path)
        try checkPrivate(path)
        try createPrivateDirectory(domainsPath)
        try checkPrivate(domainsPath)
    }

    /// Checks, without creating anything, that the directory exists and is
    /// private (clients call this before trusting what they find there).
    public func checkExisting() throws(StateDirectoryError) {
        try checkPrivate(path)
    }

    private func createPrivateDirectory(_ dir: String) throws(StateDirectoryError) {
        if mkdir(dir, 0o700) == 0 { return }
        let err = errno
        if err == EEXIST { return }
        if err == ENOENT {
            // Create missing parents (0700 too: they are ours alone).
            if let slash = dir.lastIndex(of: "/"), slash != dir.startIndex {
                try createPrivateDirectory(String(dir[..<slash]))
                if mkdir(dir, 0o700) == 0 || errno == EEXIST { return }
            }
        }
        throw .cannotCreate(path: dir, reason: String(cString: strerror(err)))
    }

    private func checkPrivate(_ dir: String) throws(StateDirectoryError) {
        var info = stat()
        guard lstat(dir, &info) == 0 else {
            throw .missing(path: dir, reason: String(cString: strerror(errno)))
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw .notADirectory(path: dir) }
        guard info.st_uid == getuid() else {
            throw .wrongOwner(path: dir, owner: info.st_uid, expected: getuid())
        }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else { throw .notPrivate(path: dir, mode: mode) }
    }

    private static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}

/// Why a state directory cannot be used. Each message names the directory
/// and says how to fix it.
public enum StateDirectoryError: Error, Equatable, CustomStringConvertible {
    case cannotCreate(path: String, reason: String)
    case missing(path: String, reason: String)
    case notADirectory(path: String)
    case wrongOwner(path: String, owner: uid_t, expected: uid_t)
    case notPrivate(path: String, mode: mode_t)

    public var description: String {
        switch self {
        case .cannotCreate(let path, let reason):
            "cannot create state directory \(path): \(reason); choose another with --state-dir"
        case .missing(let path, let reason):
            "state directory \(path) is not usable: \(reason); run: chanctl sim start"
        case .notADirectory(let path):
            "state directory \(path) exists but is not a directory; remove it or choose another with --state-dir"
        case .wrongOwner(let path, let owner, let expected):
            "state directory \(path) is owned by uid \(owner), not by you (uid \(expected)); refusing to use it: choose another with --state-dir"
        case .notPrivate(let path, let mode):
            "state directory \(path) has mode \(String(mode, radix: 8)), open to group or others; refusing to use it: run chmod 700 \(path) or choose another with --state-dir"
        }
    }
}
