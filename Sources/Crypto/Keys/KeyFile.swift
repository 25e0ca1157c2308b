internal import CSodium
#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// Key pairs on disk: X25519 agent keys and Ed25519 host keys in a small text
/// format that a person can inspect and a program can check.
///
/// ```
/// secure-channel-key v1 x25519
/// public: 8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a
/// private: 77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a
/// ```
///
/// - Line 1 is the header: the format tag, the version and the key type
///   (`x25519` or `ed25519`), separated by single spaces.
/// - Then `public: <64 hex digits>` and `private: <64 hex digits>`, once each,
///   in any order. For X25519 the private key is the 32-byte scalar; for
///   Ed25519 it is the 32-byte RFC 8032 seed. The public key is redundant and
///   is checked against the private key on every read, so a corrupted or
///   hand-edited file is refused instead of silently giving another identity.
/// - Blank lines and lines starting with `#` are ignored; `\r\n` is accepted.
///
/// Files are written with mode 0600 from their creation, atomically (a
/// temporary file in the same directory, `fsync`, then `rename` or `link`),
/// and a read refuses a file that its group or others can access, as ssh does,
/// telling how to fix it. The secret never passes through an ordinary array
/// or string: it is parsed from and formatted into guarded memory with
/// libsodium's constant-time hex codec.
public enum KeyFile {
    /// The kinds of key pair a key file can hold.
    public enum KeyType: String, Sendable, CaseIterable, CustomStringConvertible {
        /// An X25519 key-agreement key pair (agents, sealed boxes, Noise).
        case x25519
        /// An Ed25519 signing key pair (hosts).
        case ed25519

        public var description: String { rawValue }
    }

    /// The first word of every key file.
    public static let formatTag = "secure-channel-key"
    /// The version this build reads and writes.
    public static let version = "v1"
    /// Larger files are refused unread: a key file is about 170 bytes, and a
    /// bound keeps a mistaken path (a log, a disk image) from being slurped.
    public static let maximumByteCount = 4096

    /// Both key lengths in the format are 32 bytes.
    static let keyByteCount = 32

    // MARK: Reading

