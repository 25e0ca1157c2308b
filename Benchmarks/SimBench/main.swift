// sim-bench: the cost of a guest memory access in the altp2m engine, against
// a plain dictionary lookup measured in the same run.
//
// Build and run in release:
//   swift build -c release --product sim-bench && .build/release/sim-bench
//
// The engine path per access: find the domain, the vCPU's current view, the
// view's entry for the gfn, check the access against the violation table and
// the p2m type, retire the instruction. The baseline does the dictionary part
// alone, so the ratio is the engine's overhead over its own data structure.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Altp2m
import Altp2mSim

let iterations = 1_000_000
let pageCount: UInt64 = 256

func nanosecondsPerOperation(_ duration: Duration, _ count: Int) -> Double {
    let (seconds, attoseconds) = duration.components
    return (Double(seconds) * 1e9 + Double(attoseconds) / 1e9) / Double(count)
}

func fail(_ what: String, _ error: any Error) -> Never {
    print("sim-bench: \(what) failed: \(error)")
    exit(1)
}

// A domain like the spec's baseline, on a view that every page was touched
// in already (warm: no lazy copies during the timed loop).
let engine: Altp2mEngine
let domain: DomainID
do {
    engine = try Altp2mEngine(frameCount: 4096)
    domain = try engine.createDomain(DomainConfig(name: "bench", vcpuCount: 2, pages: pageCount,
                                                  altp2mMode: .external))
    try engine.setDomainState(domain, active: true)
    let view = try engine.createView(domain, defaultAccess: .readWriteExecute)
    try engine.switchToView(domain, view: view)
    for gfn in 0..<pageCount {
        _ = try engine.guestAccess(domain, vcpu: 0, gfn: GFN(gfn), kind: .read)
    }
} catch {
    fail("setup", error)
}

// Warm-up, then the timed runs; each run is repeated and the best kept, since
// the host moves vCPUs around (see shared/docs/BASELINES.md).
func best(of rounds: Int, _ body: () -> Void) -> Duration {
    var fastest = Duration.seconds(1_000)
    for _ in 0..<rounds {
        let start = ContinuousClock.now
        body()
        fastest = min(fastest, ContinuousClock.now - start)
    }
    return fastest
}

var checksum: UInt64 = 0

let engineTime = best(of: 5) {
    for index in 0..<iterations {
        let gfn = GFN(UInt64(index) & (pageCount - 1))
        do {
            let outcome = try engine.guestAccess(domain, vcpu: 0, gfn: gfn, kind: .read)
            checksum &+= outcome.completedMFN?.rawValue ?? 0
        } catch {
            fail("guest access", error)
        }
    }
}

// Baseline: the same number of lookups in a dictionary of the same entries,
// with the same permission check.
var table: [GFN: P2MEntry] = [:]
for gfn in 0..<pageCount {
    table[GFN(gfn)] = P2MEntry(mfn: MFN(gfn + 7), access: .readWriteExecute)
}
let baselineTime = best(of: 5) {
    for index in 0..<iterations {
        let gfn = GFN(UInt64(index) & (pageCount - 1))
        if let entry = table[gfn], entry.access.permits(.read) {
            checksum &+= entry.mfn.rawValue
        }
    }
}

// VMFUNC in and out of a view, as a guest agent does around each ring operation.
do {
    try engine.vcpuEnableNotify(domain, vcpu: 1, gfn: 0x10)
} catch {
    fail("enable notify", error)
}
let vmfuncTime = best(of: 5) {
    for _ in 0..<(iterations / 2) {
        do {
            _ = try engine.vmfunc(domain, vcpu: 1, eax: 0, ecx: 1)
            _ = try engine.vmfunc(domain, vcpu: 1, eax: 0, ecx: 0)
        } catch {
            fail("vmfunc", error)
        }
    }
}

let engineNS = nanosecondsPerOperation(engineTime, iterations)
let baselineNS = nanosecondsPerOperation(baselineTime, iterations)
let vmfuncNS = nanosecondsPerOperation(vmfuncTime, iterations)
func format(_ value: Double) -> String {
    let hundredths = Int((value * 100).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
}
print("sim-bench: \(iterations) operations per run, best of 5 runs")
print("  engine guest access (warm view, read): \(format(engineNS)) ns/op")
print("  baseline Dictionary lookup + check:    \(format(baselineNS)) ns/op")
print("  ratio engine / baseline:               \(format(engineNS / baselineNS))x")
print("  engine VMFUNC switch (hardware path):  \(format(vmfuncNS)) ns/op")
print("  (checksum \(checksum))")
