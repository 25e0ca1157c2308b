import Altp2mSim
import CPlatform
import ChannelBenchBaseline
import ChannelCrypto
#if canImport(Glibc)
import Glibc
#endif

/// One `chanctl bench` run: a private simulator with two domains, then every
/// case of the plan, and a teardown that leaves nothing behind.
///
/// A SecureChannel case is a fresh channel between the two domains and two
/// `chanctl bench-peer` processes attached as those domains, pinned to
/// different CPUs; the C baselines run in this process and fork their other
/// side. Cases run in interleaved rounds, baselines next to the cases
/// compared with them, so that a slow phase of the machine hits both.
final class BenchRun: @unchecked Sendable {
    // @unchecked: used by the command's thread; the signal handler only
    // reads the pids and paths.
    let plan: BenchPlan
    private let chanctl = ChildProcess.ownExecutable()
    private(set) var workDir: String?
    private(set) var simulator: RunSimulator?
    private(set) var peerPIDs: [pid_t] = []
    private var stateDir: String { simulator?.stateDir ?? "" }
    private let pingCPU: Int32 = 0
    private let echoCPU: Int32 = cplatform_available_cpus() > 1 ? 1 : 0
    private var hostKey = ""
    private var domains: [String] = []
    private var liveChannels: [String] = []
    private var serial = 0
    private var tornDown = false
    /// The policy's cap before this run raised it (restored on a shared simulator).
    private var previousChannelLimit: Int?
    private let explicitStateDir: String?
    private let progress: (String) -> Void

    init(plan: BenchPlan, stateDir: String?, progress: @escaping (String) -> Void) {
        self.plan = plan
        self.explicitStateDir = stateDir
        self.progress = progress
    }

    // MARK: Names

    static var variantsForTargets: [ChannelVariant] { BenchPlan(quick: true, filter: nil).variants }

    static func channelCaseName(_ v: ChannelVariant, wait: String, enforcement: String, size: Int) -> String {
        "SecureChannel \(v.label), \(wait), \(enforcement), \(sizeLabel(size))"
    }

    static func ringCaseName(_ v: ChannelVariant, wait: String, size: Int) -> String {
        v.encrypted ? "C ring + \(v.aeadName), \(wait), \(sizeLabel(size))" : "C ring, plain, \(wait), \(sizeLabel(size))"
    }

    static func socketCaseName(_ kind: String, size: Int) -> String { "C \(kind), \(sizeLabel(size))" }

    static let cacheLineCaseName = "C one shared cache line"

    // MARK: Running

    func execute() throws(CommandFailure) -> BenchResults {
        let started = DaemonLauncher.monotonicSeconds()
        var results = BenchResults(machine: .current(), quick: plan.quick)
        try setUp()
        var runners = latencyCases()
        results.latency = runners.map(\.0)
        let total = runners.count * plan.rounds
        var done = 0
        for round in 1...plan.rounds {
            for index in runners.indices {
                done += 1
                let (benchCase, run) = runners[index]
                let measured = try run()
                runners[index].0.rounds.append(measured)
                results.latency[index].rounds.append(measured)
                progress("[\(done)/\(total)] round \(round): \(benchCase.name): p50 \(formatNanoseconds(measured.summary.p50)), "
                         + "p99 \(formatNanoseconds(measured.summary.p99))")
            }
        }
        results.throughput = try throughputCases()
        results.scale = try scaleCases()
        results.durationSeconds = DaemonLauncher.monotonicSeconds() - started
        return results
    }

