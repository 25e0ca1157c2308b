// crypto-bench: what ChannelCrypto's Swift AEAD wrapper costs over libsodium.
//
// For each AEAD and message size it times `AEADKey.seal`/`open` through the
// zero-copy interface (preallocated buffers, counter nonce, no AAD) against
// the same loop written in C against libsodium (CryptoBenchBaseline), in the
// same process. The two run in interleaved rounds, alternating which goes
// first, so CPU frequency changes and the VM's noisy phases hit both alike.
// Reported: the median ns per operation of each side over the rounds; the
// Swift/C ratio as the median of the per-round ratios (each round pairs the
// two sides back to back, so a VM slowdown or a neighbour's build hits both,
// which medians of each side alone do not guarantee on a busy 2-core machine);
// and, as a cross-check, the ratio of each side's fastest round.
//
// Usage: crypto-bench [--rounds N] [--round-ms MS] [--markdown] [--swift-version TEXT]
// Build it in release (scripts/bench-crypto.sh does): debug numbers mean nothing.

import ChannelCrypto
import CryptoBenchBaseline
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: Options

struct Options {
    var rounds = 201
    var roundMilliseconds = 1.0
    var markdown = false
    var swiftVersion = "unknown"

    init(_ arguments: [String]) {
        var it = arguments.dropFirst().makeIterator()
        while let arg = it.next() {
            switch arg {
            case "--rounds":
                guard let n = it.next().flatMap({ Int($0) }) else { Options.usage("--rounds needs a number") }
                rounds = n
            case "--round-ms":
                guard let ms = it.next().flatMap({ Double($0) }) else { Options.usage("--round-ms needs a number") }
                roundMilliseconds = ms
            case "--markdown": markdown = true
            case "--swift-version":
                guard let text = it.next() else { Options.usage("--swift-version needs a value") }
                swiftVersion = text
            case "-h", "--help": Options.usage(nil)
            default: Options.usage("unknown argument \(arg)")
            }
        }
        if rounds < 3 { Options.usage("--rounds must be at least 3") }
    }

    static func usage(_ problem: String?) -> Never {
        if let problem { print("crypto-bench: \(problem)") }
        print("usage: crypto-bench [--rounds N (201)] [--round-ms MS (1)] [--markdown] [--swift-version TEXT]")
        exit(problem == nil ? 0 : 2)
    }
}

// MARK: Measured loops

/// The Swift side of a seal round. `@inline(never)` keeps it a loop of its
/// own, like the C one, rather than something the optimiser merges with the
/// harness.
@inline(never)
func swiftSealLoop(_ key: AEADKey, plaintext: UnsafeRawBufferPointer, nonce: UnsafeMutableRawBufferPointer,
                   output: UnsafeMutableRawBufferPointer, iterations: Int, counter: inout UInt64) -> UInt64 {
    let noAAD = UnsafeRawBufferPointer(start: nil, count: 0)
    let nonceView = UnsafeRawBufferPointer(nonce)
    var ctr = counter
    let start = cbb_now_ns()
    do {
        for _ in 0..<iterations {
            nonce.storeBytes(of: ctr.littleEndian, as: UInt64.self)
            ctr &+= 1
            try key.seal(nonce: nonceView, plaintext: plaintext, authenticating: noAAD, into: output)
        }
    } catch {
        fatalError("seal failed: \(error)")
    }
    let elapsed = cbb_now_ns() - start
    counter = ctr
    return elapsed
}

@inline(never)
func swiftOpenLoop(_ key: AEADKey, ciphertext: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer,
                   output: UnsafeMutableRawBufferPointer, iterations: Int) -> UInt64 {
    let noAAD = UnsafeRawBufferPointer(start: nil, count: 0)
    let start = cbb_now_ns()
    do {
        for _ in 0..<iterations {
            try key.open(nonce: nonce, ciphertext: ciphertext, authenticating: noAAD, into: output)
        }
    } catch {
        fatalError("open failed: \(error)")
    }
    return cbb_now_ns() - start
}

// MARK: One benchmark

enum Operation: String, CaseIterable { case seal, open }

