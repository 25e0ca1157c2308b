import Altp2m
import ArgumentParser
import Histogram
import Logging
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// `guest-agent ping`: round-trip latency over a channel to an echo agent.
struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure round trips over a channel to a peer running guest-agent run (echo).",
        discussion: """
            Opens the channel, sends COUNT messages of SIZE bytes one at a time and \
            times each echo with the monotonic clock. The first round trip (right \
            after the handshake) is reported on its own and not counted. Prints \
            p50, p90, p99, p99.9 and max (HdrHistogram, 3 significant digits) and an \
            ASCII histogram; --json prints one object instead.
            """)

    @OptionGroup var arguments: AgentArguments

    @Option(help: "The channel's name (chanctl channel create NAME ...).")
    var channel: String

    @Option(help: "Number of timed round trips.")
    var count: Int = 10_000

    @Option(help: "Message size in bytes.")
    var size: Int = 64

    @Option(help: "How to wait for the echo: spin, block or adaptive.")
    var wait: WaitArgument = .spin

    @Option(help: "Seconds to wait for the descriptor, the peer's handshake and each echo.")
    var timeout: Double = 10

    @Flag(help: "Print one JSON object.")
    var json = false

    @Option(help: ArgumentHelp("Also write every round trip (index,rtt_ns) to this CSV file.", valueName: "file"))
    var csv: String?

    @Option(help: ArgumentHelp("When the peer restarts, closes or the descriptors are re-issued mid-run, open the channel again, waiting up to this many seconds for the peer, and go on (the round trip in flight is repeated); 0 ends the run instead.", valueName: "seconds"))
    var reconnect: Double = 0

    func validate() throws {
        guard (1...100_000_000).contains(count) else { throw ValidationError("bad --count \(count): expected 1...100000000") }
        guard (1...(1 << 20)).contains(size) else { throw ValidationError("bad --size \(size): expected 1...1048576 bytes") }
        guard timeout > 0, timeout <= 3600 else { throw ValidationError("bad --timeout \(timeout): expected seconds in (0, 3600]") }
        guard reconnect >= 0, reconnect <= 3600 else { throw ValidationError("bad --reconnect \(reconnect): expected seconds in [0, 3600]") }
    }

    func run() throws {
        let agent = try arguments.resolve()
        let log = agent.logger("guest-agent.ping")
        _ = try agent.hostPublicKey()
        _ = try agent.agentKey()
        var csvFile: UnsafeMutablePointer<FILE>? = nil
        if let csv {
            guard let file = fopen(csv, "w") else {
                throw AgentFailure.failure("cannot write --csv \(csv): \(String(cString: strerror(errno))); check the directory")
            }
            csvFile = file
        }
        defer { if let csvFile { fclose(csvFile) } }

        // A stop signal ends the run politely (the channel is closed and the
        // agent detaches) instead of killing it, which would crash the domain.
        AgentSignals.install(hangupReloads: false)
        try agent.startFrameFlow(log: log)
        let platform = try agent.platform(vcpu: 0)
        let openStart = monotonicNanoseconds()
        let ch = try openChannel(channel, options: agent, platform: platform, wait: wait.strategy, timeout: timeout)
        let openNanoseconds = monotonicNanoseconds() - openStart
        log.debug("channel open", metadata: ["open_ns": "\(openNanoseconds)"])
        guard size <= ch.maximumMessageBytes else {
            try? ch.close(timeout: .seconds(1))
            throw AgentFailure.failure("--size \(size) is larger than one message on channel \(channel) (at most \(ch.maximumMessageBytes) bytes); use a smaller --size or create the channel with more --pages")
        }

        let link = PingLink(ch, name: channel, agent: agent, platform: platform, wait: wait.strategy,
                            reconnect: reconnect, timeout: timeout, size: size, count: count, log: log)
        let first = try link.roundTrip()
        guard link.echoed else {
            throw AgentFailure.failure("the echo on \(channel) changed the message; the peer is not an echo agent")
        }
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        histogram.autoResize = true
        var samples = [UInt64]()
        samples.reserveCapacity(count)
        let progress = !json && isatty(1) == 1
        let step = max(1, count / 50)
        for i in 0..<count {
            if AgentSignals.stopRequested {
                try? link.channel.close(timeout: .seconds(1))
                throw AgentFailure.failure("stopped by a signal after \(link.completed) of \(count) round trips; the channel was closed")
            }
            let rtt = try link.roundTrip()
            samples.append(rtt)
            link.completed = i + 1
            if progress, i % step == 0 { drawProgress(i, count) }
        }
        if progress { drawProgress(count, count); _ = write(1, "\n", 1) }
        for rtt in samples { _ = histogram.record(rtt) }
        if let csvFile {
            fputs("index,rtt_ns\n", csvFile)
            for (i, rtt) in samples.enumerated() { fputs("\(i),\(rtt)\n", csvFile) }
        }
        do {
            try link.channel.close(timeout: .seconds(timeout))
        } catch {
            log.warning("closing \(channel): \(error)")
        }

        let stats = LatencyStats(histogram)
        let mode = "\(link.channel.descriptor.mode)", suite = "\(link.channel.descriptor.suite)"
        if json {
            print(jsonObject([
                ("ok", .bool(true)), ("channel", .string(channel)), ("count", .int(Int64(count))),
                ("size", .int(Int64(size))), ("wait", .string(wait.rawValue)),
                ("mode", .string(mode)), ("suite", .string(suite)),
                ("p50_ns", .uint(stats.p50)), ("p90_ns", .uint(stats.p90)), ("p99_ns", .uint(stats.p99)),
                ("p999_ns", .uint(stats.p999)), ("max_ns", .uint(stats.max)), ("min_ns", .uint(stats.min)),
                ("mean_ns", .double((histogram.mean * 10).rounded() / 10)),
                ("open_ns", .uint(openNanoseconds)), ("first_round_trip_ns", .uint(first)),
                ("reconnects", .int(Int64(link.reconnects))),
                // As attached, read back from the platform: "hardware" on Xen.
                ("enforcement", .string((platform as? SimPlatformInfo)?.enforcementName ?? "hardware")),
            ]))
        } else {
            print("channel \(channel): \(count) round trips of \(size) bytes (\(mode), \(suite), wait \(wait.rawValue))"
                  + (link.reconnects > 0 ? ", \(link.reconnects) reconnect(s)" : ""))
            print(stats.table(extra: [("open + handshake", openNanoseconds), ("first round trip", first)]))
            print("")
            print(asciiHistogram(samples))
        }
    }

    private func drawProgress(_ done: Int, _ total: Int) {
        let width = 40
        let filled = total == 0 ? width : done * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        let text = "\r[\(bar)] \(done * 100 / max(1, total))%"
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }
}

