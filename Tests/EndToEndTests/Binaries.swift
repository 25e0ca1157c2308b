import Foundation
import Testing

/// The built executables and a way to run them.
enum Binaries {
    static let someHostKey = String(repeating: "ab", count: 32)

    static var chanctl: String { get throws { try locate("chanctl", environment: "CHANCTL_PATH") } }
    static var guestAgent: String { get throws { try locate("guest-agent", environment: "GUEST_AGENT_PATH") } }

    /// Next to the test bundle (.build/<triple>/<config>/ or any scratch path).
    static func locate(_ name: String, environment variable: String) throws -> String {
        if let path = ProcessInfo.processInfo.environment[variable], FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        let executable = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                             ?? CommandLine.arguments[0])
        var directory = executable.deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        throw BinaryError("\(name) not found next to \(executable.path); build it first (swift build) or set \(variable)")
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var json: [String: Any]? {
            guard let data = stdout.trimmingCharacters(in: .whitespacesAndNewlines).data(using: .utf8) else { return nil }
            return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        }
    }

    /// Runs a binary to completion. Past `timeout` seconds it is killed and
    /// the test fails at the caller's line; output pipes that a grandchild
    /// keeps open (a daemon the child started) end the wait 10 s later with
    /// an error instead of a hang.
    static func run(_ binary: @autoclosure () throws -> String, _ arguments: [String],
                    environment: [String: String] = [:], timeout: Double = 30,
                    sourceLocation: SourceLocation = #_sourceLocation) throws -> Result {
        let process = Process()
        let path = try binary()
        let command = ([URL(fileURLWithPath: path).lastPathComponent] + arguments).joined(separator: " ")
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes while the child runs (a full pipe would block it).
        nonisolated(unsafe) var outData = Data(), errData = Data()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { outData = out.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            Issue.record("\(command) did not finish within \(timeout) s; killed", sourceLocation: sourceLocation)
            kill(process.processIdentifier, SIGKILL)
        }
        guard waitForExit(process, seconds: 10) else {
            throw BinaryError("\(command) did not exit 10 s after SIGKILL")
        }
        guard group.wait(timeout: .now() + 10) == .success else {
            throw BinaryError("\(command) exited, but its output stayed open 10 s later (a process it started holds it)")
        }
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Pids of live (not zombie) processes whose command line contains `text`.
    static func processes(mentioning text: String) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry), pid != getpid(),
                  let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let line = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return line.contains(text) ? pid : nil
        }
    }
}

struct BinaryError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A fresh 0700 directory, removed at the end of the test.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/e2e-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw BinaryError("mkdtemp failed") }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
