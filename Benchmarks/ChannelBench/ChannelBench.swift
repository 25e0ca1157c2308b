// channel-bench: SecureChannel ping-pong latency beside C baselines measured
// in the same run, on the same two CPUs.
//
//   swift build -c release --product channel-bench && .build/release/channel-bench [--quick]
//
// Both ends run on threads pinned to different CPUs (the same cross-core
// cache traffic as two processes; the two-process figure comes from
// `chanctl pingpong`), in spin mode, on a real channel of the in-process
// simulator (software-enforced VMFUNC into the channel view around every
// ring operation). Cases run in interleaved rounds; each figure is the median
// over rounds of that round's percentile, and ratios compare medians.
import Altp2m
import BenchSupport
import CPlatform
import ChannelBenchBaseline
import ChannelCrypto
import Foundation
import SecureChannel
import Synchronization

struct Percentiles {
    var p50: Double, p90: Double, p99: Double, p999: Double, max: Double

    init(_ samples: [UInt64]) {
        let sorted = samples.sorted()
        func at(_ q: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]) }
        p50 = at(0.5); p90 = at(0.9); p99 = at(0.99); p999 = at(0.999); max = Double(sorted.last ?? 0)
    }
}

func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s[s.count / 2]
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("channel-bench: \(message)\n".utf8))
    exit(2)
}

/// One benchmark case: a name and a function that returns round-trip samples.
struct Case {
    let name: String
    let run: (_ warmup: Int, _ count: Int) -> [UInt64]
}

let cpus = cplatform_available_cpus()
let pingCPU: Int32 = 0
let echoCPU: Int32 = cpus > 1 ? 1 : 0

func baseline(_ name: String, _ body: @escaping (Int, Int, UnsafeMutablePointer<UInt64>) -> Int32) -> Case {
    Case(name: name) { warmup, count in
        var samples = [UInt64](repeating: 0, count: count)
        let rc = samples.withUnsafeMutableBufferPointer { body(warmup, count, $0.baseAddress!) }
        if rc != 0 { fail("baseline \(name) failed (errno \(errno))") }
        return samples
    }
}

