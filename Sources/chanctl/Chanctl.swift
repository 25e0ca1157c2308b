import Altp2m
import ArgumentParser
import BuildInfo
#if canImport(Glibc)
import Glibc
#endif

/// `chanctl`: the dom0 command-line tool. Subcommand groups live one per file.
///
/// Exit codes: 0 success; 1 a failure that is not the hypervisor's (the
/// simulator is not running, an unknown domain name, ...); 2 bad usage;
/// 3 the hypervisor returned an error (its errno name and code are printed).
@main
struct Chanctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chanctl",
        abstract: "Control secure inter-VM channels on Xen altp2m, or the altp2m simulator.",
        discussion: """
            Exit status: 0 success, 1 failure (for example, no simulator running), \
            2 bad usage, 3 the hypervisor returned an error. With --json every \
            command prints one JSON object: {"ok":true,...} or {"ok":false,...}.
            """,
        version: BuildInfo.versionText(tool: "chanctl", extra: [("simulator default", "Xen \(HostProfile.default.xen)")]),
        subcommands: [SimCommand.self, DomainCommand.self, Altp2mCommand.self, MonitorCommand.self, EvtchnCommand.self, GnttabCommand.self, ForeignCommand.self, XenstoreCommand.self, PingPongCommand.self,
                      KeysCommand.self, PolicyCommand.self, ChannelCommand.self, AuditCommand.self, BenchCommand.self, BenchPeerCommand.self]
    )

    /// Parses and runs, mapping every failure to the exit codes above.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let wantsJSON = arguments.contains("--json")
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(0)
        } catch let failure as CommandFailure {
            failure.report(json: wantsJSON)
            Glibc.exit(failure.exitCode)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                // --help, --version: the message goes to standard output.
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            if let exitError = error as? ExitCode {
                Glibc.exit(exitError.rawValue)
            }
            let message = message(for: error)
            if wantsJSON {
                print(JSONValueOutput.error(message))
            } else {
                var standardError = StandardError()
                print(fullMessage(for: error), to: &standardError)
            }
            Glibc.exit(CommandFailure.usageExitCode)
        }
    }
}
