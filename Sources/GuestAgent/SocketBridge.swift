import Altp2m
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// Carries the bytes of one connected Unix stream socket over an open
/// channel, both ways, until both directions are closed: the one bridge
/// behind `guest-agent forward` and the `forward-unix` service of `run`.
///
/// One thread does everything: non-blocking socket I/O, `trySend` /
/// `tryReceive` on the channel, and when nothing moved a short `poll(2)` on
/// the socket plus a short wait on the channel (which also notices a dead
/// peer), so an idle bridge does not spin.
///
/// Closing follows the socket: its end of file half-closes the channel; the
/// peer's close shuts down the socket's writing side.
struct SocketBridge {
    /// How a bridge ended without an error.
    enum Outcome: Equatable {
        /// Both directions closed.
        case finished
        /// `shouldStop` said so; the channel's sending side was closed first
        /// (if it could be within a short wait) so the peer sees a close.
        case stopped
    }

    let channel: SecureChannel
    /// The channel's name, for messages.
    let channelName: String
    /// The connected socket (non-blocking). The caller closes it.
    let socket: Int32
    /// A listening socket whose further connections are turned away while
    /// this one lasts (`forward --listen-unix`), and its path for the message.
    var listener: (fd: Int32, path: String)? = nil
    /// Looked at whenever nothing moved.
    var shouldStop: () -> Bool = { false }

    /// Runs until both directions are closed or `shouldStop`; throws a
    /// failure naming the problem when the socket or the channel fails.
    func run() throws(AgentFailure) -> Outcome {
        let ch = channel, fd = socket
        let chunk = min(ch.maximumMessageBytes, 64 * 1024)
        let toChannel = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        let toSocket = UnsafeMutableRawBufferPointer.allocate(byteCount: ch.maximumMessageBytes, alignment: 16)
        defer { toChannel.deallocate(); toSocket.deallocate() }
        var outgoing = 0            // bytes in toChannel not yet sent
        var incoming = 0            // bytes in toSocket ...
        var incomingOffset = 0      // ... of which this many were written
        var socketReadable = true   // no end of file from the socket yet
        var closeSent = false       // the channel's sending side is closed
        var channelOpen = true      // the peer has not closed yet
        var socketShut = false      // shutdown(SHUT_WR) done
        var idleRounds = 0          // turns in a row where nothing moved

        func channelFailure(_ what: String, _ error: any Error) -> AgentFailure {
            if case .peerDied(let why)? = error as? ChannelError {
                return .failure("peerDied: the peer on channel \(channelName) died while \(what) (\(why)); the connection is cut")
            }
            return .failure("\(what) on channel \(channelName): \(error)")
        }
        func deliver(_ n: Int) { incoming = n; incomingOffset = 0 }

        while !(closeSent && !channelOpen && incoming == 0 && socketShut) {
            var progressed = false
            // Socket -> channel.
            if outgoing == 0, socketReadable {
                let n = read(fd, toChannel.baseAddress, chunk)
                if n > 0 {
                    outgoing = n
                    progressed = true
                } else if n == 0 || errno == ECONNRESET {
                    socketReadable = false
                    progressed = true
                } else if errno != EAGAIN && errno != EINTR {
                    throw .failure("reading the local socket: \(UnixSockets.errorText())")
                }
            }
            if outgoing > 0 {
                do {
                    if try ch.trySend(UnsafeRawBufferPointer(rebasing: toChannel[0..<outgoing])) {
                        outgoing = 0
                        progressed = true
                    }
                } catch {
                    throw channelFailure("sending", error)
                }
            }
            if !socketReadable, outgoing == 0, !closeSent {
                // Short attempts: the peer may need room for its data before
                // it consumes the rest of ours (a sent close returns at once).
                do {
                    try ch.closeSending(timeout: .milliseconds(1))
                    closeSent = true
                    progressed = true
                } catch .timeout {
                } catch {
                    // peerClosed here: the peer closed its end before reading
                    // all of ours (a half-closed peer still reads, and a
                    // close frame it left unread counts as delivered).
                    throw channelFailure("closing the sending side", error)
                }
            }
            // Channel -> socket.
            if incoming == 0, channelOpen {
                do {
                    if let n = try ch.tryReceive(into: toSocket) {
                        deliver(n)
                        progressed = true
                    }
                } catch .peerClosed {
                    channelOpen = false
                    progressed = true
                } catch {
                    throw channelFailure("receiving", error)
                }
            }
            if incoming > 0 {
                let w = send(fd, toSocket.baseAddress! + incomingOffset, incoming - incomingOffset, Int32(MSG_NOSIGNAL))
                if w > 0 {
                    incomingOffset += w
                    if incomingOffset == incoming { incoming = 0 }
                    progressed = true
                } else if errno != EAGAIN && errno != EINTR {
                    throw .failure("writing to the local socket: \(UnixSockets.errorText()) (the local program closed its end while data from channel \(channelName) was still arriving)")
                }
            }
            if !channelOpen, incoming == 0, !socketShut {
                _ = shutdown(fd, Int32(SHUT_WR))
                socketShut = true
                progressed = true
            }
            if progressed { idleRounds = 0; continue }
            if shouldStop() {
                // Tell the peer this side is done before the caller detaches.
                if !closeSent { try? ch.closeSending(timeout: .milliseconds(200)) }
                return .stopped
            }
            // Idle: short waits at first, longer ones once idle for a while.
            idleRounds += 1
            // Wait briefly on the socket, then briefly on the channel. A
            // socket with nothing to wait for is left out (a hung-up socket
            // would report POLLHUP at once, and the loop would spin).
            let waitMilliseconds: Int32 = idleRounds < 100 ? 2 : 10
            let events = Int16((socketReadable && outgoing == 0 ? POLLIN : 0) | (incoming > 0 ? POLLOUT : 0))
            var fds = [pollfd(fd: events == 0 ? -1 : fd, events: events, revents: 0)]
            if let listener { fds.append(pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), waitMilliseconds)
            if ready > 0 {
                if let listener, fds[1].revents & Int16(POLLIN) != 0 {
                    // One connection at a time: turn others away.
                    let extra = accept(listener.fd, nil, nil)
                    if extra >= 0 {
                        writeStandardError("guest-agent: forward: refused a second connection on \(listener.path): busy with one already\n")
                        close(extra)
                    }
                }
                if fds[0].revents != 0 { continue }
            }
            do {
                if channelOpen, incoming == 0 {
                    // Waits briefly for data; notices a dead peer.
                    do {
                        deliver(try ch.receive(into: toSocket, timeout: .milliseconds(Int(waitMilliseconds))))
                    } catch .timeout {
                    } catch .peerClosed {
                        channelOpen = false
                    }
                } else if outgoing > 0 {
                    // Waits briefly for room; notices a dead peer.
                    do {
                        try ch.send(UnsafeRawBufferPointer(rebasing: toChannel[0..<outgoing]), timeout: .milliseconds(Int(waitMilliseconds)))
                        outgoing = 0
                    } catch .timeout {
                    }
                    // peerClosed: the peer closed its end and reads no more
                    // (a half-closed peer still reads): the bytes cannot
                    // arrive, which the catch below reports.
                }
            } catch {
                throw channelFailure("waiting", error)
            }
        }
        return .finished
    }
}
