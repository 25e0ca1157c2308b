import AgentServices
import Altp2m
import ChannelCrypto
import Logging
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// One channel served by `run` on a thread of its own: attach as a vCPU,
/// open the channel, run its service until the peer goes away or a stop
/// signal arrives, close politely, detach (when the platform is released).
///
/// Every wait in a service is bounded (`turn`), so a stop signal is noticed
/// within one turn and the peer sees `peerClosed` rather than `peerDied`.
struct ChannelJob: Sendable {
    let name: String
    let envelope: [UInt8]
    let spec: PlatformSpec
    let agentKey: Curve25519.KeyAgreement.PrivateKey
    let hostKey: Curve25519.Signing.PublicKey
    let vcpu: UInt32
    let wait: WaitStrategy
    let handshakeTimeout: Double
    let log: Logger
    let service: ChannelService
    /// The rule that chose `service` ("FILE:LINE"), nil for the default.
    let rule: String?
    /// Where the channel's statistics snapshot goes, and the domain it names.
    let stats: ChannelStatsDirectory
    let domain: String
    /// Called once the channel is open (the handshake is done).
    let opened: @Sendable () -> Void
    /// Called when a session ended and the channel is being opened again
    /// (false), and when it is open again (true).
    let reopened: @Sendable (Bool) -> Void

    /// The longest wait between two looks at the stop signal.
    static let turn = Duration.milliseconds(200)
    /// How long a polite close may wait for the peer to take the close.
    static let closeTimeout = Duration.milliseconds(500)

    func serve() {
        var log = self.log
        log[metadataKey: "channel"] = "\(name)"
        let platform: GuestPlatform
        do {
            platform = try spec.platform(vcpu: vcpu)
        } catch {
            log.error("cannot serve: \(error)")
            return
        }
        var envelope = self.envelope
        var sessions = 0
        let reporter = ChannelStatsReporter(directory: stats, channel: name, domain: domain, service: "\(service)", log: log)
        while !AgentSignals.stopRequested {
            guard let channel = openSession(envelope, platform: platform, first: sessions == 0, log: log) else {
                reporter.finished(state: AgentSignals.stopRequested ? "stopped" : "closed")
                return
            }
            if sessions == 0 { opened() } else { reopened(true) }
            reporter.opened(channel)
            sessions += 1
            log.info(sessions == 1 ? "channel open" : "channel open again (session \(sessions))",
                     metadata: ["vcpu": "\(vcpu)", "mode": "\(channel.descriptor.mode)",
                                "suite": "\(channel.descriptor.suite)", "service": "\(service)"])
            let stopped: Bool
            switch service {
            case .echo: stopped = echo(channel, log: log, reporter: reporter)
            case .sink: stopped = sink(channel, log: log, reporter: reporter)
            case .forwardUnix(let path): stopped = forward(channel, to: .unix(path), log: log, reporter: reporter)
            case .forwardTCP(let host, let port): stopped = forward(channel, to: .tcp(host: host, port: port), log: log, reporter: reporter)
            case .refuse: try? channel.close(timeout: Self.closeTimeout); stopped = true  // never started for refuse
            }
            reporter.ended(channel, state: stopped ? "stopped" : "reopening")
            if stopped { return }
            // The channel outlives the session: open it again for the next
            // peer incarnation, with the descriptor published now (a
            // re-issue replaced it; a destroy removed it).
            reopened(false)
            guard let fresh = nextEnvelope(platform: platform, log: log) else {
                reporter.finished(state: "closed")
                return
            }
            envelope = fresh
        }
        _ = platform  // detaches when released, after the channel is done with it
    }

    /// Accepts `envelope` and opens the channel, trying again (in bounded
    /// handshakes, so a stop signal is seen) while the peer is not there.
    /// Nil when the descriptor is refused, the channel is gone, or a stop
    /// signal came.
    private func openSession(_ envelope: [UInt8], platform: GuestPlatform, first: Bool, log: Logger) -> SecureChannel? {
        var envelope = envelope
        var attempts = 0
        while !AgentSignals.stopRequested {
            let accepted: OpenedDescriptor
            do {
                // `name` is the store key the service was chosen by: the
                // descriptor must be signed for it, or the store's writer
                // would pick this channel's service.
                switch try acceptDescriptor(envelope, named: name, agentKey: agentKey, hostKey: hostKey,
                                            platform: platform, spec: spec) {
                case .success(let descriptor): accepted = descriptor
                case .failure(let refusal):
                    log.error("refused: \(refusalMessage(refusal))", metadata: ["refusal": "\(refusal.kind)"])
                    return nil
                }
            } catch {
                log.error("cannot serve: \(error)")
                return nil
            }
            if first && attempts == 0 {
                log.info("serving with \(service)", metadata: ["rule": "\(rule ?? "default (no rule matched)")"])
            }
            // The first open waits as long as asked; later ones in short
            // turns, so a stop signal ends a wait for a peer that is away.
            let timeout = first && attempts == 0 ? handshakeTimeout : min(handshakeTimeout, Self.reopenTurn)
            do {
                return try SecureChannel.open(accepted, platform: platform,
                                              options: .init(wait: wait, handshakeTimeout: .seconds(timeout)))
            } catch {
                attempts += 1
                if first && attempts == 1 && !Self.peerMayReturn(error) {
                    log.error("cannot open: \(error)\(fixHint(error))")
                    return nil
                }
                if attempts == 1 || attempts % 30 == 0 {
                    log.notice("waiting for the peer to open the channel again: \(error)", metadata: ["attempts": "\(attempts)"])
                }
                if case .timeout = error {} else { usleep(50_000) }
            }
            guard let fresh = nextEnvelope(platform: platform, log: log) else { return nil }
            envelope = fresh
        }
        return nil
    }

