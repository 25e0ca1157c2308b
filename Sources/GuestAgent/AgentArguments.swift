import AgentPlatform
import AgentServices
import ArgumentParser
import Logging

/// Who the agent is, as given on the command line: every option optional,
/// because the configuration file may hold it. ``resolve()`` makes the
/// ``AgentOptions`` the commands use (command line > file > default).
struct AgentArguments: ParsableArguments {
    @Option(help: ArgumentHelp("The configuration file: KEY = VALUE lines naming these options (see guest-agent help). Default /etc/secure-channel/agent.conf, read if it exists; 'none' reads none.",
                               valueName: "file"))
    var config: String?

    @Flag(name: .customLong("no-config"), help: "Read no configuration file, not even the default one.")
    var noConfig = false

    @Option(help: "The domain this agent runs as (simulator: its name; Xen: ignored, read from xenstore). Required, here or in the configuration file.")
    var domain: String?

    @Option(help: ArgumentHelp("This agent's X25519 key file (make one with: guest-agent keygen --out FILE). Required, here or in the configuration file.", valueName: "file"))
    var key: String?

    @Option(name: .customLong("host-key"), help: ArgumentHelp("The host's Ed25519 public key, 64 hex digits (chanctl keys show). Required, here or in the configuration file.", valueName: "hex"))
    var hostKey: String?

    @Option(help: "The hypervisor backend: sim (the simulator daemon, the default), xen, or xen-sim (the Xen backend's code over the simulator's Xen libraries).")
    var backend: GuestBackend?

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("The simulator's state directory (default as chanctl's: for root /var/lib/secure-channel); the domain's replay guard (replay-guard-DOMID.json) is kept there. With --backend xen: where the replay guard is kept (default /var/lib/guest-agent).", valueName: "path"))
    var stateDir: String?

    @Option(help: ArgumentHelp("Simulator only: software (the channel window is plain shared memory) or mprotect (the window is mapped only inside the channel view, so a stray access is a SIGSEGV; each VMFUNC costs mmap calls). Default software.",
                               valueName: "mode"))
    var enforcement: EnforcementArgument?

    @Flag(name: .shortAndLong, help: "Log debug messages to standard error (--log-level debug).")
    var verbose = false

    @Option(name: .customLong("log-level"), help: ArgumentHelp(
        "The least severe events logged, one line each on standard error: trace, debug, info (the default), notice, warning, error or critical.",
        valueName: "level"))
    var logLevel: Logger.Level?

    func validate() throws {
        if verbose, let logLevel, logLevel != .debug {
            throw ValidationError("--verbose is --log-level debug; give one of them, not --verbose with --log-level \(logLevel)")
        }
        if let hostKey, !(hostKey.count == 64 && hostKey.allSatisfy(\.isHexDigit)) {
            throw ValidationError("bad --host-key '\(hostKey)': expected 64 hex digits (the public_key printed by chanctl keys show)")
        }
        if noConfig, let config, config != "none" {
            throw ValidationError("--no-config and --config \(config) contradict each other; give one of them")
        }
    }

    /// The options given, spelled as on the command line, by key.
    var commandLine: [String: String] {
        var given: [String: String] = [:]
        given["domain"] = domain
        given["key"] = key
        given["host-key"] = hostKey
        given["backend"] = backend?.rawValue
        given["state-dir"] = stateDir
        given["enforcement"] = enforcement?.rawValue
        given["log-level"] = logLevel?.rawValue ?? (verbose ? Logger.Level.debug.rawValue : nil)
        return given
    }

    func loadConfig() throws(AgentFailure) -> LoadedConfig {
        try LoadedConfig.load(explicit: config, disabled: noConfig)
    }

    /// The options of a command other than `run`.
    func resolve() throws(AgentFailure) -> AgentOptions {
        try AgentOptions(ResolvedSettings(commandLine: commandLine, config: loadConfig(), run: false))
    }
}

/// `run`'s own options, optional for the same reason.
struct RunArguments: ParsableArguments {
    @Option(help: "How to wait for messages: spin (a busy core per channel), block or adaptive (the default).")
    var wait: WaitArgument?

    @Option(name: .customLong("poll-ms"), help: "How often to look for new descriptors, in milliseconds (default 50).")
    var pollMilliseconds: Int?

    @Option(name: .customLong("handshake-timeout"), help: "Seconds to wait for the peer's handshake (default 30).")
    var handshakeTimeout: Double?

    @Option(name: .customLong("services"), help: ArgumentHelp("Per-channel services: lines of PATTERN SERVICE [ARGUMENT] (format above).", valueName: "file"))
    var servicesFile: String?

    func validate() throws {
        if let pollMilliseconds, !(1...10_000).contains(pollMilliseconds) {
            throw ValidationError("bad --poll-ms \(pollMilliseconds): expected 1...10000")
        }
        if let handshakeTimeout, !(handshakeTimeout > 0 && handshakeTimeout <= 3600) {
            throw ValidationError("bad --handshake-timeout \(handshakeTimeout): expected seconds in (0, 3600]")
        }
    }

    var commandLine: [String: String] {
        var given: [String: String] = [:]
        given["wait"] = wait?.rawValue
        given["poll-ms"] = pollMilliseconds.map(String.init)
        given["handshake-timeout"] = handshakeTimeout.map { String($0) }
        given["services"] = servicesFile
        return given
    }

    /// Everything `run` uses, from the command line, the file and the defaults.
    static func resolve(_ agent: AgentArguments, _ run: RunArguments) throws(AgentFailure) -> (AgentOptions, RunSettings) {
        let settings = ResolvedSettings(commandLine: agent.commandLine.merging(run.commandLine) { $1 },
                                        config: try agent.loadConfig(), run: true)
        return (try AgentOptions(settings), try RunSettings(settings))
    }
}

/// `run`'s settings, resolved.
struct RunSettings {
    var wait: WaitArgument
    var pollMilliseconds: Int
    var handshakeTimeout: Double
    var servicesFile: String?

    init(_ settings: ResolvedSettings) throws(AgentFailure) {
        wait = try settings.typed("wait") ?? .adaptive
        pollMilliseconds = try settings.typed("poll-ms") ?? 50
        handshakeTimeout = try settings.typed("handshake-timeout") ?? 30
        servicesFile = settings.value("services")
    }
}
