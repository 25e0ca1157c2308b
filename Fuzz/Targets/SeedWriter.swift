import ChannelCrypto
#if canImport(Glibc)
import Glibc
#endif

/// Writes and reads corpus files: one input per file, named by its BLAKE2b
/// hash (as libFuzzer names what it adds, so seeds and finds never clash).
package enum SeedWriter {
    package struct WriteError: Error, CustomStringConvertible {
        package var description: String
    }

    /// Writes every target's seeds into `directory/TARGET/`; returns how many.
    package static func write(into directory: String) throws(WriteError) -> Int {
        var count = 0
        for target in FuzzTarget.all {
            let folder = directory + "/" + target.name
            guard mkdir(folder, 0o755) == 0 || errno == EEXIST else {
                throw WriteError(description: "cannot create \(folder): \(String(cString: strerror(errno)))")
            }
            for seed in target.seeds() {
                let name = "seed-" + Hex.encode(Array(BLAKE2b.hash(seed).prefix(10)))
                try writeFile(folder + "/" + name, seed)
                count += 1
            }
        }
        return count
    }

    static func writeFile(_ path: String, _ bytes: [UInt8]) throws(WriteError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WriteError(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            guard n > 0 else { throw WriteError(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    /// The bytes of a corpus file, or nil if it cannot be read.
    package static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
        }
    }

    /// The regular files in `directory` (sorted), or [] if there is none.
    package static func files(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if entry.pointee.d_type == UInt8(DT_REG) { names.append(name) }
        }
        return names.sorted().map { directory + "/" + $0 }
    }
}
