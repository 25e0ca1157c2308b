import ChannelCrypto
import SecureChannel

/// What `chanctl bench` measures, and how much of it: the case matrix and the
/// counts of a full or a `--quick` run.
struct BenchPlan {
    let quick: Bool
    /// Interleaved rounds; each figure is the median over rounds.
    let rounds: Int
    let sizes = [64, 1024, 16384]
    let waits: [PingPongCommand.WaitArgument] = [.spin, .block, .adaptive]
    let enforcements = ["software", "mprotect"]
    let streamSizes = [64, 1024, 16384, 65536]
    /// Bytes streamed per throughput case (the full run streams 1 GiB).
    let streamBytes: Int
    let scaleChannels = [1, 16, 64, 256]
    /// Channel size of the latency cases: 32 data pages, two 64 KiB rings,
    /// room for 16 KiB messages; the C rings get the same 64 KiB.
    let latencyPages = 33
    let latencyRingBytes = 65_536
    /// Throughput cases: 256 data pages, two 512 KiB rings.
    let streamPages = 257
    let streamRingBytes = 524_288
    /// Scale cases: the smallest channel that carries a 64-byte message easily.
    let scalePages = 4
    let filter: String?

    init(quick: Bool, filter: String?) {
        self.quick = quick
        self.filter = filter
        rounds = quick ? 1 : 5
        streamBytes = quick ? 64 << 20 : 1 << 30
    }

    /// Timed round trips for a case (a tenth more run untimed first).
    func count(wait: String, enforcement: String?, size: Int) -> Int {
        var n = quick ? 5_000 : 50_000
        if wait == "block" || wait == "futex" || wait == "kernel" { n /= 2 }
        if enforcement == "mprotect" { n = quick ? 300 : 2_000 }
        if size >= 16384 { n /= 4 }
        return max(n, 100)
    }

    func scaleCount(channels: Int) -> Int { quick ? 5_000 : 50_000 }

    func includes(_ name: String) -> Bool {
        guard let filter else { return true }
        return name.lowercased().contains(filter.lowercased())
    }

    /// The channel variants: encrypted with each suite this CPU runs, and isolated.
    var variants: [ChannelVariant] {
        var list = [ChannelVariant(mode: .encrypted, suite: .chachapoly)]
        if AESGCM.isAvailable { list.append(ChannelVariant(mode: .encrypted, suite: .aesgcm)) }
        list.append(ChannelVariant(mode: .isolated, suite: .chachapoly))
        return list
    }
}

/// A channel's mode and suite, as `chanctl channel create` takes them.
struct ChannelVariant {
    let mode: PingPongCommand.ModeArgument
    let suite: PingPongCommand.SuiteArgument

    var encrypted: Bool { mode == .encrypted }
    /// The AEAD the matching C baseline applies.
    var aeadName: String { encrypted ? (suite == .aesgcm ? "AES-256-GCM" : "ChaCha20-Poly1305") : "plain" }
    var label: String { encrypted ? "encrypted \(aeadName)" : "isolated" }
}

func sizeLabel(_ size: Int) -> String { size >= 1024 ? "\(size / 1024) KiB" : "\(size) B" }
