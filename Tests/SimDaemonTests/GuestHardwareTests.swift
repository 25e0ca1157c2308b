import Altp2m
import Altp2mSim
import CPlatform
import Foundation
import Testing
import XenBackend
import XenGuest
import XenInterface

/// `enterView`'s contract on both platforms: a refused `VMFUNC` returns
/// `false`, and the process lives.
@Suite("VMFUNC refusals", .serialized)
struct GuestHardwareTests {
    @Test("hardware: VMFUNC outside a Xen guest raises #UD; the checked VMFUNC reports it, on several threads at once")
    func refusedOnHardware() async throws {
        // This machine is not a Xen HVM guest with VMFUNC enabled: every
        // VMFUNC is #UD (SIGILL). Without the handler the test process dies.
        #expect(cplatform_vmfunc_try(1) == 0)
        let refusals = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var count = 0
                    for view in 0..<500 where cplatform_vmfunc_try(UInt32(view % 10)) == 0 { count += 1 }
                    return count
                }
            }
            return await group.reduce(0, +)
        }
        #expect(refusals == 2000)
    }

    @Test("xen-sim: XenGuestPlatform.enterView of a view that cannot be entered returns false and the vCPU stays in view 0")
    func refusedOnSimulator() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--vcpus", "1", "--memory-mib", "1", "--altp2m", "external")
            sim.ok("altp2m", "set-state", "alpha", "on")
            let guest = try XenGuestPlatform(libraries: try .simulator(domain: "alpha", stateDirectory: sim.stateDir))
            // No view 3, and VMFUNC not enabled on the vCPU: #UD, observed.
            #expect(guest.enterView(ViewID(3)) == false)
            #expect(sim.ok("altp2m", "vcpu-view", "alpha", "0")["view"]?.int64 == 0)
        }
    }
}
