import Altp2m
import ArgumentParser
import Logging
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// `guest-agent forward`: forwards local connections over a channel, like
/// vchan-socket-proxy but many at once, so unmodified programs can use the
/// channel. The ``Multiplexer`` carries them; `run`'s `forward-unix` and
/// `forward-tcp` services use the same engine.
struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forward local connections over a channel (like vchan-socket-proxy, many at once).",
        discussion: """
            --listen ADDRESS accepts connections at ADDRESS and carries each over the \
            channel, any number one after another and at once; --connect ADDRESS on the \
            other end connects to ADDRESS for each of them (a connection it cannot make is \
            refused and closed on the listening side, with the reason logged). ADDRESS is \
            unix:PATH (a 0600 socket; a stale socket file is replaced), tcp:[HOST:]PORT \
            (HOST defaults to 127.0.0.1; IPv6 in brackets, tcp:[::1]:8080) or stdio: \
            --listen stdio makes standard input and output one connection and ends when \
            it is done (ssh -o ProxyCommand="guest-agent forward ... --listen stdio"); \
            --connect stdio carries the first connection on standard input and output \
            and refuses others. A connection to ADDRESS never holds up the others: it \
            is made in the background and refused if it takes longer than \
            --connect-timeout. Each connection has its own flow-control window, so a \
            stalled reader stops only its own; an end of file half-closes that direction. \
            At most --max-connections are served at once (more are accepted and closed). \
            The forwarder ends on SIGTERM or SIGINT (connections are reset, the channel \
            closed), or when the peer closes the channel. Both ends must use \
            --listen/--connect (docs/PROTOCOL.md, "Forwarding"); a peer speaking something \
            else ends the session with an error naming it.

            --listen-unix PATH and --connect-unix PATH are unix:PATH.

            --reconnect SECONDS: carry on instead of ending. When the peer restarts, \
            closes or goes away, its connections are reset (logged), the channel is \
            opened again (waiting up to SECONDS for the peer) and the listening socket \
            is kept for the next connections.
            """)

    @OptionGroup var arguments: AgentArguments

    @Option(help: "The channel's name.")
    var channel: String

    @Option(name: .customLong("listen-unix"), help: ArgumentHelp("The same as --listen unix:PATH.", valueName: "path"))
    var listenPath: String?

    @Option(name: .customLong("connect-unix"), help: ArgumentHelp("The same as --connect unix:PATH.", valueName: "path"))
    var connectPath: String?

    @Option(name: .customLong("listen"), help: ArgumentHelp("Serve connections accepted here over the channel: unix:PATH, tcp:[HOST:]PORT or stdio (see above).", valueName: "address"))
    var listenAddress: String?

    @Option(name: .customLong("connect"), help: ArgumentHelp("Connect here for each connection the peer opens: unix:PATH, tcp:[HOST:]PORT or stdio.", valueName: "address"))
    var connectAddress: String?

    @Option(name: .customLong("max-connections"), help: "With --listen/--connect: connections served at once; more are accepted and closed at once.")
    var maxConnections: Int = 256

    @Option(name: .customLong("connect-timeout"), help: ArgumentHelp("With --connect: seconds a connection to ADDRESS may take; then it is refused (the other connections go on meanwhile).", valueName: "seconds"))
    var connectTimeout: Double = 10

    @Option(help: "How to wait: spin, block or adaptive.")
    var wait: WaitArgument = .block

    @Option(help: "Seconds to wait for the descriptor and the peer's handshake.")
    var timeout: Double = 10

    @Option(help: ArgumentHelp("Open the channel again after each session (see above), waiting up to this many seconds for the peer; 0 ends after one.", valueName: "seconds"))
    var reconnect: Double = 0

    func validate() throws {
        if listenAddress != nil || connectAddress != nil {
            guard listenPath == nil, connectPath == nil, (listenAddress == nil) != (connectAddress == nil) else {
                throw ValidationError("give one of --listen ADDRESS or --connect ADDRESS (and not --listen-unix or --connect-unix with them)")
            }
            do { _ = try ForwardAddress(parsing: listenAddress ?? connectAddress!) } catch { throw ValidationError(error.description) }
            guard maxConnections >= 1, maxConnections <= 65536 else { throw ValidationError("bad --max-connections \(maxConnections): expected 1...65536") }
            guard connectTimeout > 0, connectTimeout <= 3600 else { throw ValidationError("bad --connect-timeout \(connectTimeout): expected seconds in (0, 3600]") }
            guard timeout > 0, timeout <= 3600 else { throw ValidationError("bad --timeout \(timeout): expected seconds in (0, 3600]") }
            guard reconnect >= 0, reconnect <= 3600 else { throw ValidationError("bad --reconnect \(reconnect): expected seconds in [0, 3600]") }
            return
        }
        switch (listenPath, connectPath) {
        case (nil, nil):
            throw ValidationError("give one of --listen ADDRESS, --connect ADDRESS, --listen-unix PATH or --connect-unix PATH")
        case (.some, .some):
            throw ValidationError("give only one of --listen-unix and --connect-unix")
        default:
            break
        }
        let path = listenPath ?? connectPath!
        guard !path.isEmpty, path.utf8.count < Forward.maximumPathBytes else {
            throw ValidationError("bad socket path '\(path)': expected 1...\(Forward.maximumPathBytes - 1) bytes (sun_path)")
        }
        guard timeout > 0, timeout <= 3600 else { throw ValidationError("bad --timeout \(timeout): expected seconds in (0, 3600]") }
        guard reconnect >= 0, reconnect <= 3600 else { throw ValidationError("bad --reconnect \(reconnect): expected seconds in [0, 3600]") }
        guard connectTimeout > 0, connectTimeout <= 3600 else { throw ValidationError("bad --connect-timeout \(connectTimeout): expected seconds in (0, 3600]") }
    }

    static var maximumPathBytes: Int { UnixSockets.maximumPathBytes }

    func run() throws {
        let agent = try arguments.resolve()
        let log = agent.logger("guest-agent.forward")
        try multiplex(agent, log: log)
    }

    /// `--listen`/`--connect`: many connections over one channel
    /// (``Multiplexer``). Ends on a signal or when the peer closes the
    /// channel (or, with stdio, when its connection is done); with
    /// --reconnect a session that ended is followed by the next one, the
    /// listening socket kept.
    private func multiplex(_ agent: AgentOptions, log: Logger) throws {
        // --listen-unix P and --connect-unix P are unix:P.
        let listening = listenAddress != nil || listenPath != nil
        let address = try ForwardAddress(parsing: listenAddress ?? connectAddress ?? "unix:" + (listenPath ?? connectPath!))
        try agent.startFrameFlow(log: log)
        let platform = try agent.platform(vcpu: 0)
        let listener = listening ? try address.listen() : nil
        defer {
            if let listener {
                close(listener)
                if case .unix(let path) = address { unlink(path) }
            }
        }
        var sessions = 0
        while true {
            let ch = try openChannel(channel, options: agent, platform: platform, wait: wait.strategy,
                                     timeout: sessions == 0 ? timeout : reconnect)
            sessions += 1
            if sessions > 1 { log.notice("\(channel): open again (session \(sessions))") }
            AgentSignals.install(hangupReloads: false)
            let engine = Multiplexer(channel: ch, channelName: channel, listening: listening, local: address, listener: listener,
                                     maxConnections: maxConnections, connectTimeout: .milliseconds(Int(connectTimeout * 1000)),
                                     log: log, shouldStop: { AgentSignals.stopRequested })
            let outcome: Multiplexer.Outcome
            do {
                outcome = try engine.run()
            } catch {
                if reconnect == 0 || AgentSignals.stopRequested { throw error }
                log.notice("\(channel): \(error.description); opening the channel again (waiting up to \(reconnect) s)")
                try? ch.close(timeout: .milliseconds(200))
                continue
            }
            log.info("\(channel): session ended (\(outcome)); \(engine.total) connection(s), at most \(engine.peak) at once")
            if outcome != .peerClosed || reconnect == 0 { break }
            log.notice("\(channel): the peer closed the channel; opening it again (waiting up to \(reconnect) s)")
        }
        _ = platform
    }
}
