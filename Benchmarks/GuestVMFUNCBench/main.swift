// guest-vmfunc-bench: what a local VMFUNC round (into the channel view and
// back) costs a guest process attached to the simulator daemon, in each
// enforcement mode, beside baselines measured in the same run: an empty
// (non-inlined) function call, and an mprotect pair on one shared page.
//
// Build and run in release:
//   swift build -c release --product guest-vmfunc-bench && .build/release/guest-vmfunc-bench
//
// The daemon runs on a thread of this process (its own state directory in
// /tmp, removed at the end); the guest talks to it over the Unix socket like
// any guest process.

import Altp2m
import Altp2mSim
import CPlatform
import XenInterface
#if canImport(Glibc)
import Glibc
#endif

/// Hands the daemon to its thread (it is used only there afterwards).
final class DaemonBox: @unchecked Sendable {
    let daemon: SimDaemon
    init(_ daemon: SimDaemon) { self.daemon = daemon }
}

/// The daemon thread's body (a C entry point: not isolated to the main actor).
nonisolated func runDaemon(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let box = Unmanaged<DaemonBox>.fromOpaque(raw!).takeRetainedValue()
    do { try box.daemon.run() } catch { print("daemon: \(error)") }
    return nil
}

@inline(never)
func emptyCall(_ value: Int) -> Int { value &+ 1 }

/// Median ns/op of `rounds` rounds of `iterations` calls.
func measure(_ name: String, iterations: Int, rounds: Int = 7, _ body: () -> Void) -> Double {
    for _ in 0..<(iterations / 10) { body() }   // warm-up
    var samples: [Double] = []
    for _ in 0..<rounds {
        let start = cplatform_monotonic_ns()
        for _ in 0..<iterations { body() }
        samples.append(Double(cplatform_monotonic_ns() - start) / Double(iterations))
    }
    samples.sort()
    let median = samples[samples.count / 2]
    print(pad(name, 44) + pad(String(format: median), 12) + "ns/op  (min " + String(format: samples[0]) + ")")
    return median
}

func String(format value: Double) -> String {
    let digits: Double = value < 1 ? 10_000 : 10
    return String((value * digits).rounded() / digits)
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

func fail(_ message: String) -> Never {
    print("guest-vmfunc-bench: \(message)")
    exit(1)
}

// MARK: Simulator

var template = Array("/tmp/vmfunc-bench-XXXXXX".utf8CString)
guard let made = mkdtemp(&template) else { fail("mkdtemp failed") }
let stateDirectory = StateDirectory(path: String(cString: made))

let box: DaemonBox
do {
    var configuration = SimDaemon.Configuration()
    configuration.machineFrames = 16384
    box = DaemonBox(try SimDaemon(stateDirectory: stateDirectory, configuration: configuration))
} catch {
    fail("cannot start the simulator: \(error)")
}
var thread = pthread_t()
let started = pthread_create(&thread, nil, runDaemon, Unmanaged.passRetained(box).toOpaque())
guard started == 0 else { fail("pthread_create failed") }

var control: SimClient?
for _ in 0..<500 {
    if let client = try? SimClient(stateDirectory: stateDirectory) { control = client; break }
    usleep(10_000)
}
guard let dom0 = control else { fail("the daemon did not answer") }

do {
    _ = try dom0.call("domain.create", ["name": "bench", "vcpus": 1, "memory_mib": 2, "altp2m": "external"])
    _ = try dom0.call("altp2m.set-state", ["domain": "bench", "state": 1])
    _ = try dom0.call("altp2m.create-view", ["domain": "bench", "default_access": "rwx"])
    _ = try dom0.call("altp2m.change-gfn", ["domain": "bench", "view": 1, "old_gfn": 0x100, "new_gfn": 0x1F0])
    _ = try dom0.call("altp2m.enable-notify", ["domain": "bench", "vcpu": 0, "gfn": 0x180])
} catch {
    fail("set-up failed: \(error)")
}

// MARK: Measurements

print("guest-vmfunc-bench: a VMFUNC round = switch to the channel view and back (two VMFUNCs)")
print("")
var sink = 0
let call = measure("baseline: empty function call", iterations: 20_000_000) { sink = emptyCall(sink) }

let memfd = cplatform_memfd_create("vmfunc-bench", CPLATFORM_MFD_CLOEXEC)
guard memfd >= 0, ftruncate(memfd, 4096) == 0,
      let page = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0), page != MAP_FAILED