    private func setUp() throws(CommandFailure) {
        let work = try ChildProcess.makeTemporaryDirectory("chanctl-bench")
        workDir = work
        let simulator = RunSimulator(workDir: work, explicitStateDir: explicitStateDir)
        self.simulator = simulator
        try simulator.start()
        progress("simulator at \(simulator.stateDir)\(simulator.ownsSimulator ? " (private)" : "")")
        let tag = "bench\(getpid())"
        hostKey = try simulator.chanctlJSON(["keys", "show"])["public_key"]?.string ?? ""
        guard hostKey.count == 64 else { throw .failure("chanctl keys show printed no public_key") }
        for side in ["a", "b"] {
            let name = "\(tag)-\(side)"
            _ = try simulator.chanctlJSON(["domain", "create", name, "--altp2m", "external", "--vcpus", "2", "--memory-mib", "64"])
            domains.append(name)
            let key = Curve25519.KeyAgreement.PrivateKey()
            do { try key.write(toKeyFile: keyPath(name)) } catch { throw .failure("cannot write \(keyPath(name)): \(error)") }
            _ = try simulator.chanctlJSON(["keys", "register", name, key.publicKey.hex])
        }
        _ = try simulator.chanctlJSON(["policy", "allow", domains[0], domains[1], "--max-pages", String(plan.streamPages),
                                       "--modes", "encrypted,isolated"])
        // The scale cases keep their channels on a private simulator (see
        // scaleCases), so the cap must hold all of them at once.
        let needed = plan.scaleChannels.reduce(0, +) + 1
        let limit = Int(try simulator.chanctlJSON(["policy", "show"])["max_channels_per_domain"]?.int64 ?? 16)
        if limit < needed {
            _ = try simulator.chanctlJSON(["policy", "limit", "--max-channels-per-domain", String(needed)])
            previousChannelLimit = limit
        }
    }

    private func keyPath(_ domain: String) -> String { (workDir ?? "/tmp") + "/\(domain).key" }

    // MARK: Latency

    typealias Measurement = (summary: LatencySummary, msgsPerSecond: Double)

    /// Every latency case of the plan with the closure that measures it once.
    private func latencyCases() -> [(LatencyCase, () throws(CommandFailure) -> Measurement)] {
        var list: [(LatencyCase, () throws(CommandFailure) -> Measurement)] = []
        func add(_ c: LatencyCase, _ run: @escaping () throws(CommandFailure) -> Measurement) { list.append((c, run)) }
        let (ping, echo) = (pingCPU, echoCPU)
        let warmupShare = 10
        add(LatencyCase(name: Self.cacheLineCaseName, kind: .baseline, mode: "plain", suite: nil, wait: "spin", enforcement: nil,
                        size: 8, baseline: nil)) { () throws(CommandFailure) in
            let n = self.plan.count(wait: "spin", enforcement: nil, size: 64)
            return try Self.baseline(Self.cacheLineCaseName, count: n) { w, c, s in baseline_cacheline_pingpong(ping, echo, w, c, s) }
        }
        let variants = plan.variants
        let ringBytes = plan.latencyRingBytes
        for size in plan.sizes {
            // The baselines of this size: rings (spin and futex) per AEAD, then the kernel's IPC.
            for variant in variants {
                for wait in ["spin", "futex"] {
                    let name = Self.ringCaseName(variant, wait: wait, size: size)
                    let aead = Self.aead(variant)
                    let cWait = wait == "spin" ? BASELINE_WAIT_SPIN : BASELINE_WAIT_FUTEX
                    add(LatencyCase(name: name, kind: .baseline, mode: variant.encrypted ? "encrypted" : "plain",
                                    suite: variant.encrypted ? variant.suite.rawValue : nil, wait: wait, enforcement: nil,
                                    size: size, baseline: nil)) { () throws(CommandFailure) in
                        let n = self.plan.count(wait: wait, enforcement: nil, size: size)
                        return try Self.baseline(name, count: n) { w, c, s in
                            baseline_ring_pingpong(ping, echo, size, aead, cWait, ringBytes, w, c, s)
                        }
                    }
                }
            }
            let sockets: [(String, (Int32, Int32, Int, Int, Int, UnsafeMutablePointer<UInt64>?) -> Int32)] = [
                ("pipe", baseline_pipe_pingpong), ("Unix stream socket", baseline_unix_stream_pingpong),
                ("Unix seqpacket socket", baseline_unix_seqpacket_pingpong), ("TCP loopback (TCP_NODELAY)", baseline_tcp_loopback_pingpong),
            ]
            for (kind, function) in sockets {
                let name = Self.socketCaseName(kind, size: size)
                add(LatencyCase(name: name, kind: .baseline, mode: "plain", suite: nil, wait: "kernel", enforcement: nil,
                                size: size, baseline: nil)) { () throws(CommandFailure) in
                    let n = self.plan.count(wait: "kernel", enforcement: nil, size: size)
                    return try Self.baseline(name, count: n) { w, c, s in function(ping, echo, size, w, c, s) }
                }
            }
            // The channel cases of this size.
            for enforcement in plan.enforcements {
                for variant in variants {
                    for wait in plan.waits {
                        let name = Self.channelCaseName(variant, wait: wait.rawValue, enforcement: enforcement, size: size)
                        let baseline = Self.ringCaseName(variant, wait: wait == .block ? "futex" : "spin", size: size)
                        add(LatencyCase(name: name, kind: .securechannel, mode: variant.mode.rawValue, suite: variant.suite.rawValue,
                                        wait: wait.rawValue, enforcement: enforcement, size: size, baseline: baseline))
                        { () throws(CommandFailure) in
                            let n = self.plan.count(wait: wait.rawValue, enforcement: enforcement, size: size)
                            let channel = try self.createChannel(variant, pages: self.plan.latencyPages)
                            defer { self.destroyChannels([channel]) }
                            let out = try self.runPair(roles: ("ping", "echo"), channels: [channel], wait: wait.rawValue,
                                                       enforcement: enforcement, size: size, count: n, warmup: n / warmupShare)
                            return (LatencySummary(json: out), number(out["msgs_per_s"]))
                        }
                    }
                }
            }
        }
        // With --filter: the matching cases and the baselines they are compared with.
        let chosen = Set(list.map(\.0).filter { plan.includes($0.name) }.flatMap { [$0.name, $0.baseline].compactMap { $0 } })
        return list.filter { chosen.contains($0.0.name) }
    }

