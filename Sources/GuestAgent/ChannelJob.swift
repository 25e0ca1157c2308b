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
    /// Called once the channel is open (the handshake is done).
    let opened: @Sendable () -> Void

    /// The longest wait between two looks at the stop signal.
    static let turn = Duration.milliseconds(200)
    /// How long a polite close may wait for the peer to take the close.
    static let closeTimeout = Duration.milliseconds(500)

    func serve() {
        var log = self.log
        log[metadataKey: "channel"] = "\(name)"
        let platform: GuestPlatform
        let accepted: OpenedDescriptor
        do {
            platform = try spec.platform(vcpu: vcpu)
            // `name` is the store key the service was chosen by: the
            // descriptor must be signed for it, or the store's writer
            // would pick this channel's service.
            switch try acceptDescriptor(envelope, named: name, agentKey: agentKey, hostKey: hostKey,
                                        platform: platform, spec: spec) {
            case .success(let descriptor): accepted = descriptor
            case .failure(let refusal):
                log.error("refused: \(refusalMessage(refusal))", metadata: ["refusal": "\(refusal.kind)"])
                return
            }
        } catch {
            log.error("cannot serve: \(error)")
            return
        }
        log.info("serving with \(service)", metadata: ["rule": "\(rule ?? "default (no rule matched)")"])
        let channel: SecureChannel
        do {
            channel = try SecureChannel.open(accepted, platform: platform,
                                             options: .init(wait: wait, handshakeTimeout: .seconds(handshakeTimeout)))
        } catch {
            log.error("cannot open: \(error)\(fixHint(error))")
            return
        }
        opened()
        log.info("channel open", metadata: ["vcpu": "\(vcpu)", "mode": "\(channel.descriptor.mode)",
                                            "suite": "\(channel.descriptor.suite)", "service": "\(service)"])
        switch service {
        case .echo: echo(channel, log: log)
        case .sink: sink(channel, log: log)
        case .forwardUnix(let path): forward(channel, to: path, log: log)
        case .refuse: try? channel.close(timeout: Self.closeTimeout)  // never started for refuse; harmless
        }
        _ = platform  // detaches when released, after the channel is done with it
    }

    // MARK: Services

    /// Sends every message back.
    private func echo(_ channel: SecureChannel, log: Logger) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: channel.maximumMessageBytes, alignment: 16)
        defer { buffer.deallocate() }
        var messages: UInt64 = 0
        while true {
            if AgentSignals.stopRequested { return stop(channel, log: log, metadata: ["messages": "\(messages)"]) }
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
                log.info("peer closed the channel; dropping it", metadata: ["messages": "\(messages)"])
                try? channel.close(timeout: .seconds(1))
                return
            } catch {
                log.warning("peer went away: \(error); dropping the channel", metadata: ["messages": "\(messages)"])
                return
            }
        }
    }

    /// Reads and discards; says how much when the peer closes.
    private func sink(_ channel: SecureChannel, log: Logger) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: channel.maximumMessageBytes, alignment: 16)
        defer { buffer.deallocate() }
        var messages: UInt64 = 0, bytes: UInt64 = 0
        while true {
            if AgentSignals.stopRequested {
                return stop(channel, log: log, metadata: ["messages": "\(messages)", "bytes": "\(bytes)"])
            }
            do {
                let n = try channel.receive(into: buffer, timeout: Self.turn)
                messages += 1
                bytes += UInt64(n)
            } catch .timeout {
                continue
            } catch .peerClosed {
                log.info("sink: peer closed the channel after \(messages) messages, \(bytes) bytes; dropping it",
                         metadata: ["messages": "\(messages)", "bytes": "\(bytes)"])
                try? channel.close(timeout: .seconds(1))
                return
            } catch {
                log.warning("sink: peer went away after \(messages) messages, \(bytes) bytes: \(error); dropping the channel",
                            metadata: ["messages": "\(messages)", "bytes": "\(bytes)"])
                return
            }
        }
    }

    /// Connects to the socket and bridges it, exactly as `forward --connect-unix`.
    private func forward(_ channel: SecureChannel, to path: String, log: Logger) {
        let socket: Int32
        do {
            socket = try UnixSockets.connect(to: path)
        } catch {
            // The peer learns at once (peerClosed) instead of waiting on a
            // channel nobody will read.
            log.error("forward-unix: \(error.description); closing the channel")
            try? channel.close(timeout: Self.closeTimeout)
            return
        }
        defer { close(socket) }
        log.info("forward-unix: connected to \(path)")
        do {
            let outcome = try SocketBridge(channel: channel, channelName: name, socket: socket,
                                           shouldStop: { AgentSignals.stopRequested }).run()
            switch outcome {
            case .finished:
                log.info("forward-unix: both directions closed; dropping the channel")
            case .stopped:
                stop(channel, log: log, metadata: [:])
            }
        } catch {
            // The socket may be what failed: a close (cut short if the
            // channel itself failed) keeps the peer from waiting in vain.
            log.warning("forward-unix: \(error.description); dropping the channel")
            try? channel.close(timeout: Self.closeTimeout)
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
    private func stop(_ channel: SecureChannel, log: Logger, metadata: Logger.Metadata) {
        do {
            try channel.close(timeout: Self.closeTimeout)
            log.info("stopping: closed the channel", metadata: metadata)
        } catch {
            log.warning("stopping: could not close the channel politely: \(error)", metadata: metadata)
        }
    }
}
