import Altp2m
import Altp2mSim
import Foundation
import Testing

/// Threads of one guest process on the domain's vCPUs: the view belongs to
/// the vCPU, so a thread that is migrated or preempted between its VMFUNC
/// and its next access makes that access in another view.
@Suite("Guest threads on shared vCPUs", .serialized)
struct GuestThreadTests {
    static let window = GFN(0x100), channel = GFN(0x1f0)

    /// Two vCPUs with VMFUNC; view 1 shows the channel frame at the window
    /// gfn and allows the channel frame's own gfn, which view 0 locks (n).
    static func domain(_ sim: ChanctlHarness, accessRequired: Bool) throws -> SimGuest {
        sim.ok("domain", "create", "t", "--vcpus", "2", "--memory-mib", "2", "--altp2m", "external")
        sim.ok("altp2m", "set-state", "t", "on")
        sim.ok("altp2m", "create-view", "t", "--default-access", "rwx")
        sim.ok("altp2m", "change-gfn", "t", "1", "0x100", "0x1f0")
        sim.ok("altp2m", "set-access", "t", "0", "0x1f0", "n")
        sim.ok("altp2m", "set-access", "t", "1", "0x1f0", "rw")
        sim.ok("altp2m", "enable-notify", "t", "0", "0x180")
        sim.ok("altp2m", "enable-notify", "t", "1", "0x181")
        if accessRequired {
            // access_required with no listener: p2m_mem_access_check crashes the domain.
            sim.ok("monitor", "enable", "t", "--access-required")
            sim.ok("monitor", "disable", "t")
        }
        return try SimGuest.attach(domain: "t", stateDirectory: StateDirectory(path: sim.stateDir), vcpu: 0, vcpus: [0, 1])
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test("a thread migrated between its VMFUNC and its next access accesses in the other vCPU's view; without the page there and with access_required, the domain crashes")
    func migrationBetweenVMFUNCAndAccess() throws {
        try withSimulator { sim in
            let guest = try Self.domain(sim, accessRequired: true)
            let worker = try guest.thread(named: "worker", on: 0)
            try worker.write(gfn: Self.window, bytes: Array("base".utf8))
            guard case .switched = worker.vmfunc(1) else { Issue.record("VMFUNC 1 was refused"); return }
            try worker.write(gfn: Self.window, bytes: Array("chan".utf8))
            // On its own vCPU the thread reads the channel frame in view 1.
            #expect(Self.text(try worker.read(gfn: Self.window, count: 4)) == "chan")
            #expect(Self.text(try worker.read(gfn: Self.channel, count: 4)) == "chan")

            // Migrated before the read: the read is in vCPU 1's view 0, where
            // the window gfn is its own frame.
            let script = ScriptedGuestScheduler([
                .init("worker", at: .read, .migrate(to: 1)),
                .init("worker", at: .read, .migrate(to: 0)),
                .init("worker", at: .read, .migrate(to: 1)),
            ])
            guest.scheduler = script
            #expect(Self.text(try worker.read(gfn: Self.window, count: 4)) == "base")
            #expect(worker.vcpu == 1)
            #expect(worker.currentView == ViewID(0))
            // Back on vCPU 0, still in view 1.
            #expect(Self.text(try worker.read(gfn: Self.window, count: 4)) == "chan")
            // Migrated again, it touches the channel frame's gfn: view 0 has no
            // access to it, access_required is set and nobody listens.
            #expect(throws: GuestMemoryFault.domainCrashed) { _ = try worker.read(gfn: Self.channel, count: 4) }
            #expect(script.remaining == 0)
            #expect(script.problems.isEmpty)
            let list = sim.ok("domain", "list")["domains"]?.array ?? []
            #expect(list.first { $0["name"]?.string == "t" }?["state"]?.string == "crashed")
            // The engine saw each vCPU's own view: vCPU 0 in view 1, vCPU 1 in view 0.
            #expect(sim.ok("altp2m", "vcpu-view", "t", "0")["view"]?.int64 == 1)
            #expect(sim.ok("altp2m", "vcpu-view", "t", "1")["view"]?.int64 == 0)
            guest.detach()
        }
    }

    @Test("two threads on one vCPU: one enters view 1, the other preempts it and returns to view 0, the first's next access is in view 0")
    func preemptionOnOneVCPU() throws {
        try withSimulator { sim in
            let guest = try Self.domain(sim, accessRequired: false)
            let first = try guest.thread(named: "first", on: 0)
            let second = try guest.thread(named: "second", on: 1)
            try first.write(gfn: Self.window, bytes: Array("base".utf8))
            guard case .switched = first.vmfunc(1) else { Issue.record("VMFUNC 1 was refused"); return }
            try first.write(gfn: Self.window, bytes: Array("chan".utf8))
            var preempted = false
            let script = ScriptedGuestScheduler([
                .init("first", at: .read, .preempt(by: second) { thread in
                    preempted = thread.vmfunc(0) == .switched(from: ViewID(1), to: ViewID(0))
                }),
            ])
            guest.scheduler = script
            #expect(Self.text(try first.read(gfn: Self.window, count: 4)) == "base")
            #expect(preempted)
            #expect(second.vcpu == first.vcpu)
            #expect(first.currentView == ViewID(0))
            #expect(sim.ok("altp2m", "vcpu-view", "t", "0")["view"]?.int64 == 0)
            // Without a scheduler nothing moves: the data path has one branch.
            guest.scheduler = nil
            _ = first.vmfunc(1)
            #expect(Self.text(try first.read(gfn: Self.window, count: 4)) == "chan")
            guest.detach()
        }
    }

    @Test("soak: two OS threads on two vCPUs under seeded random migrations; reads follow the vCPU, the domain never crashes")
    func randomSoak() throws {
        try withSimulator { sim in
            let guest = try Self.domain(sim, accessRequired: true)
            try guest.write(gfn: Self.window, bytes: Array("base".utf8))
            _ = guest.vmfunc(1)
            try guest.write(gfn: Self.window, bytes: Array("chan".utf8))
            _ = guest.vmfunc(0)
            let scheduler = RandomGuestScheduler(seed: 0x5EED, rate: 0.3)
            guest.scheduler = scheduler
            let threads = [try guest.thread(named: "a", on: 0), try guest.thread(named: "b", on: 1)]
            let results = Tally()
            let done = DispatchGroup()
            for (index, thread) in threads.enumerated() {
                done.enter()
                let worker = Thread {
                    var reads = 0, otherView = 0, faults = 0
                    for step in 0..<1500 {
                        let view = UInt32((step + index) & 1)
                        guard case .switched = thread.vmfunc(view) else { faults += 1; continue }
                        // The window gfn only: every view maps it, so no access can crash.
                        guard let bytes = try? thread.read(gfn: Self.window, count: 4) else { faults += 1; continue }
                        reads += 1
                        if Self.text(bytes) != (view == 1 ? "chan" : "base") { otherView += 1 }
                    }
                    _ = thread.vmfunc(0)
                    results.add((reads, otherView, faults))
                    done.leave()
                }
                worker.start()
            }
            #expect(done.wait(timeout: .now() + 120) == .success)
            let all = results.all
            #expect(all.count == 2)
            #expect(all.allSatisfy { $0.2 == 0 }, "\(all)")
            #expect(all.allSatisfy { $0.0 == 1500 }, "\(all)")
            // Migrations and the other thread's VMFUNCs on a shared vCPU do show.
            #expect(scheduler.migrations > 0)
            #expect(all.reduce(0) { $0 + $1.1 } > 0, "\(all)")
            let list = sim.ok("domain", "list")["domains"]?.array ?? []
            #expect(list.first { $0["name"]?.string == "t" }?["state"]?.string == "running")
            guest.detach()
        }
    }
}

/// Per-thread results of the soak: (reads, reads that saw the other view, faults).
final class Tally: @unchecked Sendable {
    // @unchecked: every access holds the lock.
    private let lock = NSLock()
    private var entries: [(Int, Int, Int)] = []

    func add(_ entry: (Int, Int, Int)) { lock.withLock { entries.append(entry) } }
    var all: [(Int, Int, Int)] { lock.withLock { entries } }
}