struct Result {
    let algorithm: AEADAlgorithm
    let size: Int
    let operation: Operation
    let swiftMedian: Double
    let cMedian: Double
    /// Median over the rounds of (Swift ns/op) / (C ns/op) in that round.
    let pairedRatio: Double
    /// Fastest Swift round over fastest C round.
    let minimumRatio: Double
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

func cAlgorithm(_ algorithm: AEADAlgorithm) -> Int32 {
    switch algorithm {
    case .chaChaPoly: return Int32(CBB_CHACHA20_POLY1305)
    case .xChaChaPoly: return Int32(CBB_XCHACHA20_POLY1305)
    case .aesGCM: return Int32(CBB_AES256_GCM)
    }
}

func run(_ algorithm: AEADAlgorithm, size: Int, options: Options) -> [Result] {
    let keyBytes = SecureRandom.bytes(32)
    let key = try! AEADKey(algorithm, key: keyBytes)
    guard let context = keyBytes.withUnsafeBufferPointer({ cbb_context_create(cAlgorithm(algorithm), $0.baseAddress!) }) else {
        fatalError("cbb_context_create failed for \(algorithm)")
    }
    defer { cbb_context_destroy(context) }

    // Separate buffers per side, allocated once, 64-byte aligned so neither
    // side gets a luckier alignment.
    func buffer(_ count: Int) -> UnsafeMutableRawBufferPointer {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
        b.initializeMemory(as: UInt8.self, repeating: 0)
        return b
    }
    let plaintext = buffer(size)
    SecureRandom.fill(plaintext)
    let sealedCount = size + algorithm.tagByteCount
    let swiftOut = buffer(sealedCount), cOut = buffer(sealedCount)
    let swiftNonce = buffer(algorithm.nonceByteCount), cNonce = buffer(algorithm.nonceByteCount)
    let fixedNonce = buffer(algorithm.nonceByteCount)
    let ciphertext = buffer(sealedCount)
    defer { for b in [plaintext, swiftOut, cOut, swiftNonce, cNonce, fixedNonce, ciphertext] { b.deallocate() } }
    try! key.seal(nonce: UnsafeRawBufferPointer(fixedNonce), plaintext: UnsafeRawBufferPointer(plaintext),
                  authenticating: UnsafeRawBufferPointer(start: nil, count: 0), into: ciphertext)

    var swiftCounter: UInt64 = 0, cCounter: UInt64 = 0
    let pt = UnsafeRawBufferPointer(plaintext), ct = UnsafeRawBufferPointer(ciphertext)

    func swiftRound(_ op: Operation, _ n: Int) -> UInt64 {
        switch op {
        case .seal: return swiftSealLoop(key, plaintext: pt, nonce: swiftNonce, output: swiftOut, iterations: n, counter: &swiftCounter)
        case .open: return swiftOpenLoop(key, ciphertext: ct, nonce: UnsafeRawBufferPointer(fixedNonce), output: swiftOut, iterations: n)
        }
    }
    func cRound(_ op: Operation, _ n: Int) -> UInt64 {
        let elapsed: UInt64
        switch op {
        case .seal:
            elapsed = cbb_seal_loop(context, pt.baseAddress!.assumingMemoryBound(to: UInt8.self), size,
                                    cNonce.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                    cOut.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(n), &cCounter)
        case .open:
            elapsed = cbb_open_loop(context, ct.baseAddress!.assumingMemoryBound(to: UInt8.self), sealedCount,
                                    fixedNonce.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                    cOut.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(n))
        }
        precondition(elapsed > 0, "libsodium call failed in the C baseline")
        return elapsed
    }

    var results: [Result] = []
    for op in Operation.allCases {
        // Warm up both sides, then size a round to about roundMilliseconds.
        _ = swiftRound(op, 200)
        let probe = Double(cRound(op, 200)) / 200
        let iterations = max(16, Int(options.roundMilliseconds * 1_000_000 / max(probe, 1)))
        _ = swiftRound(op, iterations)
        _ = cRound(op, iterations)

        var swiftPerOp: [Double] = [], cPerOp: [Double] = [], ratios: [Double] = []
        for round in 0..<options.rounds {
            let s: UInt64, c: UInt64
            if round % 2 == 0 {
                s = swiftRound(op, iterations); c = cRound(op, iterations)
            } else {
                c = cRound(op, iterations); s = swiftRound(op, iterations)
            }
            let sv = Double(s) / Double(iterations), cv = Double(c) / Double(iterations)
            swiftPerOp.append(sv); cPerOp.append(cv); ratios.append(sv / cv)
        }
        results.append(Result(algorithm: algorithm, size: size, operation: op,
                              swiftMedian: median(swiftPerOp), cMedian: median(cPerOp), pairedRatio: median(ratios),
                              minimumRatio: swiftPerOp.min()! / cPerOp.min()!))
    }
    return results
}

// MARK: Machine

func machineDescription(_ options: Options) -> [(String, String)] {
    var cpu = "unknown"
    if let f = fopen("/proc/cpuinfo", "r") {
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        while getline(&line, &capacity, f) > 0 {
            let text = String(cString: line!)
            if text.hasPrefix("model name"), let colon = text.firstIndex(of: ":") {
                cpu = text[text.index(after: colon)...].trimmingCharacters()
                break
            }
        }
        free(line)
    }
    var u = utsname()
    uname(&u)
    let kernel = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    var now = time(nil)
    var tm = tm()
    gmtime_r(&now, &tm)
    var dateBuffer = [CChar](repeating: 0, count: 32)
    strftime(&dateBuffer, dateBuffer.count, "%Y-%m-%d %H:%M UTC", &tm)
    let date = dateBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return [
        ("CPU", cpu),
        ("Cores", "\(sysconf(Int32(_SC_NPROCESSORS_ONLN)))"),
        ("Kernel", kernel),
        ("Swift", options.swiftVersion),
        ("libsodium", libsodiumVersion),
        ("AES-256-GCM", AEADAlgorithm.aesGCM.isAvailable ? "available (AES-NI, PCLMULQDQ)" : "unavailable on this CPU"),
        ("Date", date),
        ("Method", "\(options.rounds) interleaved rounds of about \(options.roundMilliseconds) ms per side; ns/op are medians over the rounds, Swift/C the median of the per-round ratios"),
    ]
}

extension StringProtocol {
    func trimmingCharacters() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\n" }.reversed())
    }
}

