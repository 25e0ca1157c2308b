import Altp2m
import ArgumentParser
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// `guest-agent cat`: standard input to the channel, the channel to standard output.
struct Cat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pipe standard input into a channel and the channel to standard output (byte stream).",
        discussion: "At the end of standard input the sending side is closed; the command ends when the peer closes too. If the peer stops reading (it closed the channel, or its agent went away) while standard input still has bytes, cat exits with a failure that says so.")

    @OptionGroup var arguments: AgentArguments

    @Option(help: "The channel's name.")
    var channel: String

    @Option(help: "How to wait: spin, block or adaptive.")
    var wait: WaitArgument = .block

    @Option(help: "Seconds to wait for the descriptor and the peer's handshake.")
    var timeout: Double = 10

    func run() throws {
        let agent = try arguments.resolve()
        // A stop signal closes the channel politely and detaches (see below)
        // instead of killing the agent, which would crash the domain.
        AgentSignals.install(hangupReloads: false)
        try agent.startFrameFlow(log: agent.logger("guest-agent.cat"))
        let platform = try agent.platform(vcpu: 0)
        let ch = try openChannel(channel, options: agent, platform: platform, wait: wait.strategy, timeout: timeout)
        let stream = ch.byteStream()
        // One thread uses the channel: it alternates between sending what
        // standard input gave (trySend, never blocking, so the peer's replies
        // cannot fill the other ring while this side waits for room) and
        // draining what arrived to standard output. The byte stream ends the
        // sending side once standard input is exhausted.
        let flags = fcntl(0, F_GETFL)
        _ = fcntl(0, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(0, F_SETFL, flags) }
        let chunk = min(ch.maximumMessageBytes, 64 * 1024)
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: ch.maximumMessageBytes, alignment: 16)
        defer { input.deallocate(); output.deallocate() }
        var pending = 0          // bytes of `input` not yet sent
        var inputOpen = true
        var finishing = false
        var outputOpen = true
        while inputOpen || pending > 0 || finishing || outputOpen {
            if AgentSignals.stopRequested {
                try? ch.close(timeout: .seconds(1))
                throw AgentFailure.failure("cat: stopped by a signal; the channel \(channel) was closed (bytes in flight may be lost)")
            }
            var progressed = false
            if pending == 0, inputOpen {
                let n = read(0, input.baseAddress, chunk)
                if n > 0 {
                    pending = n
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    inputOpen = false
                    finishing = true
                }
            }
            if finishing, pending == 0 {
                // Short attempts, draining in between: the peer may need room
                // for its replies before it can consume the rest of ours.
                do {
                    try stream.finish(timeout: .milliseconds(1))
                    finishing = false
                    progressed = true
                } catch .timeout {
                    // retried on the next turn (a sent close returns at once)
                } catch {
                    throw AgentFailure.failure("closing the sending side of \(channel): \(error)")
                }
            }
            if pending > 0 {
                do {
                    if try ch.trySend(UnsafeRawBufferPointer(rebasing: input[0..<pending])) {
                        pending = 0
                        progressed = true
                    }
                } catch .peerClosed {
                    throw AgentFailure.failure("writing to \(channel): the peer closed the channel and reads no more; the rest of standard input was not sent")
                } catch {
                    throw AgentFailure.failure("writing to \(channel): \(error)")
                }
            }
            if outputOpen {
                do {
                    if let n = try ch.tryReceive(into: output) {
                        var offset = 0
                        while offset < n {
                            let w = write(1, output.baseAddress! + offset, n - offset)
                            if w <= 0 { throw AgentFailure.failure("standard output closed") }
                            offset += w
                        }
                        progressed = true
                    }
                } catch ChannelError.peerClosed {
                    outputOpen = false
                } catch {
                    throw AgentFailure.failure("reading from \(channel): \(error)")
                }
            }
            if progressed { continue }
            usleep(50)
        }
    }
}
