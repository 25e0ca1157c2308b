import Altp2m
import ArgumentParser
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// `guest-agent forward`: bridges a local Unix stream socket over a channel,
/// like vchan-socket-proxy, so unmodified programs can use the channel. The
/// bytes are carried by ``SocketBridge``, shared with `run`'s `forward-unix`
/// service.
struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bridge a local Unix stream socket over a channel (like vchan-socket-proxy).",
        discussion: """
            --listen-unix PATH creates a 0600 socket at PATH (a stale socket file is \
            removed first), opens the channel and carries the first connection's bytes \
            over it both ways; further connections are refused while it lasts. \
            --connect-unix PATH opens the channel, then connects to PATH and does the \
            same. The socket's end of file half-closes the channel; the peer's close \
            shuts down the socket's writing side. The command ends when both \
            directions are closed (a channel carries one connection: create a new \
            channel for the next one). Exit status 1 when the peer dies or the socket fails.

            --reconnect SECONDS: carry on instead of ending. When the peer restarts, \
            closes or goes away, or the connection ends, the connection is cut, the \
            channel is opened again (waiting up to SECONDS for the peer) and the next \
            connection is carried: --listen-unix accepts a new one, --connect-unix \
            connects again.
            """)

    @OptionGroup var arguments: AgentArguments

    @Option(help: "The channel's name.")
    var channel: String

    @Option(name: .customLong("listen-unix"), help: ArgumentHelp("Accept one connection on this Unix socket path.", valueName: "path"))
    var listenPath: String?

    @Option(name: .customLong("connect-unix"), help: ArgumentHelp("Connect to this Unix socket path once the channel is open.", valueName: "path"))
    var connectPath: String?

    @Option(help: "How to wait: spin, block or adaptive.")
    var wait: WaitArgument = .block

    @Option(help: "Seconds to wait for the descriptor and the peer's handshake.")
    var timeout: Double = 10

    @Option(help: ArgumentHelp("Open the channel again after each session (see above), waiting up to this many seconds for the peer; 0 ends after one.", valueName: "seconds"))
    var reconnect: Double = 0

    func validate() throws {
        switch (listenPath, connectPath) {
        case (nil, nil):
            throw ValidationError("give one of --listen-unix PATH or --connect-unix PATH")
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
    }

    static var maximumPathBytes: Int { UnixSockets.maximumPathBytes }

    func run() throws {
        let agent = try arguments.resolve()
        let log = agent.logger("guest-agent.forward")
        try agent.startFrameFlow(log: log)
        let platform = try agent.platform(vcpu: 0)
        // From here on a signal only asks the bridge to stop: the socket file
        // is removed and the agent detaches (a killed agent crashes its
        // domain). While the channel opens it still ends the process as before.
        let stop = { AgentSignals.stopRequested }
        var listener: Int32 = -1
        if let listenPath { listener = try UnixSockets.listen(at: listenPath) }
        defer { if let listenPath { close(listener); unlink(listenPath) } }
        var sessions = 0
        while true {
            let ch = try openChannel(channel, options: agent, platform: platform, wait: wait.strategy,
                                     timeout: sessions == 0 ? timeout : reconnect)
            sessions += 1
            if sessions > 1 { log.notice("\(channel): open again (session \(sessions))") }
            AgentSignals.install(hangupReloads: false)
            do {
                try carry(ch, listener: listener, shouldStop: stop)
            } catch {
                if reconnect == 0 || AgentSignals.stopRequested { throw error }
                log.notice("\(channel): \(error.description); cutting the connection and opening the channel again (waiting up to \(reconnect) s)")
                try? ch.close(timeout: .milliseconds(200))
                continue
            }
            if reconnect == 0 { break }
            log.notice("\(channel): both directions closed; opening the channel again for the next connection")
            try? ch.close(timeout: .milliseconds(200))
        }
        _ = platform
    }

    /// One session: accepts (or makes) one connection and bridges it.
    private func carry(_ ch: SecureChannel, listener: Int32, shouldStop stop: @escaping () -> Bool) throws(AgentFailure) {
        if let listenPath {
            guard let socket = try UnixSockets.acceptOne(listener, path: listenPath, shouldStop: stop) else {
                throw Forward.stopped
            }
            defer { close(socket) }
            try finish(SocketBridge(channel: ch, channelName: channel, socket: socket,
                                    listener: (listener, listenPath), shouldStop: stop), on: ch)
        } else if let connectPath {
            let socket: Int32
            do {
                socket = try UnixSockets.connect(to: connectPath)
            } catch {
                throw AgentFailure.failure("--connect-unix: \(error.description)")
            }
            defer { close(socket) }
            try finish(SocketBridge(channel: ch, channelName: channel, socket: socket, shouldStop: stop), on: ch)
        }
    }

    static let stopped = AgentFailure.failure("forward: stopped by a signal; the connection is cut")

    /// Runs the bridge. When it fails, the sending side is closed if it
    /// still can be (a socket failure leaves the channel healthy), so the
    /// peer sees a close instead of silence.
    private func finish(_ bridge: SocketBridge, on ch: SecureChannel) throws(AgentFailure) {
        let outcome: SocketBridge.Outcome
        do {
            outcome = try bridge.run()
        } catch {
            try? ch.closeSending(timeout: .milliseconds(200))
            throw error
        }
        if outcome == .stopped { throw Forward.stopped }
    }
}
