#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reading a small text file (a configuration or services file) whole, from
/// a descriptor the caller opened and checked, so the file checked is the
/// file read.
package enum SmallFile {
    package enum ReadError: Error, Equatable {
        /// `read(2)` failed with this errno.
        case system(Int32)
        /// More than the limit: not the file it should be.
        case tooLarge

        /// The reason, for an error that names the file.
        package func reason(limit: Int, expected: String) -> String {
            switch self {
            case .system(let code): String(cString: strerror(code))
            case .tooLarge: "larger than \(limit / 1024) KiB; is it \(expected)?"
            }
        }
    }

    /// Everything left to read on `fd`, at most `limit` bytes.
    package static func readToEnd(_ fd: Int32, limit: Int) throws(ReadError) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(errno)
            }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
            if bytes.count > limit { throw .tooLarge }
        }
    }
}
