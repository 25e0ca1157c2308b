import Altp2m
import Altp2mSim
import ArgumentParser
import CPlatform
import ChannelCrypto
import Histogram
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// `chanctl bench-peer` (hidden): one side of a `chanctl bench` case, run as
/// its own process attached to the simulator as a guest domain, pinned to
/// one CPU. `bench` starts two of them per case, one per domain, and reads
/// the measuring side's JSON.
///
/// Roles:
/// - `ping`: opens the channels in order, then does `--warmup` untimed and
///   `--count` timed round trips, going round the channels one round trip
///   each; prints percentiles (HdrHistogram), round trips per second and the
///   time it took to open the channels.
/// - `echo`: opens the same channels in the same order and sends every
///   message back on the channel it came from, in the same rotation, until
///   the pinging side closes.
/// - `stream-send`: writes `--bytes` in messages of `--size` bytes, then closes.
/// - `stream-sink`: reads them and prints bytes per second from its first
///   message to its last.
struct BenchPeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-peer",
        abstract: "One side of a chanctl bench case (started by chanctl bench).",
        shouldDisplay: false)

    enum Role: String, ExpressibleByArgument, CaseIterable { case ping, echo, streamSend = "stream-send", streamSink = "stream-sink" }

    @Argument(help: "ping, echo, stream-send or stream-sink.") var role: Role
    @Option var domain: String
    @Option(help: "This side's X25519 key file.") var key: String
    @Option(name: .customLong("host-key")) var hostKey: String
    @Option(name: .customLong("state-dir")) var stateDir: String
    @Option(help: "Comma-separated channel names, opened in this order.") var channels: String
    @Option var wait: PingPongCommand.WaitArgument = .spin
    @Option var enforcement: String = "software"
    @Option var cpu: Int32 = -1
    @Option var size: Int = 64
    @Option var count: Int = 10_000
    @Option var warmup: Int = 1_000
    @Option var bytes: Int = 1 << 26
    @Option(help: "Seconds any single wait may take.") var timeout: Double = 20

    func validate() throws {
        guard SimGuest.Enforcement(rawValue: enforcement) != nil else {
            throw ValidationError("bad --enforcement '\(enforcement)': expected software or mprotect")
        }
        guard size >= 1, count >= 1, warmup >= 0, bytes >= size, timeout > 0 else {
            throw ValidationError("bad --size/--count/--warmup/--bytes/--timeout")
        }
    }

    func run() throws {
        if cpu >= 0 { _ = cplatform_pin_to_cpu(cpu) }
        let peer = try BenchPeer(self)
        let result: JSONValue
        switch role {
        case .ping: result = try peer.ping()
        case .echo: result = try peer.echo()
        case .streamSend: result = try peer.streamSend()
        case .streamSink: result = try peer.streamSink()
        }
        print(result.serialized)
    }
}

/// The open channels of one bench peer and what it does with them.
final class BenchPeer {
    let options: BenchPeerCommand
    let channels: [SecureChannel]
    let openNanoseconds: UInt64
    private let limit: Duration

    init(_ options: BenchPeerCommand) throws(CommandFailure) {
        self.options = options
        limit = .seconds(options.timeout)
        let agentKey: Curve25519.KeyAgreement.PrivateKey
        let hostKey: Curve25519.Signing.PublicKey
        do {
            agentKey = try Curve25519.KeyAgreement.PrivateKey(keyFile: options.key)
            hostKey = try Curve25519.Signing.PublicKey(hex: options.hostKey)
        } catch {
            throw .failure("bench-peer keys: \(error)")
        }
        let platform: SimGuestPlatform
        do {
            platform = try SimGuestPlatform.attach(domain: options.domain, stateDirectory: options.stateDir, vcpu: 0,
                                                   enforcement: SimGuest.Enforcement(rawValue: options.enforcement)!)
        } catch {
            throw .failure("bench-peer cannot attach as \(options.domain): \(error)")
        }
        let start = cplatform_monotonic_ns()
        var opened: [SecureChannel] = []
        // The bench's private simulator and channels live as long as this run.
        var replayGuard = DescriptorReplayGuard()
        for name in options.channels.split(separator: ",").map(String.init) {
            let envelope = try Self.descriptor(name, platform: platform, timeout: options.timeout)
            do {
                opened.append(try SecureChannel.open(channel: name, descriptor: envelope, agentKey: agentKey, hostKey: hostKey,
                                                     platform: platform,
                                                     options: .init(wait: options.wait.strategy,
                                                                    handshakeTimeout: .seconds(options.timeout)),
                                                     replayGuard: &replayGuard))
            } catch {
                throw .failure("bench-peer cannot open \(name): \(error)")
            }
        }
        openNanoseconds = cplatform_monotonic_ns() - start
        channels = opened
    }

