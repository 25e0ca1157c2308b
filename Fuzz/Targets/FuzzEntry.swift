#if canImport(Glibc)
import Glibc
#endif

/// What the driver does with one input: run it, and on a broken oracle
/// print the violation and abort, so libFuzzer keeps the input as a crash.
package enum FuzzEntry {
    /// The target libFuzzer runs, chosen once per process by `FUZZ_TARGET`.
    nonisolated(unsafe) package static var selected: FuzzTarget?

    /// Picks the target from the environment; exits with a message naming
    /// the targets when it is missing or unknown.
    package static func select() {
        let name = getenv("FUZZ_TARGET").map { String(cString: $0) } ?? ""
        guard let target = FuzzTarget.named(name) else {
            let names = FuzzTarget.all.map(\.name).joined(separator: ", ")
            printError("securechannel-fuzz: set FUZZ_TARGET to one of: \(names) (got '\(name)')\n")
            exit(2)
        }
        selected = target
    }

    package static func run(_ target: FuzzTarget, _ bytes: [UInt8]) {
        do {
            try target.run(bytes)
        } catch {
            printError("securechannel-fuzz: \(target.name): oracle violated: \(error.description)\n")
            abort()
        }
    }
}

/// Writes `text` to standard error (unbuffered, so it precedes an abort).
package func printError(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if n <= 0 { return }
        offset += n
    }
}
