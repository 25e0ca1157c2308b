import Altp2m
import Altp2mSim
import CPlatform
import Foundation
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// The domain's ``DescriptorReplayGuard``, kept in a file of the agent's
/// state directory so that it outlives the process: every agent process of
/// the domain (guest-agent's run, ping, cat, forward, and programs using
/// libsecurechannel, at the same time or one after another) checks and
/// records descriptors in the same guard.
///
/// The agent owns this file, not the channel library: where an agent keeps
/// state, and how its processes share it, is the agent's business; the
/// library's guard is a plain value with its entries public for exactly
/// this; guest-agent and libsecurechannel share this one implementation.
///
/// - `replay-guard-<domid>.json`: mode 0600, owned by the agent's user,
///   `{"version":1,"domain":N,"channels":{"<32 hex digits>":GEN,...},"names":{"NAME":GEN,...}}`.
///   Rewritten whole, atomically: a temporary file in the same directory,
///   fsync, rename over the old one, fsync of the directory. A reader sees
///   the old guard or the new one, never a torn one, even after a crash.
/// - `replay-guard-<domid>.json.lock`: the `flock` held across each
///   read-check-record-write. A separate file because the rename replaces
///   the guard's inode, and a lock on a replaced inode excludes no one.
///
/// The lock is held only while the descriptor is checked (milliseconds),
/// never during the handshake, which may wait for the peer for the whole
/// handshake timeout while other channels of the domain open.
package struct ReplayGuardFile {
    package static let formatVersion = 1
    /// How long to wait for another process of the domain to release the lock.
    package static let lockTimeout: Double = 10

    package let path: String
    package let domain: DomainID
    package var lockPath: String { path + ".lock" }

    /// The guard file of `domain` in `directory`.
    package init(directory: String, domain: DomainID) {
        self.path = directory + "/replay-guard-\(domain.rawValue).json"
        self.domain = domain
    }

    /// The directory the guard lives in: the simulator's state directory
    /// (it is removed with the simulated host, whose registry numbers the
    /// generations); on Xen `--state-dir`, by default /var/lib/guest-agent.
    package static func directory(onSimulator: Bool, stateDir: String?) -> String {
        onSimulator ? StateDirectory.resolve(explicit: stateDir).path : stateDir ?? "/var/lib/guest-agent"
    }

    /// Opens `envelope` as the channel `name`, checking and recording it in
    /// the domain's guard under the lock; the guard is written back only
    /// when the descriptor was accepted.
    /// - Returns: the opened descriptor, or why it was refused.
    /// - Throws: when the guard file cannot be locked, read or written.
    package func open(_ envelope: [UInt8], named name: String, with opener: DescriptorOpener,
              now: UInt64 = UInt64(Date().timeIntervalSince1970)) throws(ReplayGuardFileError) -> Result<OpenedDescriptor, DescriptorError> {
        try withLock { () throws(ReplayGuardFileError) in
            var replayGuard = try load()
            let before = replayGuard
            let result = Result { () throws(DescriptorError) in
                try opener.open(envelope, named: name, now: now, replayGuard: &replayGuard)
            }
            if replayGuard != before { try save(replayGuard) }
            return result
        }
    }

    // MARK: Locking

    private func withLock<R>(_ body: () throws(ReplayGuardFileError) -> R) throws(ReplayGuardFileError) -> R {
        try makeDirectory()
        let fd = Glibc.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .failure("cannot open the replay guard's lock \(lockPath): \(String(cString: strerror(errno))); check the state directory's owner and permissions") }
        defer { close(fd) }  // closing releases the lock
        let deadline = cplatform_monotonic_ns() + UInt64(Self.lockTimeout * 1e9)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let err = errno
            guard err == EWOULDBLOCK || err == EINTR else {
                throw .failure("cannot lock \(lockPath): \(String(cString: strerror(err)))")
            }
            if cplatform_monotonic_ns() >= deadline {
                throw .failure("another agent process of this domain (guest-agent or a program using libsecurechannel) has held \(lockPath) for \(Int(Self.lockTimeout)) s; find it with: fuser \(lockPath)")
            }
            usleep(5_000)
        }
        return try body()
    }

    private func makeDirectory() throws(ReplayGuardFileError) {
        var info = stat()
        if stat(directoryPath, &info) == 0 { return }
        // Only the Xen default may be missing: the simulator's directory
        // exists once the agent attached.
        guard mkdir(directoryPath, 0o700) == 0 || errno == EEXIST else {
            throw .failure("cannot create the agent's state directory \(directoryPath) for the replay guard: \(String(cString: strerror(errno))); create it (mode 0700) or pass --state-dir")
        }
    }

    private var directoryPath: String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    // MARK: Reading

    /// The guard in the file; empty when there is no file yet.
    package func load() throws(ReplayGuardFileError) -> DescriptorReplayGuard {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            let err = errno
            if err == ENOENT { return DescriptorReplayGuard() }
            throw .failure("cannot read the replay guard \(path): \(String(cString: strerror(err)))\(err == ELOOP ? " (it is a symbolic link; the agent writes a plain file there)" : "")")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .failure("cannot stat the replay guard \(path): \(String(cString: strerror(errno)))") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .failure("the replay guard \(path) is not a regular file; move it away") }
        guard info.st_uid == geteuid() else {
            throw .failure("the replay guard \(path) is owned by uid \(info.st_uid), not by this agent (uid \(geteuid())); someone else could have rewritten it: check it, then chown it to the agent")
        }
        let mode = info.st_mode & 0o777
        guard mode == 0o600 else {
            throw .failure("the replay guard \(path) has mode \(String(mode, radix: 8)), not 600: others could have rewritten it; check it, then chmod 600 \(path)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .failure("cannot read the replay guard \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return try Self.decode(bytes, path: path, domain: domain)
    }

    private struct Contents: Codable {
        var version: Int
        var domain: UInt16
        var channels: [String: UInt64]
        var names: [String: UInt64]
    }

    package static func decode(_ bytes: [UInt8], path: String, domain: DomainID) throws(ReplayGuardFileError) -> DescriptorReplayGuard {
        func malformed(_ why: String) -> ReplayGuardFileError {
            .failure("the replay guard \(path) is malformed: \(why). Only the agents write it: restore it from a backup; removing it makes this domain accept every descriptor still published, replays included, so re-issue all its channels (chanctl channel reissue) if you do")
        }
        let contents: Contents
        do {
            contents = try JSONDecoder().decode(Contents.self, from: Data(bytes))
        } catch {
            throw malformed("not the JSON the agent writes (\(error))")
        }
        guard contents.version == formatVersion else { throw malformed("version \(contents.version), expected \(formatVersion)") }
        guard contents.domain == domain.rawValue else {
            throw malformed("it is the guard of domain \(contents.domain), not of \(domain.rawValue)")
        }
        var byChannel: [ChannelID: UInt64] = [:]
        for (hex, generation) in contents.channels {
            guard let id = ChannelID(hex: hex) else { throw malformed("'\(hex)' is not a channel id (32 hex digits)") }
            byChannel[id] = generation
        }
        for name in contents.names.keys where !ChannelDescriptor.isValidName(name) {
            throw malformed("'\(name)' is not a channel name")
        }
        return DescriptorReplayGuard(byChannel: byChannel, byName: contents.names)
    }

    // MARK: Writing

    package static func encode(_ replayGuard: DescriptorReplayGuard, domain: DomainID) -> [UInt8] {
        let contents = Contents(version: formatVersion, domain: domain.rawValue,
                                channels: Dictionary(uniqueKeysWithValues: replayGuard.byChannel.map { ($0.key.hex, $0.value) }),
                                names: replayGuard.byName)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding dictionaries of strings and integers cannot fail.
        return Array((try? encoder.encode(contents)) ?? Data()) + [UInt8(ascii: "\n")]
    }

    /// Replaces the file with `replayGuard`: temporary file, fsync, rename, fsync of the directory.
    package func save(_ replayGuard: DescriptorReplayGuard) throws(ReplayGuardFileError) {
        let bytes = Self.encode(replayGuard, domain: domain)
        let temporary = path + ".tmp-\(getpid())"
        func failed(_ what: String, _ err: Int32) -> ReplayGuardFileError {
            unlink(temporary)
            return .failure("cannot write the replay guard \(path) (\(what) \(temporary): \(String(cString: strerror(err)))); the descriptor was not accepted; check free space and the state directory's permissions")
        }
        unlink(temporary)  // a leftover of a crashed process with this pid
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw failed("creating", errno) }
        // The umask may have taken bits away, never added any; set 0600 exactly.
        guard fchmod(fd, 0o600) == 0 else { let err = errno; close(fd); throw failed("chmod of", err) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                let err = errno
                close(fd)
                throw failed("writing", err)
            }
            offset += n
        }
        guard fsync(fd) == 0 else { let err = errno; close(fd); throw failed("fsync of", err) }
        close(fd)
        guard rename(temporary, path) == 0 else { throw failed("renaming", errno) }
        // The rename itself reaches the disk with the directory.
        let directory = Glibc.open(directoryPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            _ = fsync(directory)
            close(directory)
        }
    }
}

/// Why the guard file could not be used; the description names the file,
/// what failed and the fix.
package struct ReplayGuardFileError: Error, CustomStringConvertible {
    package let description: String

    static func failure(_ description: String) -> ReplayGuardFileError { ReplayGuardFileError(description: description) }
}
