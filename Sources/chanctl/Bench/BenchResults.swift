import Altp2mSim

/// One latency case of `chanctl bench`: a SecureChannel configuration or a C
/// baseline, with one summary per round.
struct LatencyCase {
    enum Kind: String { case securechannel, baseline }
    let name: String
    let kind: Kind
    let mode: String
    let suite: String?
    let wait: String
    let enforcement: String?
    let size: Int
    /// For SecureChannel cases: the baseline case its p50 is compared with.
    let baseline: String?
    var rounds: [(summary: LatencySummary, msgsPerSecond: Double)] = []

    /// Medians over rounds, percentile by percentile.
    var summary: LatencySummary? {
        guard !rounds.isEmpty else { return nil }
        func med(_ key: (LatencySummary) -> UInt64) -> UInt64 { median(rounds.map { Double(key($0.summary)) }).map { UInt64($0) } ?? 0 }
        var s = rounds[0].summary
        s.p50 = med(\.p50); s.p90 = med(\.p90); s.p99 = med(\.p99); s.p999 = med(\.p999); s.max = med(\.max)
        s.mean = median(rounds.map(\.summary.mean)) ?? s.mean
        return s
    }

    var msgsPerSecond: Double { median(rounds.map(\.msgsPerSecond)) ?? 0 }
}

/// One-way streaming: a SecureChannel configuration or a C baseline, bytes per second per round.
struct ThroughputCase {
    let name: String
    let kind: LatencyCase.Kind
    let size: Int
    let baseline: String?
    var rates: [Double] = []
    var bytesPerSecond: Double { median(rates) ?? 0 }
}

/// Round trips with N channels open between the two domains.
struct ScaleCase {
    let channels: Int
    var p50: UInt64
    var setupMilliseconds: Double
}

/// A target the project publishes, checked against this run.
struct BenchTarget {
    let label: String
    let value: Double?
    let target: String
    let met: Bool?
}

/// Everything one `chanctl bench` run measured.
struct BenchResults {
    var machine: MachineInfo
    var quick: Bool
    var latency: [LatencyCase] = []
    var throughput: [ThroughputCase] = []
    var scale: [ScaleCase] = []
    var durationSeconds: Double = 0

    func latencyCase(_ name: String) -> LatencyCase? { latency.first { $0.name == name } }

    func ratio(of c: LatencyCase) -> Double? {
        guard let base = c.baseline, let b = latencyCase(base)?.summary?.p50, b > 0, let p = c.summary?.p50 else { return nil }
        return Double(p) / Double(b)
    }

    func ratio(of t: ThroughputCase) -> Double? {
        guard let base = t.baseline, let b = throughput.first(where: { $0.name == base }), b.bytesPerSecond > 0 else { return nil }
        return t.bytesPerSecond / b.bytesPerSecond
    }

    // MARK: Targets

    /// The published targets, each with this run's value (nil when its cases did not run).
    var targets: [BenchTarget] {
        var list: [BenchTarget] = []
        func p50(_ name: String) -> Double? { latencyCase(name)?.summary.map { Double($0.p50) } }
        for size in [64, 1024] {
            for variant in BenchRun.variantsForTargets {
                let name = BenchRun.channelCaseName(variant, wait: "spin", enforcement: "software", size: size)
                let ratio = latencyCase(name).flatMap { self.ratio(of: $0) }
                let limit = variant.encrypted ? 1.15 : 1.3
                let against = variant.encrypted ? "C ring + \(variant.aeadName)" : "raw C ring"
                if latencyCase(name) != nil {
                    list.append(BenchTarget(label: "\(variant.label) \(sizeLabel(size)) round trip / \(against)", value: ratio,
                                            target: "≤ \(limit)", met: ratio.map { $0 <= limit }))
                }
                let socket = BenchRun.socketCaseName("Unix stream socket", size: size)
                if let s = p50(socket), let c = p50(name), c > 0 {
                    list.append(BenchTarget(label: "Unix stream socket / \(variant.label), \(sizeLabel(size))", value: s / c,
                                            target: "≥ 10", met: s / c >= 10))
                }
            }
        }
        for t in throughput where t.kind == .securechannel && t.size == 16384 && t.name.contains("encrypted") {
            let r = ratio(of: t)
            list.append(BenchTarget(label: "\(t.name) / single-core AEAD", value: r, target: "≥ 0.80", met: r.map { $0 >= 0.8 }))
        }
        if let one = scale.first(where: { $0.channels == 1 }), let most = scale.max(by: { $0.channels < $1.channels }),
           most.channels > 1, one.p50 > 0 {
            let r = Double(most.p50) / Double(one.p50)
            list.append(BenchTarget(label: "p50 with \(most.channels) channels active / 1 channel", value: r, target: "≤ 1.5", met: r <= 1.5))
        }
        return list
    }

    // MARK: JSON