    /// Reads the X25519 key pair in the key file at `path`.
    ///
    /// - Throws: `keyFile` naming `path` and the problem: the file cannot be
    ///   opened or read, is not a regular file, can be accessed by group or
    ///   others (with the `chmod` that fixes it), is malformed (with the line
    ///   number), holds another key type, or its public key does not match
    ///   its private key.
    public static func readKeyAgreementKey(at path: String) throws(CryptoError) -> Curve25519.KeyAgreement.PrivateKey {
        let parsed = try read(path, expecting: .x25519)
        let key: Curve25519.KeyAgreement.PrivateKey
        do {
            key = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: parsed.privateKey)
        } catch {
            throw .keyFile("\(path): the private key is not a valid X25519 key (\(error))")
        }
        try checkMatch(path, derived: key.publicKey.rawRepresentation, stored: parsed.publicKey)
        return key
    }

    /// Reads the Ed25519 key pair in the key file at `path`.
    ///
    /// - Throws: `keyFile` naming `path` and the problem, as
    ///   `readKeyAgreementKey(at:)` does.
    public static func readSigningKey(at path: String) throws(CryptoError) -> Curve25519.Signing.PrivateKey {
        let parsed = try read(path, expecting: .ed25519)
        let key: Curve25519.Signing.PrivateKey
        do {
            key = try Curve25519.Signing.PrivateKey(seed: parsed.privateKey)
        } catch {
            throw .keyFile("\(path): the private key is not a valid Ed25519 seed (\(error))")
        }
        try checkMatch(path, derived: key.publicKey.rawRepresentation, stored: parsed.publicKey)
        return key
    }

    // MARK: Writing

    /// Writes `key` to a new key file at `path` with mode 0600.
    ///
    /// - Parameters:
    ///   - replacingExisting: replace a file already at `path` (atomically:
    ///     readers see the old file or the new one, never a mix). When false,
    ///     an existing file is left alone and the call throws.
    /// - Throws: `keyFile` naming `path` and the failed step.
    public static func write(_ key: Curve25519.KeyAgreement.PrivateKey, to path: String, replacingExisting: Bool = false) throws(CryptoError) {
        try write(type: .x25519, publicKey: key.publicKey.rawRepresentation, privateKey: key.rawRepresentation,
                  to: path, replacingExisting: replacingExisting)
    }

    /// Writes `key` (its seed) to a new key file at `path` with mode 0600.
    ///
    /// - Parameters:
    ///   - replacingExisting: replace a file already at `path` atomically;
    ///     when false, an existing file is left alone and the call throws.
    /// - Throws: `keyFile` naming `path` and the failed step.
    public static func write(_ key: Curve25519.Signing.PrivateKey, to path: String, replacingExisting: Bool = false) throws(CryptoError) {
        try write(type: .ed25519, publicKey: key.publicKey.rawRepresentation, privateKey: key.seed,
                  to: path, replacingExisting: replacingExisting)
    }

    // MARK: Parsing

    struct Parsed {
        var type: KeyType
        var publicKey: [UInt8]
        var privateKey: SecureBytes
    }

    /// The header line for `type`.
    static func header(_ type: KeyType) -> String { "\(formatTag) \(version) \(type.rawValue)" }

    /// Parses key-file `contents`. Messages never quote the file beyond the
    /// header's words: a malformed private line must not end up in a log.
    static func parse(_ contents: UnsafeRawBufferPointer, path: String, expecting expected: KeyType) throws(CryptoError) -> Parsed {
        var lines: [Range<Int>] = []
        var start = 0
        for i in 0..<contents.count where contents[i] == UInt8(ascii: "\n") {
            lines.append(start..<i)
            start = i + 1
        }
        if start < contents.count { lines.append(start..<contents.count) }

        func trimmed(_ r: Range<Int>) -> Range<Int> {
            var lo = r.lowerBound, hi = r.upperBound
            while lo < hi, isBlank(contents[lo]) { lo += 1 }
            while hi > lo, isBlank(contents[hi - 1]) || contents[hi - 1] == UInt8(ascii: "\r") { hi -= 1 }
            return lo..<hi
        }

        // Line 1: the header.
        guard let first = lines.first else {
            throw .keyFile("\(path): the file is empty; expected a key file starting with '\(header(expected))'")
        }
        let headerWords = String(decoding: UnsafeRawBufferPointer(rebasing: contents[trimmed(first)]), as: UTF8.self)
            .split(separator: " ", omittingEmptySubsequences: true)
        guard headerWords.count == 3, headerWords[0] == formatTag else {
            throw .keyFile("\(path): line 1 is not a key-file header; expected '\(header(expected))'")
        }
        guard headerWords[1] == version else {
            throw .keyFile("\(path): line 1: unsupported key-file version '\(headerWords[1].prefix(16))'; this build reads \(version)")
        }
        guard let type = KeyType(rawValue: String(headerWords[2])) else {
            throw .keyFile("\(path): line 1: unknown key type '\(headerWords[2].prefix(16))'; expected one of \(KeyType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard type == expected else {
            throw .keyFile("\(path): the file holds an \(type) key, but an \(expected) key is needed here")
        }

        var publicKey: [UInt8]? = nil
        var privateKey: SecureBytes? = nil
        for (index, raw) in lines.enumerated().dropFirst() {
            let lineNumber = index + 1
            let line = trimmed(raw)
            if line.isEmpty || contents[line.lowerBound] == UInt8(ascii: "#") { continue }
            guard let colon = line.first(where: { contents[$0] == UInt8(ascii: ":") }) else {
                throw .keyFile("\(path): line \(lineNumber): expected 'public: <hex>' or 'private: <hex>'")
            }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: contents[line.lowerBound..<colon]), as: UTF8.self)
            let value = trimmed((colon + 1)..<line.upperBound)
            let hex = UnsafeRawBufferPointer(rebasing: contents[value])
            switch name {
            case "public":
                guard publicKey == nil else { throw .keyFile("\(path): line \(lineNumber): a second 'public:' line") }
                guard let bytes = decodeHex(hex) else {
                    throw .keyFile("\(path): line \(lineNumber): the public key must be \(keyByteCount * 2) hex digits")
                }
                publicKey = bytes.unsafeArray
            case "private":
                guard privateKey == nil else { throw .keyFile("\(path): line \(lineNumber): a second 'private:' line") }
                guard let bytes = decodeHex(hex) else {
                    throw .keyFile("\(path): line \(lineNumber): the private key must be \(keyByteCount * 2) hex digits")
                }
                privateKey = bytes
            default:
                throw .keyFile("\(path): line \(lineNumber): expected 'public: <hex>' or 'private: <hex>'")
            }
        }
        guard let publicKey else { throw .keyFile("\(path): no 'public:' line") }
        guard let privateKey else { throw .keyFile("\(path): no 'private:' line") }
        return Parsed(type: type, publicKey: publicKey, privateKey: privateKey)
    }

    private static func isBlank(_ c: UInt8) -> Bool { c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") }

    /// Exactly `keyByteCount` bytes from `2 * keyByteCount` hex digits, or nil.
    /// `sodium_hex2bin` runs in time independent of the digits' values, so
    /// decoding a private key leaks nothing through timing.
    private static func decodeHex(_ hex: UnsafeRawBufferPointer) -> SecureBytes? {
        guard hex.count == keyByteCount * 2, let digits = hex.baseAddress else { return nil }
        var out = SecureBytes(zeros: keyByteCount)
        var decoded = 0
        let rc = out.withUnsafeMutableBytes { o in
            sodium_hex2bin(o.baseAddress!.assumingMemoryBound(to: UInt8.self), keyByteCount,
                           digits.assumingMemoryBound(to: CChar.self), hex.count, nil, &decoded, nil)
        }
        guard rc == 0, decoded == keyByteCount else { return nil }
        return out
    }

    private static func checkMatch(_ path: String, derived: [UInt8], stored: [UInt8]) throws(CryptoError) {
        guard derived == stored else {
            throw .keyFile("\(path): the public key does not match the private key (the file is corrupt or was edited); regenerate the key pair")
        }
    }

    // MARK: File system

    /// Opens, checks and parses the key file at `path`.
    static func read(_ path: String, expecting expected: KeyType) throws(CryptoError) -> Parsed {
        let fd = retryingInterrupts { open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY) }
        guard fd >= 0 else {
            throw .keyFile("cannot open \(path): \(errorString(errno))")
        }
        defer { _ = close(fd) }

        // Check the file we opened, not the path, so nothing can be swapped
        // in between the check and the read.
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw .keyFile("cannot stat \(path): \(errorString(errno))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw .keyFile("\(path) is not a regular file")
        }
        let permissions = info.st_mode & 0o7777
        guard permissions & 0o077 == 0 else {
            throw .keyFile("\(path) has permissions \(octal(permissions)), which are too open: a private key must be accessible only by its owner; run: chmod 600 \(path)")
        }
        guard Int(info.st_size) <= maximumByteCount else {
            throw .keyFile("\(path) is \(info.st_size) bytes, too large for a key file (at most \(maximumByteCount))")
        }

        // One byte more than the limit, to notice a file that grew since fstat.
        var buffer = SecureBytes(zeros: maximumByteCount + 1)
        let result: Result<Int, CryptoError> = buffer.withUnsafeMutableBytes { b in
            var total = 0
            while total < b.count {
                let n = retryingInterrupts { systemRead(fd, b.baseAddress! + total, b.count - total) }
                if n < 0 { return .failure(.keyFile("cannot read \(path): \(errorString(errno))")) }
                if n == 0 { break }
                total += n
            }
            guard total <= maximumByteCount else {
                return .failure(.keyFile("\(path) is larger than \(maximumByteCount) bytes, too large for a key file"))
            }
            return .success(total)
        }
        let count = try result.get()
        return try buffer.withUnsafeBytes { b throws(CryptoError) in
            try parse(UnsafeRawBufferPointer(rebasing: b[0..<count]), path: path, expecting: expected)
        }
    }

    static func write(type: KeyType, publicKey: [UInt8], privateKey: SecureBytes, to path: String, replacingExisting: Bool) throws(CryptoError) {
        Sodium.ensureInitialized()
        precondition(publicKey.count == keyByteCount && privateKey.count == keyByteCount, "key sizes are checked by the key types")
        let head = Array("\(header(type))\npublic: \(Hex.encode(publicKey))\nprivate: ".utf8)
        let hexCount = keyByteCount * 2
        // The whole file, private key included, is assembled in guarded memory.
        var contents = SecureBytes(zeros: head.count + hexCount + 1)
        contents.withUnsafeMutableBytes { c in
            c.copyBytes(from: head)
            privateKey.withUnsafeBytes { k in
                // sodium_bin2hex writes a terminating NUL after the digits,
                // into the byte the newline then replaces.
                _ = sodium_bin2hex((c.baseAddress! + head.count).assumingMemoryBound(to: CChar.self), hexCount + 1,
                                   k.baseAddress!.assumingMemoryBound(to: UInt8.self), keyByteCount)
            }
            c[head.count + hexCount] = UInt8(ascii: "\n")
        }

        // The temporary file lives in the target's directory so that rename
        // and link stay within one file system and are atomic.
        let temporary = "\(path).tmp-\(getpid())-\(Hex.encode(SecureRandom.bytes(6)))"
        // O_EXCL | O_NOFOLLOW: never write through a link or into a file
        // someone prepared; 0600 at creation: never readable by others, not
        // even for a moment (umask can only remove bits).
        let fd = retryingInterrupts { open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600) }
        guard fd >= 0 else {
            throw .keyFile("cannot create \(temporary) to write \(path): \(errorString(errno))")
        }
        var committed = false
        defer { if !committed { _ = unlink(temporary) } }

        let written: Result<Void, CryptoError> = contents.withUnsafeBytes { c in
            // fchmod too: a umask such as 0277 would otherwise leave the owner
            // unable to read the key back.
            guard fchmod(fd, 0o600) == 0 else {
                return .failure(.keyFile("cannot set mode 0600 on \(temporary): \(errorString(errno))"))
            }
            var offset = 0
            while offset < c.count {
                let n = retryingInterrupts { systemWrite(fd, c.baseAddress! + offset, c.count - offset) }
                guard n > 0 else {
                    return .failure(.keyFile("cannot write \(temporary): \(errorString(errno))"))
                }
                offset += n
            }
            // The data must be on disk before the name points at it, or a
            // crash could leave an empty key file under the final name.
            guard fsync(fd) == 0 else {
                return .failure(.keyFile("cannot fsync \(temporary): \(errorString(errno))"))
            }
            return .success(())
        }
        let closed = close(fd)
        let closeErrno = errno
        try written.get()
        guard closed == 0 else {
            throw .keyFile("cannot close \(temporary): \(errorString(closeErrno))")
        }

        if replacingExisting {
            guard rename(temporary, path) == 0 else {
                throw .keyFile("cannot rename \(temporary) to \(path): \(errorString(errno))")
            }
        } else {
            // link fails with EEXIST if the name is taken, atomically: no
            // window in which an existing key could be overwritten.
            guard link(temporary, path) == 0 else {
                let e = errno
                if e == EEXIST {
                    throw .keyFile("\(path) already exists; refusing to overwrite a key (remove it first, or replace it on purpose with replacingExisting: true)")
                }
                throw .keyFile("cannot create \(path): \(errorString(e))")
            }
            _ = unlink(temporary)
        }
        committed = true
        syncDirectory(of: path)
    }

    /// Makes the new directory entry durable. Best effort: the key is already
    /// complete under its name, and some file systems refuse fsync on
    /// directories.
    private static func syncDirectory(of path: String) {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        let fd = open(directory, O_RDONLY | O_CLOEXEC | O_DIRECTORY)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        _ = close(fd)
    }

    private static func retryingInterrupts<T: BinaryInteger>(_ call: () -> T) -> T {
        while true {
            let result = call()
            if result < 0 && errno == EINTR { continue }
            return result
        }
    }

    private static func errorString(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    private static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

// `read` and `write` are also names of KeyFile members; these name the
// system calls unambiguously.
@inline(__always)
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}

@inline(__always)
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

extension Curve25519.KeyAgreement.PrivateKey {
    /// Reads an X25519 key pair from the key file at `path` (see `KeyFile`).
    public init(keyFile path: String) throws(CryptoError) {
        self = try KeyFile.readKeyAgreementKey(at: path)
    }

    /// Writes this key pair to a new key file at `path`, mode 0600 (see `KeyFile`).
    public func write(toKeyFile path: String, replacingExisting: Bool = false) throws(CryptoError) {
        try KeyFile.write(self, to: path, replacingExisting: replacingExisting)
    }
}

extension Curve25519.Signing.PrivateKey {
    /// Reads an Ed25519 key pair from the key file at `path` (see `KeyFile`).
    public init(keyFile path: String) throws(CryptoError) {
        self = try KeyFile.readSigningKey(at: path)
    }

    /// Writes this key pair to a new key file at `path`, mode 0600 (see `KeyFile`).
    public func write(toKeyFile path: String, replacingExisting: Bool = false) throws(CryptoError) {
        try KeyFile.write(self, to: path, replacingExisting: replacingExisting)
    }
}