/// The percentiles this tool reports.
struct LatencyStats {
    var p50, p90, p99, p999, max, min: UInt64

    init(_ h: Histogram<UInt64>) {
        p50 = h.valueAtPercentile(50)
        p90 = h.valueAtPercentile(90)
        p99 = h.valueAtPercentile(99)
        p999 = h.valueAtPercentile(99.9)
        max = h.max
        min = h.min
    }

    func table(extra: [(String, UInt64)] = []) -> String {
        var rows: [(String, UInt64)] = [("p50", p50), ("p90", p90), ("p99", p99), ("p99.9", p999), ("max", max)]
        rows += extra
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { "  " + $0.0 + String(repeating: " ", count: width - $0.0.count) + "  " + formatNanoseconds($0.1) }
            .joined(separator: "\n")
    }
}

/// Power-of-two buckets from the smallest to the largest sample, one bar each.
func asciiHistogram(_ samples: [UInt64], width: Int = 40) -> String {
    guard let low = samples.min(), let high = samples.max() else { return "(no samples)" }
    var lowerBound: UInt64 = 1
    while lowerBound * 2 <= low { lowerBound *= 2 }
    var edges: [UInt64] = [lowerBound]
    while edges.last! <= high { edges.append(edges.last! * 2) }
    var counts = [Int](repeating: 0, count: edges.count - 1)
    for s in samples {
        var index = 0
        while index + 1 < edges.count - 1, s >= edges[index + 1] { index += 1 }
        counts[index] += 1
    }
    let most = counts.max() ?? 1
    let labels = (0..<counts.count).map { "\(formatNanoseconds(edges[$0])) - \(formatNanoseconds(edges[$0 + 1]))" }
    let labelWidth = labels.map(\.count).max() ?? 0
    var lines = ["round trips (log2 buckets):"]
    for (i, c) in counts.enumerated() {
        let bar = c == 0 ? 0 : Swift.max(1, c * width / Swift.max(1, most))
        lines.append("  " + String(repeating: " ", count: labelWidth - labels[i].count) + labels[i] + " |"
                     + String(repeating: "#", count: bar) + String(repeating: " ", count: width - bar) + "| \(c)")
    }
    return lines.joined(separator: "\n")
}