    var json: JSONValue {
        var cases: [JSONValue] = []
        for c in latency {
            guard let s = c.summary else { continue }
            var object = s.json
            object["mean_ns"] = nil
            object["name"] = .string(c.name)
            object["kind"] = .string(c.kind.rawValue)
            object["mode"] = .string(c.mode)
            object["suite"] = c.suite.map(JSONValue.string) ?? .null
            object["wait"] = .string(c.wait)
            object["enforcement"] = c.enforcement.map(JSONValue.string) ?? .null
            object["size"] = .int(Int64(c.size))
            object["msgs_per_s"] = .double(c.msgsPerSecond.rounded())
            object["rounds"] = .int(Int64(c.rounds.count))
            if c.kind == .securechannel {
                object["baseline"] = c.baseline.map(JSONValue.string) ?? .null
                object["ratio"] = ratio(of: c).map { .double(($0 * 1000).rounded() / 1000) } ?? .null
            }
            cases.append(.object(object))
        }
        let throughputJSON: [JSONValue] = throughput.map { t in
            .object(["name": .string(t.name), "kind": .string(t.kind.rawValue), "size": .int(Int64(t.size)),
                     "bytes_per_s": .double(t.bytesPerSecond.rounded()),
                     "baseline": t.baseline.map(JSONValue.string) ?? .null,
                     "ratio": ratio(of: t).map { .double(($0 * 1000).rounded() / 1000) } ?? .null])
        }
        let scaleJSON: [JSONValue] = scale.map { s in
            .object(["channels": .int(Int64(s.channels)), "p50_ns": .uint(s.p50), "setup_ms": .double(rounded(s.setupMilliseconds))])
        }
        let targetJSON: [JSONValue] = targets.map { t in
            .object(["target": .string(t.label + " " + t.target), "value": t.value.map { .double(($0 * 100).rounded() / 100) } ?? .null,
                     "met": t.met.map(JSONValue.bool) ?? .null])
        }
        return .object(["machine": machine.json, "quick": .bool(quick), "cases": .array(cases), "throughput": .array(throughputJSON),
                        "scale": .array(scaleJSON), "targets": .array(targetJSON),
                        "duration_s": .double(rounded(durationSeconds))])
    }

    // MARK: Markdown

    var markdown: String {
        var lines: [String] = []
        lines.append("Measured by `chanctl bench\(quick ? " --quick" : "")` on \(machine.date): \(machine.cpu), \(machine.cores) cores, "
                     + "Linux \(machine.kernel), Swift \(machine.swift), libsodium \(machine.libsodium). Two processes pinned to "
                     + "different cores (a guest process attached as each domain of the simulator; the C baselines fork). Each figure is the median "
                     + "over \(quick ? "1 round" : "interleaved rounds"); ratios compare p50s from this run.")
        lines.append("")
        lines.append("### Targets")
        lines.append("")
        lines.append("| Target | This run | Limit | Met |")
        lines.append("|---|---:|---|---|")
        for t in targets {
            lines.append("| \(t.label) | \(t.value.map { fixed($0, 2) } ?? "-") | \(t.target) | \(t.met.map { $0 ? "yes" : "**no**" } ?? "-") |")
        }
        lines.append("")
        lines.append("### Round-trip latency")
        lines.append("")
        lines.append("| Case | p50 | p90 | p99 | p99.9 | max | round trips/s | Baseline | Ratio |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---|---:|")
        for c in latency {
            guard let s = c.summary else { continue }
            let r = ratio(of: c).map { fixed($0, 2) } ?? ""
            lines.append("| \(c.name) | \(formatNanoseconds(s.p50)) | \(formatNanoseconds(s.p90)) | \(formatNanoseconds(s.p99)) | "
                         + "\(formatNanoseconds(s.p999)) | \(formatNanoseconds(s.max)) | \(Int(c.msgsPerSecond)) | \(c.baseline ?? "") | \(r) |")
        }
        if !throughput.isEmpty {
            lines.append("")
            lines.append("### One-way throughput")
            lines.append("")
            lines.append("| Case | MB/s | Baseline | Ratio |")
            lines.append("|---|---:|---|---:|")
            for t in throughput {
                lines.append("| \(t.name) | \(Int(t.bytesPerSecond / 1e6)) | \(t.baseline ?? "") | \(ratio(of: t).map { fixed($0, 2) } ?? "") |")
            }
        }
        if !scale.isEmpty {
            lines.append("")
            lines.append("### Many channels between two domains")
            lines.append("")
            lines.append("| Channels | p50 round trip | Set-up (create + open all) |")
            lines.append("|---:|---:|---:|")
            for s in scale {
                lines.append("| \(s.channels) | \(formatNanoseconds(s.p50)) | \(formatMilliseconds(s.setupMilliseconds)) |")
            }
        }
        return lines.joined(separator: "\n")
    }
}

func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// `value` with exactly `digits` decimals.
func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = Int64((value * scale).rounded())
    let whole = scaled / Int64(scale), fraction = abs(scaled % Int64(scale))
    let fractionText = String(fraction)
    let sign = value < 0 && whole == 0 ? "-" : ""
    return digits == 0 ? "\(sign)\(whole)" : "\(sign)\(whole)." + String(repeating: "0", count: digits - fractionText.count) + fractionText
}