    /// Runs one C baseline: a tenth of `count` untimed, then `count` timed.
    private static func baseline(_ name: String, count: Int,
                                 _ body: (Int, Int, UnsafeMutablePointer<UInt64>) -> Int32) throws(CommandFailure) -> Measurement {
        var samples = [UInt64](repeating: 0, count: count)
        let rc = samples.withUnsafeMutableBufferPointer { body(count / 10, count, $0.baseAddress!) }
        if rc != 0 { throw .failure("baseline \(name) failed: \(String(cString: strerror(errno)))") }
        // Round trips per second while timed: the samples are back to back.
        let sum = samples.reduce(0, &+)
        return (LatencySummary(samples), sum > 0 ? Double(count) / (Double(sum) / 1e9) : 0)
    }

    private static func aead(_ v: ChannelVariant) -> baseline_aead {
        !v.encrypted ? BASELINE_AEAD_NONE : v.suite == .aesgcm ? BASELINE_AEAD_AESGCM : BASELINE_AEAD_CHACHAPOLY
    }

    // MARK: Throughput

    private func throughputCases() throws(CommandFailure) -> [ThroughputCase] {
        var cases: [ThroughputCase] = []
        let bytes = plan.streamBytes
        for size in plan.streamSizes {
            let memcpyName = "C memcpy ring, \(sizeLabel(size))"
            var memcpyRing = ThroughputCase(name: memcpyName, kind: .baseline, size: size, baseline: nil)
            var raw: [String: ThroughputCase] = [:]
            var variants: [(ChannelVariant, ThroughputCase)] = []
            for variant in plan.variants {
                let base: String
                if variant.encrypted {
                    base = "C single-core \(variant.aeadName) seal, \(sizeLabel(size))"
                    raw[base] = ThroughputCase(name: base, kind: .baseline, size: size, baseline: nil)
                } else {
                    base = memcpyName
                }
                let name = "SecureChannel \(variant.label), \(sizeLabel(size))"
                if plan.includes(name) { variants.append((variant, ThroughputCase(name: name, kind: .securechannel, size: size, baseline: base))) }
            }
            if variants.isEmpty { continue }
            for _ in 1...plan.rounds {
                let rate = baseline_ring_stream(echoCPU, pingCPU, size, BASELINE_AEAD_NONE, plan.streamRingBytes, bytes)
                if rate < 0 { throw .failure("baseline \(memcpyName) failed: \(String(cString: strerror(errno)))") }
                memcpyRing.rates.append(rate)
                for index in variants.indices {
                    let (variant, _) = variants[index]
                    if variant.encrypted {
                        let base = variants[index].1.baseline!
                        let r = baseline_aead_throughput(size, Self.aead(variant), bytes)
                        if r < 0 { throw .failure("baseline \(base) failed") }
                        raw[base]!.rates.append(r)
                    }
                    let name = try createChannel(variant, pages: plan.streamPages)
                    defer { destroyChannels([name]) }
                    let out = try runPair(roles: ("stream-sink", "stream-send"), channels: [name], wait: "spin", enforcement: "software",
                                          size: size, count: 1, warmup: 0, bytes: bytes)
                    variants[index].1.rates.append(number(out["bytes_per_s"]))
                    progress("throughput \(variants[index].1.name): \(Int(number(out["bytes_per_s"]) / 1e6)) MB/s")
                }
            }
            cases.append(memcpyRing)
            cases += raw.values.filter { !$0.rates.isEmpty }.sorted { $0.name < $1.name }
            cases += variants.map(\.1)
        }
        return cases
    }

