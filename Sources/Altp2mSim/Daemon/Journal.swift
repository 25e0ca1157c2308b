#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The daemon's append-only journal of state-changing requests.
///
/// Each record is `length` (u32 LE) + `crc32` (u32 LE, of the payload) + the
/// payload (one JSON object). A record is `fsync`ed before the request's
/// answer leaves the daemon, so everything a client was told happened survives
/// a `kill -9` or a power cut of the simulated host. A torn last record (short
/// or failing its checksum) is detected on open and cut off; see
/// docs/SIMULATOR-DAEMON.md.
final class Journal {
    let path: String
    private var fd: Int32

    /// Opens (creating, 0600) the journal at `path`.
    init(path: String) throws(SystemCallError) {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemCallError("open \(path)") }
    }

    deinit { _ = close(fd) }

    /// What ``readAll()`` found.
    struct Contents {
        /// The intact records, in order.
        var records: [JSONValue]
        /// Bytes cut from the end because the last record was torn or corrupt.
        var discardedBytes: Int
    }

    /// Reads every intact record and truncates the file after the last one.
    func readAll() throws(SystemCallError) -> Contents {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SystemCallError("fstat \(path)") }
        let size = Int(info.st_size)
        var data = [UInt8](repeating: 0, count: size)
        var offset = 0
        while offset < size {
            let n = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + offset, size - offset, off_t(offset)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SystemCallError("read \(path)") }
            offset += n
        }
        var records: [JSONValue] = []
        var position = 0
        while position + 8 <= size {
            let length = Int(Self.u32(data, position))
            let checksum = Self.u32(data, position + 4)
            let start = position + 8
            guard length <= WireFrame.maximumLength, start + length <= size else { break }
            let payload = data[start..<start + length]
            guard CRC32.checksum(payload) == checksum,
                  let record = try? JSONValue.parse(payload) else { break }
            records.append(record)
            position = start + length
        }
        if position < size {
            guard ftruncate(fd, off_t(position)) == 0, fsync(fd) == 0 else {
                throw SystemCallError("truncate \(path)")
            }
        }
        return Contents(records: records, discardedBytes: size - position)
    }

    /// Appends one record and waits until it is on stable storage.
    func append(_ record: JSONValue) throws(SystemCallError) {
        let payload = record.bytes
        var bytes = Self.le32(UInt32(payload.count)) + Self.le32(CRC32.checksum(payload[...]))
        bytes += payload
        try writeAll(bytes)
        guard fsync(fd) == 0 else { throw SystemCallError("fsync \(path)") }
    }

    /// Replaces the whole journal with `records` (compaction): written to a
    /// temporary file, synced, then renamed over the journal.
    func replace(with records: [JSONValue]) throws(SystemCallError) {
        let temporary = path + ".new"
        let newFD = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600)
        guard newFD >= 0 else { throw SystemCallError("open \(temporary)") }
        var bytes: [UInt8] = []
        for record in records {
            let payload = record.bytes
            bytes += Self.le32(UInt32(payload.count)) + Self.le32(CRC32.checksum(payload[...]))
            bytes += payload
        }
        let oldFD = fd
        fd = newFD
        do {
            try writeAll(bytes)
        } catch {
            fd = oldFD
            _ = close(newFD)
            unlink(temporary)
            throw error
        }
        guard fsync(newFD) == 0, rename(temporary, path) == 0 else {
            fd = oldFD
            _ = close(newFD)
            unlink(temporary)
            throw SystemCallError("rename \(temporary)")
        }
        _ = close(oldFD)
    }

    private func writeAll(_ bytes: [UInt8]) throws(SystemCallError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SystemCallError("write \(path)") }
            offset += n
        }
    }

    private static func u32(_ data: [UInt8], _ at: Int) -> UInt32 {
        UInt32(data[at]) | UInt32(data[at + 1]) << 8 | UInt32(data[at + 2]) << 16 | UInt32(data[at + 3]) << 24
    }

    private static func le32(_ v: UInt32) -> [UInt8] {
        [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)]
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it): the journal's
/// per-record checksum. Detects torn and corrupted records, not tampering
/// (the state directory is private to its owner).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}