else { fail("cannot map a memfd page") }
page.storeBytes(of: 1, as: UInt8.self)
let mprotectPair = measure("baseline: mprotect pair (none, rw), shared page", iterations: 100_000) {
    mprotect(page, 4096, PROT_NONE)
    mprotect(page, 4096, PROT_READ | PROT_WRITE)
}

var results: [(SimGuest.Enforcement, Double, Double)] = []
for enforcement in SimGuest.Enforcement.allCases {
    let guest: SimGuest
    do { guest = try SimGuest.attach(domain: "bench", stateDirectory: stateDirectory, enforcement: enforcement) } catch {
        fail("attach (\(enforcement)) failed: \(error)")
    }
    guard case .switched = guest.vmfunc(1), case .switched = guest.vmfunc(0) else { fail("VMFUNC refused") }
    let iterations = enforcement == .software ? 10_000_000 : 50_000
    let round = measure("VMFUNC round, \(enforcement) enforcement", iterations: iterations) {
        _ = guest.vmfunc(1)
        _ = guest.vmfunc(0)
    }
    var word: UInt64 = 0
    let read = measure("8-byte guest read (hit), \(enforcement)", iterations: enforcement == .software ? 10_000_000 : 1_000_000) {
        withUnsafeMutableBytes(of: &word) { try? guest.read(gfn: 0x120, offset: 0, into: $0) }
    }
    if enforcement == .software {
        _ = measure("daemon round trip (guest.sync request)", iterations: 2_000, rounds: 5) {
            _ = try? guest.call("guest.sync")
        }
    }
    results.append((enforcement, round, read))
    guest.detach()
}

// The view-switching rule of the Xen backend (ViewSwitching: the thread
// pinned once, its vCPU's claim taken and cleared per visit) over the same
// simulated VMFUNC, beside the bare VMFUNC round through the same hardware.
let claimRatio: Double
do {
    let platform = try SimGuestPlatform.attach(domain: "bench", stateDirectory: stateDirectory.path)
    let hardware = SimGuestHardware(platform: platform, claimsPath: stateDirectory.viewClaimsPath(domain: "bench"))
    let switching = try ViewSwitching(hardware: hardware)
    guard hardware.vmfunc(1), hardware.vmfunc(0) else { fail("VMFUNC refused") }
    let bare = measure("VMFUNC round, Xen guest hardware (xen-sim)", iterations: 5_000_000) {
        _ = hardware.vmfunc(1)
        _ = hardware.vmfunc(0)
    }
    let claimed = measure("the same through ViewSwitching (claim per visit)", iterations: 5_000_000) {
        try? switching.enter(1)
        switching.leave()
    }
    claimRatio = claimed / bare
    platform.guest.detach()
    unlink(stateDirectory.viewClaimsPath(domain: "bench"))
} catch {
    fail("the view-switching measurement failed: \(error)")
}

print("")
print("view claims: a visit through ViewSwitching costs \(String(format: claimRatio))x the bare VMFUNC round (same run)")
for (enforcement, round, read) in results {
    print("\(enforcement): VMFUNC round = \(String(format: round)) ns = \(String(format: round / call))x an empty call, "
          + "\(String(format: round / mprotectPair))x an mprotect pair; one VMFUNC = \(String(format: round / 2)) ns; "
          + "8-byte read hit = \(String(format: read)) ns")
}
if let software = results.first(where: { $0.0 == .software }) {
    print("target: one local VMFUNC in software mode under 50 ns: \(software.1 / 2 < 50 ? "met" : "missed")")
}

_ = try? dom0.call("sim.stop")
pthread_join(thread, nil)
rmdir(stateDirectory.domainsPath)
for file in ["daemon.lock", "daemon.log"] { unlink(stateDirectory.path + "/" + file) }
rmdir(stateDirectory.path)
if sink == 42 { print("") }