    // MARK: Scale

    private func scaleCases() throws(CommandFailure) -> [ScaleCase] {
        guard plan.includes("scale") || plan.filter == nil else { return [] }
        var cases: [ScaleCase] = []
        let variant = ChannelVariant(mode: .encrypted, suite: .chachapoly)
        for n in plan.scaleChannels {
            let t = DaemonLauncher.monotonicSeconds()
            var names: [String] = []
            do {
                for _ in 0..<n { names.append(try createChannel(variant, pages: plan.scalePages)) }
            } catch {
                destroyChannels(names)
                throw error
            }
            let createMs = (DaemonLauncher.monotonicSeconds() - t) * 1000
            // Every channel of a domain shares its channel view, and dropping
            // any remapped gfn resets the whole view (Xen's altp2m), so each
            // destroy re-applies every other channel: tearing 256 down one by
            // one costs O(n^2). A private simulator is stopped at the end
            // anyway; only on a shared one are they destroyed here.
            defer { if !(simulator?.ownsSimulator ?? false) { destroyChannels(names) } }
            let out = try runPair(roles: ("ping", "echo"), channels: names, wait: "spin", enforcement: "software", size: 64,
                                  count: plan.scaleCount(channels: n), warmup: max(n, plan.scaleCount(channels: n) / 10))
            let p50 = out["p50_ns"]?.uint64 ?? 0
            cases.append(ScaleCase(channels: n, p50: p50, setupMilliseconds: createMs + number(out["open_ms"])))
            progress("scale \(n) channels: p50 \(formatNanoseconds(p50)), set-up \(formatMilliseconds(createMs + number(out["open_ms"])))")
        }
        return cases
    }

    // MARK: Channels and peers

    private func createChannel(_ v: ChannelVariant, pages: Int) throws(CommandFailure) -> String {
        guard let simulator else { throw .failure("no simulator") }
        serial += 1
        let name = "\(domains[0])-c\(serial)"
        _ = try simulator.chanctlJSON(["channel", "create", name, "--between", domains[0], domains[1], "--pages", String(pages),
                                       "--suite", v.suite.rawValue, "--mode", v.mode.rawValue])
        liveChannels.append(name)
        return name
    }

    private func destroyChannels(_ names: [String]) {
        for name in names {
            _ = try? simulator?.chanctlJSON(["channel", "destroy", name])
            liveChannels.removeAll { $0 == name }
        }
    }