    private static func descriptor(_ name: String, platform: SimGuestPlatform, timeout: Double) throws(CommandFailure) -> [UInt8] {
        let deadline = cplatform_monotonic_ns() + UInt64(timeout * 1e9)
        while true {
            do {
                return try platform.readDescriptor(named: name)
            } catch .noDescriptor {
                if cplatform_monotonic_ns() > deadline { throw .failure("bench-peer: no descriptor \(name)") }
                usleep(10_000)
            } catch {
                throw .failure("bench-peer cannot read descriptor \(name): \(error)")
            }
        }
    }

    private func fail(_ what: String, _ error: ChannelError) -> CommandFailure {
        .failure("bench-peer \(options.role.rawValue) \(what): \(error)")
    }

    /// Round trips, one per channel in turn.
    func ping() throws(CommandFailure) -> JSONValue {
        let size = options.size
        let message = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 16), alignment: 16)
        defer { message.deallocate(); reply.deallocate() }
        for i in 0..<size { message[i] = UInt8(truncatingIfNeeded: i &* 131 &+ 17) }
        // Plain locals: the option wrappers are not free to read in the loop.
        let warmup = options.warmup, count = options.count
        var samples = [UInt64](repeating: 0, count: count)
        let total = warmup + count
        var timedStart: UInt64 = 0
        var next = 0
        for i in 0..<total {
            if i == warmup { timedStart = cplatform_monotonic_ns() }
            let channel = channels[next]
            next = next + 1 == channels.count ? 0 : next + 1
            let start = cplatform_monotonic_ns()
            do {
                try channel.send(UnsafeRawBufferPointer(message), timeout: limit)
                let n = try channel.receive(into: reply, timeout: limit)
                guard n == size else { throw CommandFailure.failure("bench-peer ping: the echo returned \(n) bytes for \(size)") }
            } catch let error as ChannelError {
                throw fail("round trip \(i)", error)
            } catch let failure as CommandFailure {
                throw failure
            } catch {
                throw .failure("bench-peer ping: \(error)")
            }
            if i >= warmup { samples[i - warmup] = cplatform_monotonic_ns() - start }
        }
        let elapsed = cplatform_monotonic_ns() - timedStart
        guard memcmp(message.baseAddress!, reply.baseAddress!, size) == 0 else {
            throw .failure("bench-peer ping: the echo changed the message")
        }
        // Close in the rotation's order: the echo is waiting on channel
        // `next`, reads its close, moves on to the next one, and so on (each
        // close returns once the echo consumed it).
        for k in 0..<channels.count {
            do { try channels[(next + k) % channels.count].close(timeout: limit) } catch { throw fail("closing", error) }
        }
        var result = LatencySummary(samples).json
        result["ok"] = true
        result["msgs_per_s"] = .double(rounded(Double(count) / (Double(elapsed) / 1e9)))
        result["open_ms"] = .double(rounded(Double(openNanoseconds) / 1e6))
        return .object(result)
    }

    /// Sends every message back, in the same rotation as `ping`.
    func echo() throws(CommandFailure) -> JSONValue {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: channels.map(\.maximumMessageBytes).max() ?? 65536,
                                                            alignment: 16)
        defer { buffer.deallocate() }
        var messages: UInt64 = 0
        var next = 0
        while true {
            let channel = channels[next]
            do {
                let n = try channel.receive(into: buffer, timeout: limit)
                try channel.send(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), timeout: limit)
                messages += 1
            } catch .peerClosed {
                break
            } catch {
                throw fail("after \(messages) messages", error)
            }
            next = next + 1 == channels.count ? 0 : next + 1
        }
        // The pinging side closes every channel in the same rotation: read
        // each close. This side then just ends (nobody reads from it any more).
        for k in 1..<max(channels.count, 1) {
            do {
                let n = try channels[(next + k) % channels.count].receive(into: buffer, timeout: limit)
                throw CommandFailure.failure("bench-peer echo: \(n) bytes after the pinging side started closing")
            } catch let error as ChannelError where error == .peerClosed {
                continue
            } catch let failure as CommandFailure {
                throw failure
            } catch {
                throw .failure("bench-peer echo waiting for the closes: \(error)")
            }
        }
        return .object(["ok": true, "messages": .uint(messages)])
    }

    func streamSend() throws(CommandFailure) -> JSONValue {
        let channel = channels[0]
        let message = UnsafeMutableRawBufferPointer.allocate(byteCount: options.size, alignment: 16)
        defer { message.deallocate() }
        message.initializeMemory(as: UInt8.self, repeating: 0x5A)
        let count = options.bytes / options.size
        do {
            for _ in 0..<count { try channel.send(UnsafeRawBufferPointer(message), timeout: limit) }
            try channel.close(timeout: limit)
        } catch {
            throw fail("streaming", error)
        }
        return .object(["ok": true, "messages": .int(Int64(count))])
    }

    func streamSink() throws(CommandFailure) -> JSONValue {
        let channel = channels[0]
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: channel.maximumMessageBytes, alignment: 16)
        defer { buffer.deallocate() }
        let count = options.bytes / options.size
        var received = 0
        var start: UInt64 = 0
        do {
            for i in 0..<count {
                received += try channel.receive(into: buffer, timeout: limit)
                if i == 0 { start = cplatform_monotonic_ns() }  // the clock starts at the first message
            }
        } catch {
            throw fail("after \(received) bytes", error)
        }
        let seconds = Double(cplatform_monotonic_ns() - start) / 1e9
        // Read on to the writer's close (its close waits until every frame,
        // the close included, was consumed).
        do {
            let extra = try channel.receive(into: buffer, timeout: limit)
            throw CommandFailure.failure("bench-peer stream-sink: \(extra) bytes more than the \(count * options.size) expected")
        } catch let error as ChannelError where error == .peerClosed {
            // the end
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw .failure("bench-peer stream-sink waiting for the close: \(error)")
        }
        guard received == count * options.size else {
            throw .failure("bench-peer stream-sink: received \(received) bytes, expected \(count * options.size)")
        }
        let rate = count > 1 && seconds > 0 ? Double((count - 1) * options.size) / seconds : 0
        return .object(["ok": true, "bytes_per_s": .double(rate.rounded()), "bytes": .int(Int64(received))])
    }
}