    /// The channel's descriptor as published now; nil (logged) once the
    /// channel is gone.
    private func nextEnvelope(platform: GuestPlatform, log: Logger) -> [UInt8]? {
        do {
            return try platform.readDescriptor(named: name)
        } catch {
            log.info("the channel's descriptor is gone (\(error)); dropping the channel")
            return nil
        }
    }

    /// Whether a failed first open may succeed later without anyone acting:
    /// the peer is away or restarting, or the descriptors were re-issued.
    static func peerMayReturn(_ error: ChannelError) -> Bool {
        switch error {
        case .timeout, .peerClosed, .peerDied, .peerRestarted, .descriptorsReissued: return true
        default: return false
        }
    }

    /// How long one handshake of a reopening waits for the peer.
    static let reopenTurn = 2.0

    // MARK: Services

    /// Sends every message back. True when a stop signal ended it.
    private func echo(_ channel: SecureChannel, log: Logger, reporter: ChannelStatsReporter) -> Bool {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: channel.maximumMessageBytes, alignment: 16)
        defer { buffer.deallocate() }
        var messages: UInt64 = 0
        while true {
            if AgentSignals.stopRequested { return stop(channel, log: log, metadata: ["messages": "\(messages)"]) }
            reporter.tick(channel)
            do {
                let n: Int
                do {
                    n = try channel.receive(into: buffer, timeout: Self.turn)
                } catch .timeout {
                    continue
                }
                guard try sendUnlessStopped(channel, UnsafeRawBufferPointer(rebasing: buffer[0..<n])) else {
                    return stop(channel, log: log, metadata: ["messages": "\(messages)"])
                }
                messages += 1
            } catch .peerClosed {
                log.info("peer closed the channel; waiting for it to open it again", metadata: ["messages": "\(messages)"])
                try? channel.close(timeout: .seconds(1))
                return false
            } catch {
                log.warning("peer went away: \(error); waiting for it to open the channel again", metadata: ["messages": "\(messages)"])
                return false
            }
        }
    }

    /// Reads and discards; says how much when the peer closes. True when a
    /// stop signal ended it.
    private func sink(_ channel: SecureChannel, log: Logger, reporter: ChannelStatsReporter) -> Bool {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: channel.maximumMessageBytes, alignment: 16)
        defer { buffer.deallocate() }
        var messages: UInt64 = 0, bytes: UInt64 = 0
        while true {
            if AgentSignals.stopRequested {
                return stop(channel, log: log, metadata: ["messages": "\(messages)", "bytes": "\(bytes)"])
            }
            reporter.tick(channel)
            do {
                let n = try channel.receive(into: buffer, timeout: Self.turn)
                messages += 1
                bytes += UInt64(n)
            } catch .timeout {
                continue
            } catch .peerClosed {
                log.info("sink: peer closed the channel after \(messages) messages, \(bytes) bytes; waiting for it to open it again",
                         metadata: ["messages": "\(messages)", "bytes": "\(bytes)"])
                try? channel.close(timeout: .seconds(1))
                return false
            } catch {
                log.warning("sink: peer went away after \(messages) messages, \(bytes) bytes: \(error); waiting for it to open the channel again",
                            metadata: ["messages": "\(messages)", "bytes": "\(bytes)"])
                return false
            }
        }
    }

    /// Serves the connections the peer opens, connecting to `target` for
    /// each, with the engine of `forward --connect`. True when a stop signal
    /// ended it.
    private func forward(_ channel: SecureChannel, to target: ForwardAddress, log: Logger, reporter: ChannelStatsReporter) -> Bool {
        let engine = Multiplexer(channel: channel, channelName: name, listening: false, local: target, listener: nil,
                                 maxConnections: 256, log: log,
                                 shouldStop: { reporter.tick(channel); return AgentSignals.stopRequested })
        do {
            switch try engine.run() {
            case .stopped:
                log.info("stopping: closed the channel", metadata: ["connections": "\(engine.total)"])
                return true
            case .peerClosed, .finished:
                log.info("forward: the peer closed the channel after \(engine.total) connection(s); waiting for it to open it again")
                return false
            }
        } catch {
            log.warning("forward: \(error.description); waiting for the peer to open the channel again")
            try? channel.close(timeout: Self.closeTimeout)
            return false
        }
    }

    // MARK: Helpers

    /// `send`, in bounded waits so a stop signal is seen while the peer is
    /// slow to make room: false when stopped (nothing was sent).
    private func sendUnlessStopped(_ channel: SecureChannel, _ message: UnsafeRawBufferPointer) throws(ChannelError) -> Bool {
        while true {
            do {
                try channel.send(message, timeout: Self.turn)
                return true
            } catch .timeout {
                // A timed-out send wrote nothing: trying again is safe.
                if AgentSignals.stopRequested { return false }
            }
            // peerClosed passes through: the peer closed its end and reads
            // no more (a peer that only half-closed, like cat, still reads and
            // its sends wait for room as usual).
        }
    }

    /// The polite end on a stop signal: close (the peer sees peerClosed).
    /// Always true: the job ends.
    @discardableResult
    private func stop(_ channel: SecureChannel, log: Logger, metadata: Logger.Metadata) -> Bool {
        do {
            try channel.close(timeout: Self.closeTimeout)
            log.info("stopping: closed the channel", metadata: metadata)
        } catch {
            log.warning("stopping: could not close the channel politely: \(error)", metadata: metadata)
        }
        return true
    }
}
