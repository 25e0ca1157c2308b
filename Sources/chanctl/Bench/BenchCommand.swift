import ArgumentParser
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// `chanctl bench`: SecureChannel's latency, throughput and scaling beside C
/// baselines measured in the same run (see docs/BENCHMARKS.md).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark secure channels against C baselines in one run (latency, throughput, many channels).",
        discussion: """
            Starts a private simulator with two domains. Each SecureChannel case is a fresh \
            channel and two processes attached as the two domains, pinned to different CPUs: \
            encrypted (ChaCha20-Poly1305, and AES-256-GCM where the CPU has AES-NI) and \
            isolated; spin, block and adaptive waits; 64 B, 1 KiB and 16 KiB messages; \
            software and mprotect enforcement. The baselines are C, in the same run: one \
            shared cache line, a shared-memory ring (plain and with the same AEAD, spinning \
            and futex-woken), pipe, Unix stream and seqpacket sockets, TCP loopback. Then \
            one-way throughput at 64 B to 64 KiB against a C memcpy ring and single-core \
            AEAD, and round trips with 1, 16, 64 and 256 channels open at once. Prints the \
            tables (Markdown) and the published targets with this run's values.
            """)

    @Flag(help: "Fewer rounds and round trips, 64 MiB streams (under 3 minutes on two cores).")
    var quick = false

    @Option(name: .customLong("json"), help: ArgumentHelp("Write the results as one JSON object to this file.", valueName: "file"))
    var jsonFile: String?

    @Option(name: .customLong("markdown"), help: ArgumentHelp(
        "Write the tables to this file; in a file that has the lines <!-- chanctl bench: begin --> and <!-- chanctl bench: end -->, only what is between them is replaced.",
        valueName: "file"))
    var markdownFile: String?

    @Option(name: .customLong("plot"), help: ArgumentHelp("Write an SVG of the latency percentiles per case (log scale).", valueName: "file.svg"))
    var plotFile: String?

    @Option(help: ArgumentHelp("Run only the cases whose name contains this text (and their baselines).", valueName: "text"))
    var filter: String?

    @Option(name: .long, help: ArgumentHelp("Use the simulator running at this state directory instead of a private one.", valueName: "path"))
    var stateDir: String?

    func validate() throws {
        for (flag, path) in [("--json", jsonFile), ("--markdown", markdownFile), ("--plot", plotFile)] {
            guard let path else { continue }
            let directory = NSStringPath(path).directory
            guard access(directory, W_OK) == 0 else {
                throw ValidationError("bad \(flag) \(path): the directory \(directory) does not exist or is not writable")
            }
        }
    }

    func run() throws {
        let run = BenchRun(plan: BenchPlan(quick: quick, filter: filter), stateDir: stateDir) { line in
            var standardError = StandardError()
            print("chanctl bench: " + line, to: &standardError)
        }
        RunSignals.install { run.tearDown() }
        let results: BenchResults
        do {
            results = try run.execute()
        } catch {
            run.tearDown()
            throw error
        }
        run.tearDown()

        var markdown = results.markdown
        if let plotFile {
            try write(LatencyPlot(results: results).svg, to: plotFile)
            let link = markdownFile.map { Self.relativePath(plotFile, from: NSStringPath($0).directory) } ?? plotFile
            markdown = markdown.replacingFirst("### Targets", with: "![Round-trip latency percentiles per case](\(link))\n\n### Targets")
        }
        if let jsonFile { try write(results.json.serialized + "\n", to: jsonFile) }
        if let markdownFile { try write(Self.merge(markdown, into: readFile(markdownFile)), to: markdownFile) }
        print(markdown)
    }

    /// `path` as seen from `directory` when it lies inside it (as Markdown
    /// links resolve), else as given.
    static func relativePath(_ path: String, from directory: String) -> String {
        if NSStringPath(path).directory == directory { return NSStringPath(path).lastComponent }
        let prefix = directory + "/"
        return directory != "." && path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path
    }

    static let beginMarker = "<!-- chanctl bench: begin -->"
    static let endMarker = "<!-- chanctl bench: end -->"

    /// The new tables between the markers of `existing`, or the tables alone.
    static func merge(_ tables: String, into existing: String) -> String {
        guard let begin = existing.firstRange(of: beginMarker), let end = existing.firstRange(of: endMarker),
              begin.upperBound <= end.lowerBound else {
            return beginMarker + "\n" + tables + "\n" + endMarker + "\n"
        }
        return String(existing[..<begin.upperBound]) + "\n" + tables + "\n" + String(existing[end.lowerBound...])
    }

    private func write(_ text: String, to path: String) throws(CommandFailure) {
        let temporary = path + ".tmp\(getpid())"
        guard let file = fopen(temporary, "w") else {
            throw .failure("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        let written = fwrite(bytes, 1, bytes.count, file)
        fclose(file)
        guard written == bytes.count, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw .failure("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

extension String {
    /// The first occurrence of `target` (no Foundation here).
    func firstRange(of target: String) -> Range<String.Index>? {
        guard !target.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(target) { return index..<self.index(index, offsetBy: target.count) }
            index = self.index(after: index)
        }
        return nil
    }

    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        return String(self[..<range.lowerBound]) + replacement + String(self[range.upperBound...])
    }
}

// MARK: Signals

/// SIGINT/SIGTERM/SIGHUP during an orchestrated run (`pingpong`, `bench`):
/// undo what the run started (kill its children by pid, stop its private
/// simulator, remove its files), then exit 128+signal.
enum RunSignals {
    nonisolated(unsafe) static var tearDown: (() -> Void)?

    static func install(_ body: @escaping () -> Void) {
        tearDown = body
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            Glibc.signal(signal) { number in
                // Not async-signal-safe in general; acceptable for a tool
                // that is about to exit anyway.
                RunSignals.tearDown?()
                _exit(128 + number)
            }
        }
    }
}
