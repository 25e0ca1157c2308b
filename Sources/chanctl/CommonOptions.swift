import Altp2mSim
import ArgumentParser
import Logging

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    @Option(name: .long, help: ArgumentHelp(
        "The simulator's state directory.",
        discussion: "Default: $CHANCTL_STATE_DIR, else for root /var/lib/secure-channel (as secure-channel-sim.service), else $XDG_RUNTIME_DIR/secure-channel, else /tmp/secure-channel-$UID (said on standard error).",
        valueName: "path"))
    var stateDir: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp(
        "Log events at this level and above, one line each on standard error: trace, debug, info, notice, warning, error or critical (default: none).",
        discussion: "debug: each request to the simulator or the Xen backend and its answer's time; trace: with its arguments; info: each change of policy, keys or channels that succeeded; error: each refused request.",
        valueName: "level"))
    var logLevel: Logger.Level?

    var stateDirectory: StateDirectory { StateDirectory.resolveForTool(explicit: stateDir, tool: "chanctl") }

    /// The command's logger: silent unless `--log-level` was given.
    var log: Logger { CommandLog.logger(level: logLevel) }
}

/// `--as-guest` / `--as-guest-user`: make the call from inside the domain.
struct GuestCallerOptions: ParsableArguments {
    @Flag(name: .long, help: "Make the call as the domain itself, from guest kernel mode (uses STATE/domains/NAME.token).")
    var asGuest = false

    @Flag(name: .long, help: "Make the call as the domain itself, from guest user mode (CPL 3).")
    var asGuestUser = false

    func validate() throws {
        if asGuest && asGuestUser {
            throw ValidationError("--as-guest and --as-guest-user exclude each other; give one")
        }
    }

    var isGuest: Bool { asGuest || asGuestUser }
}
