import AgentServices
#if canImport(Glibc)
import Glibc
#endif

extension ServiceConfig {
    /// Reads and checks `path`: an unreadable file is a failure (exit 1),
    /// bad content a usage error (exit 2) naming FILE:LINE.
    static func load(_ path: String) throws(AgentFailure) -> ServiceConfig {
        let text: String
        do {
            text = try readSmallFile(path)
        } catch {
            throw .failure("cannot read the services file \(path): \(error.message); check the path and its permissions")
        }
        do {
            return try parse(text, file: path)
        } catch {
            throw .usage("bad services file \(error.description)")
        }
    }
}

struct FileReadError: Error {
    var message: String
}

/// The whole of a small text file (at most 1 MiB: a services file is a few
/// lines; anything larger is a wrong path).
func readSmallFile(_ path: String) throws(FileReadError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileReadError(message: String(cString: strerror(errno))) }
    defer { close(fd) }
    var info = stat()
    if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { throw FileReadError(message: "it is a directory") }
    let limit = 1 << 20
    let bytes: [UInt8]
    do {
        bytes = try SmallFile.readToEnd(fd, limit: limit)
    } catch {
        throw FileReadError(message: error.reason(limit: limit, expected: "the right file"))
    }
    return String(decoding: bytes, as: UTF8.self)
}
