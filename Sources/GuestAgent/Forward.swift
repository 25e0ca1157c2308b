import Altp2m
import ArgumentParser
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) private var forwardStopRequested: sig_atomic_t = 0

/// `guest-agent forward`: bridges a local Unix stream socket over a channel,
/// like vchan-socket-proxy, so unmodified programs can use the channel.
///
/// One thread does everything: non-blocking socket I/O, `trySend` /
/// `tryReceive` on the channel, and when nothing moved a short `poll(2)` on
/// the socket plus a short wait on the channel (which also notices a dead
/// peer), so an idle bridge does not spin.
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
            """)

    @OptionGroup var agent: AgentOptions

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
    }

    static var maximumPathBytes: Int { MemoryLayout.size(ofValue: sockaddr_un().sun_path) }

    /// SIGTERM, SIGINT and SIGHUP end the bridge cleanly: the socket file is
    /// removed and the agent detaches (a killed agent crashes its domain).
    static func catchStopSignals() {
        for signal in [SIGTERM, SIGINT, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in forwardStopRequested = 1 }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(signal, &action, nil)
        }
    }

    static func checkStop() throws(AgentFailure) {
        if forwardStopRequested != 0 { throw .failure("forward: stopped by a signal; the connection is cut") }
    }

    func run() throws {
        let platform = try agent.platform(vcpu: 0)
        if let listenPath {
            let listener = try Forward.listen(at: listenPath)
            defer { close(listener); unlink(listenPath) }
            let ch = try openChannel(channel, options: agent, platform: platform, wait: wait.strategy, timeout: timeout)
            Forward.catchStopSignals()  // from here on; while opening, a signal ends the process as before
            let socket = try Forward.acceptOne(listener, path: listenPath)
            defer { close(socket) }
            try bridge(ch, socket: socket, listener: listener)
        } else if let connectPath {
            let ch = try openChannel(channel, options: agent, platform: platform, wait: wait.strategy, timeout: timeout)
            Forward.catchStopSignals()
            let socket = try Forward.connect(to: connectPath)
            defer { close(socket) }
            try bridge(ch, socket: socket, listener: nil)
        }
        _ = platform
    }

    // MARK: Sockets

    static func errorText() -> String { String(cString: strerror(errno)) }

    static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    static func listen(at path: String) throws(AgentFailure) -> Int32 {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw .failure("--listen-unix \(path) exists and is not a socket; remove it or choose another path")
            }
            if unlink(path) != 0 { throw .failure("cannot remove the stale socket \(path): \(errorText())") }
        }
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .failure("cannot create a Unix socket: \(errorText())") }
        // Bound and listening under a temporary name, then renamed: a client
        // that sees PATH can connect at once.
        let temporary = path + ".\(getpid()).tmp"
        let bindPath = temporary.utf8.count < maximumPathBytes ? temporary : path
        var address = address(bindPath)
        let previous = umask(0o177)  // the socket file is created 0600
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let bindErrno = errno
        umask(previous)
        guard bound == 0 else {
            close(fd)
            errno = bindErrno
            throw .failure("cannot bind the Unix socket \(path): \(errorText()); check that the directory exists and is writable")
        }
        chmod(bindPath, 0o600)
        guard Glibc.listen(fd, 4) == 0 else {
            let text = errorText()
            close(fd); unlink(bindPath)
            throw .failure("cannot listen on \(path): \(text)")
        }
        if bindPath != path, rename(bindPath, path) != 0 {
            let text = errorText()
            close(fd); unlink(bindPath)
            throw .failure("cannot create the socket \(path): \(text)")
        }
        return fd
    }

    static func acceptOne(_ listener: Int32, path: String) throws(AgentFailure) -> Int32 {
        while true {
            try checkStop()
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            if poll(&ready, 1, 100) <= 0 { continue }
            let fd = accept(listener, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                return fd
            }
            if errno == EINTR || errno == ECONNABORTED { continue }
            throw .failure("cannot accept a connection on \(path): \(errorText())")
        }
    }

    static func connect(to path: String) throws(AgentFailure) -> Int32 {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .failure("cannot create a Unix socket: \(errorText())") }
        var address = address(path)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let text = errorText()
            close(fd)
            throw .failure("cannot connect to --connect-unix \(path): \(text); start the service listening there first")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    // MARK: The bridge

    /// Carries bytes both ways until both directions are closed.
    func bridge(_ ch: SecureChannel, socket fd: Int32, listener: Int32?) throws {
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
                return .failure("peerDied: the peer on channel \(channel) died while \(what) (\(why)); the connection is cut")
            }
            return .failure("\(what) on channel \(channel): \(error)")
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
                    throw AgentFailure.failure("reading the local socket: \(Forward.errorText())")
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
                } catch ChannelError.timeout {
                } catch {
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
                } catch ChannelError.peerClosed {
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
                    throw AgentFailure.failure("writing to the local socket: \(Forward.errorText()) (the local program closed its end while data from channel \(channel) was still arriving)")
                }
            }
            if !channelOpen, incoming == 0, !socketShut {
                _ = shutdown(fd, Int32(SHUT_WR))
                socketShut = true
                progressed = true
            }
            if progressed { idleRounds = 0; continue }
            if forwardStopRequested != 0 {
                // Tell the peer this side is done before detaching.
                if !closeSent { try? ch.closeSending(timeout: .milliseconds(200)) }
                try Forward.checkStop()
            }
            // Idle: short waits at first, longer ones once idle for a while.
            idleRounds += 1
            // Wait briefly on the socket, then briefly on the channel. A
            // socket with nothing to wait for is left out (a hung-up socket
            // would report POLLHUP at once, and the loop would spin).
            let waitMilliseconds: Int32 = idleRounds < 100 ? 2 : 10
            let events = Int16((socketReadable && outgoing == 0 ? POLLIN : 0) | (incoming > 0 ? POLLOUT : 0))
            var fds = [pollfd(fd: events == 0 ? -1 : fd, events: events, revents: 0)]
            if let listener { fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), waitMilliseconds)
            if ready > 0 {
                if fds.count > 1, fds[1].revents & Int16(POLLIN) != 0 {
                    // One connection at a time: turn others away.
                    let extra = accept(listener!, nil, nil)
                    if extra >= 0 {
                        writeStandardError("guest-agent: forward: refused a second connection on \(listenPath ?? ""): busy with one already\n")
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
                    } catch ChannelError.timeout {
                    } catch ChannelError.peerClosed {
                        channelOpen = false
                    }
                } else if outgoing > 0 {
                    // Waits briefly for room; notices a dead peer.
                    do {
                        try ch.send(UnsafeRawBufferPointer(rebasing: toChannel[0..<outgoing]), timeout: .milliseconds(Int(waitMilliseconds)))
                        outgoing = 0
                    } catch ChannelError.timeout {
                    }
                }
            } catch {
                throw channelFailure("waiting", error)
            }
        }
    }
}
