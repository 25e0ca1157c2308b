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

            Configuration file: run, ping, cat, forward and config check read \
            /etc/secure-channel/agent.conf if it exists (--config FILE reads another, which \
            must exist; --no-config or --config none reads none). One KEY = VALUE per \
            line; '#' at the start of a line or after a space starts a comment. The keys \
            are the long options without their dashes: domain, key, host-key, backend, \
            state-dir, enforcement, log-level, and for run only: services, wait, poll-ms, \
            handshake-timeout (other commands ignore those four). A value on the command \
            line wins over the file's. A relative path in the file (key, state-dir, \
            services) is taken from the file's directory. A bad line exits 2 naming \
            FILE:LINE; a key set twice names both lines. When the agent runs as root \
            the file must belong to root and be writable by no one else (chmod 600 or \
            644). guest-agent config check prints every setting and where it came from. \
            Example:
              domain    = web
              key       = web.key
              host-key  = 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
              backend   = xen
              services  = services.conf
            """,
        version: BuildInfo.versionText(tool: "guest-agent"),
        subcommands: [Keygen.self, Run.self, Ping.self, Cat.self, Forward.self, Stats.self, Config.self]
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