/// A SecureChannel case: a fresh channel per round, echo on its own pinned thread.
func channelCase(_ name: String, mode: ChannelDescriptor.Mode, suite: ChannelDescriptor.CipherSuite, size: Int) -> Case {
    Case(name: name) { warmup, count in
        let world: InProcessChannelWorld
        do { world = try InProcessChannelWorld(mode: mode, suite: suite) } catch { fail("set-up of \(name): \(error)") }
        let total = warmup + count
        let echoDone = DispatchSemaphore(value: 0)
        let echo = Thread {
            _ = cplatform_pin_to_cpu(echoCPU)
            do {
                let channel = try world.openEnd(1, wait: .spin)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
                for _ in 0..<total {
                    let n = try channel.receive(into: buffer)
                    try channel.send(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                }
                buffer.deallocate()
            } catch {
                fail("echo side of \(name): \(error)")
            }
            echoDone.signal()
        }
        echo.start()
        _ = cplatform_pin_to_cpu(pingCPU)
        var samples = [UInt64](repeating: 0, count: count)
        do {
            let channel = try world.openEnd(0, wait: .spin)
            let message = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
            message.initializeMemory(as: UInt8.self, repeating: 0x5A)
            let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
            for i in 0..<total {
                let start = cplatform_monotonic_ns()
                try channel.send(UnsafeRawBufferPointer(message))
                _ = try channel.receive(into: reply)
                if i >= warmup { samples[i - warmup] = cplatform_monotonic_ns() - start }
            }
            message.deallocate()
            reply.deallocate()
        } catch {
            fail("ping side of \(name): \(error)")
        }
        echoDone.wait()
        return samples
    }
}

let quick = CommandLine.arguments.contains("--quick")
let count = quick ? 20_000 : 100_000
let warmup = count / 10
let rounds = quick ? 3 : 5
let aes = AESGCM.isAvailable

var cases: [Case] = [
    baseline("C: one cache line") { w, c, s in baseline_cacheline_pingpong(pingCPU, echoCPU, w, c, s) },
]
for size in [64, 1024] {
    cases.append(baseline("C: ring, plain, \(size) B") { w, c, s in baseline_ring_pingpong(pingCPU, echoCPU, size, BASELINE_AEAD_NONE, BASELINE_WAIT_SPIN, 65536, w, c, s) })
    cases.append(baseline("C: ring + ChaCha20-Poly1305, \(size) B") { w, c, s in baseline_ring_pingpong(pingCPU, echoCPU, size, BASELINE_AEAD_CHACHAPOLY, BASELINE_WAIT_SPIN, 65536, w, c, s) })
    if aes {
        cases.append(baseline("C: ring + AES-256-GCM, \(size) B") { w, c, s in baseline_ring_pingpong(pingCPU, echoCPU, size, BASELINE_AEAD_AESGCM, BASELINE_WAIT_SPIN, 65536, w, c, s) })
    }
    cases.append(baseline("C: Unix stream socket, \(size) B") { w, c, s in baseline_unix_stream_pingpong(pingCPU, echoCPU, size, w, c / 10, s) })
    cases.append(channelCase("SecureChannel encrypted ChaCha20-Poly1305, \(size) B", mode: .encrypted, suite: .chachapoly, size: size))
    if aes {
        cases.append(channelCase("SecureChannel encrypted AES-256-GCM, \(size) B", mode: .encrypted, suite: .aesgcm, size: size))
    }
    cases.append(channelCase("SecureChannel isolated, \(size) B", mode: .isolated, suite: .chachapoly, size: size))
}

print("channel-bench: \(count) round trips per case and round, \(rounds) interleaved rounds, ping on CPU \(pingCPU), echo on CPU \(echoCPU), libsodium \(libsodiumVersion)")
var results: [String: [Percentiles]] = [:]
for round in 1...rounds {
    for benchCase in cases {
        // Sockets sleep on every message: a tenth of the count is plenty.
        let n = benchCase.name.contains("socket") ? count / 10 : count
        let samples = benchCase.run(warmup, n)
        results[benchCase.name, default: []].append(Percentiles(samples.prefix(n).map { $0 }.filter { $0 > 0 }))
    }
    FileHandle.standardError.write(Data("round \(round)/\(rounds) done\n".utf8))
}

@MainActor func p50(_ name: String) -> Double? { results[name].map { median($0.map(\.p50)) } }

print("")
print("| Case | p50 ns | p90 ns | p99 ns | p99.9 ns | max ns |")
print("|---|---:|---:|---:|---:|---:|")
for benchCase in cases {
    let r = results[benchCase.name]!
    print("| \(benchCase.name) | \(Int(median(r.map(\.p50)))) | \(Int(median(r.map(\.p90)))) | \(Int(median(r.map(\.p99)))) | \(Int(median(r.map(\.p999)))) | \(Int(median(r.map(\.max)))) |")
}

print("")
print("| Ratio (p50 over p50) | value | target | met |")
print("|---|---:|---|---|")
@MainActor func ratio(_ label: String, _ a: String, _ b: String, target: String, _ ok: (Double) -> Bool) {
    guard let x = p50(a), let y = p50(b), y > 0 else { return }
    let r = x / y
    print("| \(label) | \(String(format: "%.2f", r)) | \(target) | \(ok(r) ? "yes" : "no") |")
}
for size in [64, 1024] {
    ratio("encrypted ChaCha20 / C ring + ChaCha20, \(size) B", "SecureChannel encrypted ChaCha20-Poly1305, \(size) B", "C: ring + ChaCha20-Poly1305, \(size) B", target: "≤ 1.15") { $0 <= 1.15 }
    if aes {
        ratio("encrypted AES-GCM / C ring + AES-GCM, \(size) B", "SecureChannel encrypted AES-256-GCM, \(size) B", "C: ring + AES-256-GCM, \(size) B", target: "≤ 1.15") { $0 <= 1.15 }
    }
    ratio("isolated / C ring plain, \(size) B", "SecureChannel isolated, \(size) B", "C: ring, plain, \(size) B", target: "≤ 1.3") { $0 <= 1.3 }
    ratio("Unix socket / encrypted ChaCha20, \(size) B", "C: Unix stream socket, \(size) B", "SecureChannel encrypted ChaCha20-Poly1305, \(size) B", target: "≥ 10") { $0 >= 10 }
    ratio("Unix socket / isolated, \(size) B", "C: Unix stream socket, \(size) B", "SecureChannel isolated, \(size) B", target: "≥ 10") { $0 >= 10 }
}

// MARK: Throughput

/// One-way streaming through a channel: the writer sends `total` bytes in
/// messages of `size` bytes as fast as the ring takes them; bytes per second
/// as the reader sees them.
func channelThroughput(mode: ChannelDescriptor.Mode, suite: ChannelDescriptor.CipherSuite, size: Int, total: Int) -> Double {
    let world: InProcessChannelWorld
    do { world = try InProcessChannelWorld(mode: mode, suite: suite, pages: 257) } catch { fail("set-up of throughput: \(error)") }
    let count = total / size
    let writer = Thread {
        _ = cplatform_pin_to_cpu(echoCPU)
        do {
            let channel = try world.openEnd(1, wait: .spin)
            let message = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
            message.initializeMemory(as: UInt8.self, repeating: 0x5A)
            for _ in 0..<count { try channel.send(UnsafeRawBufferPointer(message)) }
            message.deallocate()
        } catch {
            fail("throughput writer: \(error)")
        }
    }
    writer.start()
    _ = cplatform_pin_to_cpu(pingCPU)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { buffer.deallocate() }
    do {
        let channel = try world.openEnd(0, wait: .spin)
        _ = try channel.receive(into: buffer)   // the clock starts at the first message
        let start = cplatform_monotonic_ns()
        for _ in 1..<count { _ = try channel.receive(into: buffer) }
        let seconds = Double(cplatform_monotonic_ns() - start) / 1e9
        return Double((count - 1) * size) / seconds
    } catch {
        fail("throughput reader: \(error)")
    }
}

let streamBytes = quick ? 64 << 20 : 256 << 20
print("")
print("| Throughput, one way, \(streamBytes >> 20) MiB | MB/s | single-core AEAD baseline MB/s | ratio | target |")
print("|---|---:|---:|---:|---|")
for size in [1024, 16384] {
    for (name, suite, aead) in [("ChaCha20-Poly1305", ChannelDescriptor.CipherSuite.chachapoly, BASELINE_AEAD_CHACHAPOLY),
                                ("AES-256-GCM", .aesgcm, BASELINE_AEAD_AESGCM)] where suite == .chachapoly || aes {
        var channel: [Double] = [], raw: [Double] = []
        for _ in 0..<rounds {
            raw.append(baseline_aead_throughput(size, aead, streamBytes))
            channel.append(channelThroughput(mode: .encrypted, suite: suite, size: size, total: streamBytes))
        }
        let c = median(channel), r = median(raw)
        let target = size == 16384 ? "≥ 0.80" : "-"
        let met = size == 16384 ? (c / r >= 0.8 ? " (met)" : " (missed)") : ""
        print("| encrypted \(name), \(size) B | \(Int(c / 1e6)) | \(Int(r / 1e6)) | \(String(format: "%.2f", c / r)) | \(target)\(met) |")
    }
}
