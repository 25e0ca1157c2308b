import Foundation
import Glibc
import Testing

/// The spin-mode data path must allocate nothing per message. Counting needs
/// an interposed malloc for the whole process, so the check lives in its own
/// executable (`alloc-check`, built with the package); this test runs it.
///
/// Not under a sanitizer (scripts/sanitize.sh sets `SECURE_CHANNEL_SANITIZER`):
/// alloc-check's malloc forwards to glibc's, while the sanitizer's runtime
/// must own every allocation (AddressSanitizer aborts at the first pointer it
/// did not allocate), and its count would measure the sanitizer, not the channel.
@Suite("Data path allocations", .serialized,
       .disabled(if: ProcessInfo.processInfo.environment["SECURE_CHANNEL_SANITIZER"] != nil,
                 "alloc-check interposes malloc, which the sanitizer's runtime owns"))
struct AllocationTests {
    static func locate(_ name: String) throws -> String {
        let executable = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                             ?? CommandLine.arguments[0])
        var directory = executable.deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "\(name) not found next to \(executable.path); run swift build first"])
    }

    /// Runs a binary to completion with posix_spawn and waitpid (Foundation's
    /// Process can miss a child's exit when suites run in parallel), and
    /// returns its exit status and combined output.
    static func run(_ path: String, _ arguments: [String]) throws -> (Int32, String) {
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { throw POSIXError(.EIO) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 2)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        close(pipe[1])
        guard rc == 0 else { close(pipe[0]); throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        var output = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(pipe[0], &chunk, chunk.count)
            if n > 0 { output += chunk[0..<n] } else if n == 0 || errno != EINTR { break }
        }
        close(pipe[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = (status & 0x7f) == 0
        return (exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), String(decoding: output, as: UTF8.self))
    }

    @Test("no heap allocation per message in spin mode", arguments: [["20000", "64"], ["5000", "1024"], ["20000", "64", "--isolated"]])
    func zeroAllocations(arguments: [String]) throws {
        let (status, text) = try Self.run(try Self.locate("alloc-check"), arguments)
        print(text, terminator: "")
        #expect(status == 0, "alloc-check: \(text)")
        #expect(text.contains(" 0 allocations, 0.0 per message"))
    }
}
