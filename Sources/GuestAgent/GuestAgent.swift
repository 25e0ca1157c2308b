import ArgumentParser
import BuildInfo
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `guest-agent`: the agent inside a guest. It holds the domain's X25519 key
/// pair, opens the channels dom0 publishes for its domain and serves them.
///
/// Exit codes: 0 success; 1 a failure (the message names the problem and the
/// fix); 2 bad usage.
@main
struct GuestAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guest-agent",
        abstract: "The secure-channel agent inside a guest: key generation, echo service, latency probe, byte pipe, socket forwarder.",
        discussion: """
            Exit status: 0 success, 1 failure, 2 bad usage. With --json a command \
            prints one JSON object; failures print {"ok":false,"error":...}.
            """,
        version: BuildInfo.versionText(tool: "guest-agent"),
        subcommands: [Keygen.self, Run.self, Ping.self, Cat.self, Forward.self, Stats.self]
    )

    static func main() {
        // A parent may have blocked signals (test runners do): SIGTERM must
        // stop an agent, so start from an empty mask.
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
        let arguments = Array(CommandLine.arguments.dropFirst())
        let wantsJSON = arguments.contains("--json")
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(0)
        } catch let failure as AgentFailure {
            failure.report(json: wantsJSON)
            Glibc.exit(failure.exitCode)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            if let exitError = error as? ExitCode { Glibc.exit(exitError.rawValue) }
            if wantsJSON {
                print(jsonObject(["ok": .bool(false), "error": .string(message(for: error))]))
            } else {
                writeStandardError(fullMessage(for: error) + "\n")
            }
            Glibc.exit(AgentFailure.usageExitCode)
        }
    }
}