    /// Starts the passive side (domain b, the echo CPU), then the measuring
    /// side (domain a, the ping CPU); returns the measuring side's JSON.
    private func runPair(roles: (measuring: String, passive: String), channels: [String], wait: String, enforcement: String,
                         size: Int, count: Int, warmup: Int, bytes: Int = 0) throws(CommandFailure) -> JSONValue {
        guard let workDir else { throw .failure("no work directory") }
        func arguments(_ role: String, _ domain: String, _ cpu: Int32) -> [String] {
            var list = ["bench-peer", role, "--domain", domain, "--key", keyPath(domain), "--host-key", hostKey,
                        "--state-dir", stateDir, "--channels", channels.joined(separator: ","), "--wait", wait,
                        "--enforcement", enforcement, "--cpu", String(cpu), "--size", String(size),
                        "--count", String(count), "--warmup", String(warmup), "--timeout", "20"]
            if bytes > 0 { list += ["--bytes", String(bytes)] }
            return list
        }
        let passive = try ChildProcess.spawn(chanctl, arguments(roles.passive, domains[1], echoCPU),
                                             stdout: workDir + "/passive.out", stderr: workDir + "/passive.err")
        peerPIDs.append(passive)
        let measuring: pid_t
        do {
            measuring = try ChildProcess.spawn(chanctl, arguments(roles.measuring, domains[0], pingCPU),
                                               stdout: workDir + "/measuring.out", stderr: workDir + "/measuring.err")
        } catch {
            stopPeers()
            throw error
        }
        peerPIDs.append(measuring)
        let status = ChildProcess.waitFor(measuring, seconds: 300)
        if status == nil { kill(measuring, SIGKILL); _ = ChildProcess.waitFor(measuring, seconds: 5) }
        var passiveStatus = ChildProcess.waitFor(passive, seconds: 10)
        if passiveStatus == nil { kill(passive, SIGKILL); passiveStatus = ChildProcess.waitFor(passive, seconds: 5) }
        peerPIDs.removeAll()
        let text = readFile(workDir + "/measuring.out").trimmingCharacters(in: " \n\r\t")
        let what = "bench-peer \(roles.measuring) on \(channels.first ?? "")\(channels.count > 1 ? " and \(channels.count - 1) more" : "")"
        guard status == 0, let result = try? JSONValue.parse(text), result["ok"]?.bool == true else {
            let why = status == nil ? "did not finish within 300 s" : "exited with status \(status!)"
            let log = ChildProcess.lastLines(readFile(workDir + "/measuring.err") + readFile(workDir + "/passive.err"))
            throw .failure("\(what) \(why)" + (log.isEmpty ? "" : ":\n" + log))
        }
        // The passive side must end cleanly too: a peer that crashed left
        // its channel without a close, and the case's numbers with it.
        guard passiveStatus == 0 else {
            let log = ChildProcess.lastLines(readFile(workDir + "/passive.err"))
            throw .failure("\(what): the \(roles.passive) side exited with status \(passiveStatus.map(String.init) ?? "unknown")"
                           + (log.isEmpty ? "" : ":\n" + log))
        }
        return result
    }

    private func stopPeers() {
        ChildProcess.stop(peerPIDs)
        peerPIDs = []
    }

    // MARK: Teardown

    /// Stops the peers, destroys what this run created on a shared simulator,
    /// stops a private one, removes the temporary files.
    func tearDown() {
        if tornDown { return }
        tornDown = true
        stopPeers()
        if let simulator, simulator.ownsSimulator {
            simulator.stop()
        } else if let simulator, !simulator.stateDir.isEmpty {
            destroyChannels(liveChannels)
            for name in domains { _ = try? simulator.chanctlJSON(["domain", "destroy", name]) }
            if domains.count == 2 { _ = try? simulator.chanctlJSON(["policy", "deny", domains[0], domains[1]]) }
            if let previousChannelLimit {
                _ = try? simulator.chanctlJSON(["policy", "limit", "--max-channels-per-domain", String(previousChannelLimit)])
            }
        }
        if let workDir { removeTree(workDir) }
    }
}

/// A JSON number as a Double (0 when absent).
func number(_ value: JSONValue?) -> Double {
    switch value {
    case .double(let d)?: d
    case .int(let i)?: Double(i)
    case .uint(let u)?: Double(u)
    default: 0
    }
}
