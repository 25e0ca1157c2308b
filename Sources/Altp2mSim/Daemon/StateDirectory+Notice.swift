import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension StateDirectory {
    private static let noticeGiven = Atomic<Bool>(false)

    /// ``resolve(explicit:)`` for a command-line tool: when the choice is an
    /// unprivileged user's temporary default, says so on standard error,
    /// once per process, with how to choose another (the system's simulator,
    /// secure-channel-sim.service, keeps its state in ``systemPath``).
    package static func resolveForTool(explicit: String?, tool: String) -> StateDirectory {
        let (directory, origin) = choose(explicit: explicit)
        if origin == .userTemporary, !noticeGiven.exchange(true, ordering: .relaxed) {
            let line = "\(tool): state directory \(directory.path): the default for a user other than root, for trying things out; "
                + "give --state-dir (or CHANCTL_STATE_DIR) for another, e.g. --state-dir \(systemPath) for the system's simulator\n"
            _ = Array(line.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
        return directory
    }
}