extension PingPongCommand.WaitArgument {
    var strategy: WaitStrategy {
        switch self {
        case .spin: .spin
        case .block: .block
        case .adaptive: .adaptive
        }
    }
}

/// p50 ... max of round trips, from an HdrHistogram (3 significant digits).
struct LatencySummary {
    var p50, p90, p99, p999, max: UInt64
    var mean: Double

    init(_ samples: [UInt64]) {
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        histogram.autoResize = true
        for sample in samples { _ = histogram.record(Swift.max(sample, 1)) }
        p50 = histogram.valueAtPercentile(50)
        p90 = histogram.valueAtPercentile(90)
        p99 = histogram.valueAtPercentile(99)
        p999 = histogram.valueAtPercentile(99.9)
        max = histogram.max
        mean = histogram.mean
    }

    init(json: JSONValue) {
        p50 = json["p50_ns"]?.uint64 ?? 0
        p90 = json["p90_ns"]?.uint64 ?? 0
        p99 = json["p99_ns"]?.uint64 ?? 0
        p999 = json["p999_ns"]?.uint64 ?? 0
        max = json["max_ns"]?.uint64 ?? 0
        mean = json["mean_ns"] == nil ? Double(p50) : number(json["mean_ns"])
    }

    var json: [String: JSONValue] {
        ["p50_ns": .uint(p50), "p90_ns": .uint(p90), "p99_ns": .uint(p99), "p999_ns": .uint(p999), "max_ns": .uint(max),
         "mean_ns": .double(rounded(mean))]
    }
}

/// One decimal place, for JSON numbers people read.
func rounded(_ value: Double) -> Double { (value * 10).rounded() / 10 }
