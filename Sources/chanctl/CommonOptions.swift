import Altp2mSim
import ArgumentParser

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    @Option(name: .long, help: ArgumentHelp(
        "The simulator's state directory.",
        discussion: "Default: $CHANCTL_STATE_DIR, else for root /var/lib/secure-channel (as secure-channel-sim.service), else $XDG_RUNTIME_DIR/secure-channel, else /tmp/secure-channel-$UID (said on standard error).",
        valueName: "path"))
    var stateDir: String?

    var stateDirectory: StateDirectory { StateDirectory.resolveForTool(explicit: stateDir, tool: "chanctl") }
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