// MARK: Main

let options = Options(CommandLine.arguments)
#if DEBUG
let debugWarning = "crypto-bench: this is a debug build; its timings mean nothing (use scripts/bench-crypto.sh)\n"
_ = debugWarning.withCString { write(2, $0, strlen($0)) }
#endif
guard cbb_init() == 0 else { fatalError("sodium_init failed") }

let sizes = [64, 1024, 16 * 1024]
var results: [Result] = []
var skipped: [String] = []
for algorithm in AEADAlgorithm.allCases {
    guard algorithm.isAvailable else {
        skipped.append("\(algorithm): unavailable on this CPU")
        continue
    }
    for size in sizes {
        results += run(algorithm, size: size, options: options)
        if !options.markdown {
            let last = results.suffix(2).map { "\($0.operation) \(fmt($0.swiftMedian)) vs \(fmt($0.cMedian)) ns" }
            print("\(algorithm) \(sizeName(size)): \(last.joined(separator: ", "))")
        }
    }
}

func fmt(_ v: Double) -> String {
    let rounded = (v * 10).rounded() / 10
    return v >= 1000 ? String(Int(v.rounded())) : String(rounded)
}

func sizeName(_ size: Int) -> String { size >= 1024 ? "\(size / 1024) KiB" : "\(size) B" }

func ratioText(_ r: Double) -> String {
    // Whole tenths of a percent, so that -0.04 % prints as +0.0 %, not -0.0 %.
    let tenths = Int(((r - 1) * 1000).rounded())
    let sign = tenths < 0 ? "-" : "+"
    return "\(format3(r)) (\(sign)\(abs(tenths) / 10).\(abs(tenths) % 10) %)"
}

func format3(_ v: Double) -> String {
    let scaled = Int((v * 1000).rounded())
    let whole = scaled / 1000, frac = scaled % 1000
    return "\(whole)." + String(repeating: "0", count: 3 - String(frac).count) + String(frac)
}

let names: [AEADAlgorithm: String] = [.chaChaPoly: "ChaCha20-Poly1305", .xChaChaPoly: "XChaCha20-Poly1305", .aesGCM: "AES-256-GCM"]

if options.markdown {
    for (k, v) in machineDescription(options) { print("- \(k): \(v)") }
    print("")
    print("| AEAD | Size | Op | Swift ns/op | C ns/op | Swift/C | Swift/C of fastest rounds |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in results {
        print("| \(names[r.algorithm]!) | \(sizeName(r.size)) | \(r.operation) | \(fmt(r.swiftMedian)) | \(fmt(r.cMedian)) | \(ratioText(r.pairedRatio)) | \(format3(r.minimumRatio)) |")
    }
    for s in skipped { print("\nSkipped: \(s)") }
} else {
    print("")
    for (k, v) in machineDescription(options) { print("\(k): \(v)") }
    print("")
    let header = ["AEAD", "size", "op", "Swift ns/op", "C ns/op", "Swift/C", "fastest"]
    let rows = results.map { [names[$0.algorithm]!, sizeName($0.size), $0.operation.rawValue, fmt($0.swiftMedian), fmt($0.cMedian), ratioText($0.pairedRatio), format3($0.minimumRatio)] }
    let widths = (0..<header.count).map { i in ([header] + rows).map { $0[i].count }.max()! }
    for row in [header] + rows {
        print(row.enumerated().map { i, cell in cell.padding(widths[i], left: i >= 3) }.joined(separator: "  "))
    }
    for s in skipped { print("skipped: \(s)") }
}

extension String {
    func padding(_ width: Int, left: Bool) -> String {
        let pad = String(repeating: " ", count: max(0, width - count))
        return left ? pad + self : self + pad
    }
}
