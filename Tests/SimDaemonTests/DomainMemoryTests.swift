import Altp2m
@testable import Altp2mSim
import Foundation
import Testing

/// Domain memory served by the daemon: `max_pages`, the reservation
/// hypercalls, ballooning and dom0's foreign mappings, each test naming the
/// Xen 4.17 (or libxl, libxenctrl, Linux) function it follows.
@Suite("Domain memory", .serialized)
struct DomainMemoryTests {
    static func entry(_ sim: ChanctlHarness, _ name: String) -> JSONValue? {
        sim.ok("domain", "list")["domains"]?.array?.first { $0["name"]?.string == name }
    }

    static func gfns(_ values: [UInt64]) -> JSONValue { .array(values.map { .string("0x" + String($0, radix: 16)) }) }

    @Test("XEN_DOMCTL_max_mem and assign_pages: populate_physmap stops at max_pages (E2BIG), pages done stay; xc_..._exact reports EBUSY")
    func maxPagesEnforced() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            // libxl__build_pre: max = target + LIBXL_MAXMEM_CONSTANT (1 MiB).
            #expect(Self.entry(sim, "alpha")?["max_pages"]?.int64 == 512)
            #expect(Self.entry(sim, "alpha")?["pages"]?.int64 == 256)
            let dom0 = try GrantTableTests.dom0(sim)
            _ = try dom0.call("domain.set-max-mem", ["domain": "alpha", "max_kb": 1032])
            #expect(Self.entry(sim, "alpha")?["max_pages"]?.int64 == 258)
            let error = GrantTableTests.errno {
                _ = try dom0.call("memory.populate", ["domain": "alpha", "gfns": Self.gfns([0x400, 0x401, 0x402])])
            }
            #expect(error == "EBUSY")
            #expect(Self.entry(sim, "alpha")?["pages"]?.int64 == 258)
            #expect(try GrantTableTests.hostEntry(dom0, "alpha", GFN(0x401))["present"]?.bool == true)
            #expect(try GrantTableTests.hostEntry(dom0, "alpha", GFN(0x402))["present"]?.bool == false)
            // A guest populates its own memory (DOMID_SELF) under the same limit.
            let guest = try SimClient(stateDirectory: GrantTableTests.state(sim), token: GrantTableTests.token(sim, "alpha"))
            #expect(GrantTableTests.errno { _ = try guest.call("memory.populate", ["gfns": Self.gfns([0x402])]) } == "EBUSY")
            // Lowering max below tot_pages is allowed ("ratchet" down); then everything fails.
            _ = try dom0.call("domain.set-max-mem", ["domain": "alpha", "max_kb": 4])
            _ = try dom0.call("memory.decrease", ["domain": "alpha", "gfns": Self.gfns([0x400])])
            #expect(GrantTableTests.errno { _ = try guest.call("memory.populate", ["gfns": Self.gfns([0x400])]) } == "EBUSY")
        }
    }

    @Test("decrease_reservation / guest_remove_page: a hole is ENOENT and a grant mapping ENXIO inside Xen, EINVAL from xc_..._exact; populate then decrease frees the frame")
    func populateDecrease() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            sim.ok("domain", "create", "beta", "--memory-mib", "1")
            let dom0 = try GrantTableTests.dom0(sim)
            let free = sim.ok("sim", "status")["free_frames"]?.int64 ?? 0
            let populated = try dom0.call("memory.populate", ["domain": "alpha", "gfns": Self.gfns([0x300, 0x301])])
            #expect(populated["done"]?.int64 == 2)
            #expect(sim.ok("sim", "status")["free_frames"]?.int64 == free - 2)
            _ = try dom0.call("memory.decrease", ["domain": "alpha", "gfns": Self.gfns([0x300, 0x301])])
            #expect(sim.ok("sim", "status")["free_frames"]?.int64 == free)
            #expect(GrantTableTests.errno { _ = try dom0.call("memory.decrease", ["domain": "alpha", "gfns": Self.gfns([0x300])]) } == "EINVAL")

            let shr = try SimGrantShare(stateDirectory: GrantTableTests.state(sim), token: GrantTableTests.token(sim, "alpha"))
            let tab = try SimGrantTable(stateDirectory: GrantTableTests.state(sim), token: GrantTableTests.token(sim, "beta"))
            let share = try shr.sharePages(with: GrantTableTests.domid(sim, "beta"), count: 1, writable: true)
            let mapping = try tab.mapGrantRefs(domain: GrantTableTests.domid(sim, "alpha"), refs: share.refs, writable: true)
            // get_page(page, d) fails for the granter's page: not beta's to give back.
            #expect(GrantTableTests.errno {
                _ = try dom0.call("memory.decrease", ["domain": "beta", "gfns": .array([mapping.gfns[0].json])])
            } == "EINVAL")
            #expect(try GrantTableTests.hostEntry(dom0, "beta", mapping.gfns[0])["present"]?.bool == true)
        }
    }

    @Test("xl mem-set: libxl_set_memory_target writes memory/target and max; the balloon driver's decrease_reservation resets a view whose remapped range holds a page; never a granted page")
    func ballooning() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "2", "--altp2m", "external")
            sim.ok("domain", "create", "beta", "--memory-mib", "1")
            let dom0 = try GrantTableTests.dom0(sim)
            _ = try dom0.call("altp2m.set-state", ["domain": "alpha", "state": 1])
            let view = try dom0.call("altp2m.create-view", ["domain": "alpha", "default_access": "rwx"])["view"]!
            // The kernel's gntalloc page is the highest one (0x1ff): the balloon must skip it.
            let shr = try SimGrantShare(stateDirectory: GrantTableTests.state(sim), token: GrantTableTests.token(sim, "alpha"))
            let share = try shr.sharePages(with: GrantTableTests.domid(sim, "beta"), count: 1, writable: true)
            #expect(share.gfns == [GFN(0x1FF)])
            _ = try dom0.call("altp2m.change-gfn", ["domain": "alpha", "view": view, "old_gfn": "0x10", "new_gfn": "0x1fe"])

            let shrunk = sim.ok("domain", "mem-set", "alpha", "1")
            #expect(shrunk["ballooned_out"]?.array?.count == 256)
            #expect(shrunk["ballooned_out"]?.array?.first == "0x1fe")
            #expect(shrunk["ballooned_out"]?.array?.contains("0x1ff") == false)
            #expect(shrunk["max_pages"]?.int64 == 512)
            #expect(Self.entry(sim, "alpha")?["pages"]?.int64 == 256)
            #expect(try GrantTableTests.hostEntry(dom0, "alpha", GFN(0x1FE))["present"]?.bool == false)
            #expect(try GrantTableTests.hostEntry(dom0, "alpha", GFN(0x1FF))["present"]?.bool == true)
            let entry = try dom0.call("sim.view-entry", ["domain": "alpha", "view": view, "gfn": "0x10"])
            #expect(entry["present"]?.bool == false)
            #expect(entry["remapped_range"] == .null)
            #expect(sim.ok("xenstore", "read", "/local/domain/\(GrantTableTests.domid(sim, "alpha").rawValue)/memory/target")["value"]?.string == "1024")

            let map = sim.ok("domain", "memory-map", "alpha")
            #expect(map["map"]?.array?.first?["type"]?.string == "ram")
            #expect(map["map"]?.array?.first?["populated"]?.int64 == 256)
            #expect(map["ballooned"]?.array?.count == 256)
            // Above static-max: libxl refuses.
            #expect(sim.run(["domain", "mem-set", "alpha", "3"]).status != 0)
            let grown = sim.ok("domain", "mem-set", "alpha", "2")
            #expect(grown["ballooned_in"]?.array?.count == 256)
            #expect(Self.entry(sim, "alpha")?["pages"]?.int64 == 512)
        }
    }

    @Test("xenforeignmemory_map from a PV dom0 (privcmd mmapbatch v2 → xen_remap_pfn → mod_l1_entry): per-frame -EINVAL for a hole and a grant mapping, the rest mapped; dom0 reads what the guest wrote and the guest reads what dom0 wrote")
    func foreignMap() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            sim.ok("domain", "create", "beta", "--memory-mib", "1")
            let alpha = GrantTableTests.domid(sim, "alpha"), beta = GrantTableTests.domid(sim, "beta")
            let shr = try SimGrantShare(stateDirectory: GrantTableTests.state(sim), token: GrantTableTests.token(sim, "alpha"))
            let share = try shr.sharePages(with: beta, count: 1, writable: true)
            share.pointer.storeBytes(of: 0xF0E1_D2C3, as: UInt64.self)
            let tab = try SimGrantTable(stateDirectory: GrantTableTests.state(sim), token: GrantTableTests.token(sim, "beta"))
            let granted = try tab.mapGrantRefs(domain: alpha, refs: share.refs, writable: true)

            let foreign = try SimForeignMemory(stateDirectory: GrantTableTests.state(sim))
            let mapping = try foreign.map(domain: alpha, writable: true, gfns: [share.gfns[0], GFN(0x5000), GFN(0x10)])
            defer { foreign.unmap(mapping) }
            #expect(mapping.errors == [0, -22, 0])
            #expect(mapping.error(at: 1) == .invalid)
            #expect(mapping.mfns[0] == share.mfns[0])
            #expect(mapping.mfns[1] == nil)
            #expect(mapping.pointer.load(as: UInt64.self) == 0xF0E1_D2C3)
            // Writable: dom0's write is in the guest's page.
            (mapping.pointer + 2 * 4096).storeBytes(of: 0xABCD, as: UInt32.self)
            mapping.pointer.storeBytes(of: 0x1234, toByteOffset: 8, as: UInt64.self)
            #expect(share.pointer.load(fromByteOffset: 8, as: UInt64.self) == 0x1234)
            let again = try foreign.map(domain: alpha, writable: false, gfns: [GFN(0x10)])
            #expect(again.pointer.load(as: UInt32.self) == 0xABCD)
            foreign.unmap(again)

            // Beta's gfn holding alpha's grant: get_page(page, beta) fails, so -EINVAL.
            let ofBeta = try foreign.map(domain: beta, writable: false, gfns: [granted.gfns[0], GFN(0x20)])
            #expect(ofBeta.errors == [-22, 0])
            foreign.unmap(ofBeta)
            // No such domain: do_mmu_update's get_pg_owner fails for every frame; the call succeeds.
            let none = try foreign.map(domain: DomainID(rawValue: 999), writable: false, gfns: [GFN(0x1), GFN(0x2)])
            #expect(none.errors == [-3, -3])
            foreign.unmap(none)
            // A guest is not dom0.
            let guest = try SimClient(stateDirectory: GrantTableTests.state(sim), token: GrantTableTests.token(sim, "alpha"))
            #expect((try? guest.call("foreign.map", ["domain": .int(Int64(alpha.rawValue)), "gfns": .array(["0x1"])])) == nil)

            // chanctl foreign map shows the same, with each frame's first bytes.
            let shown = sim.ok("foreign", "map", "alpha", "0x10", "0x5000", "--bytes", "4")
            #expect(shown["frames"]?.array?[0]["bytes"]?.string == "cdab0000")
            #expect(shown["frames"]?.array?[1]["errno"]?.string == "EINVAL")
        }
    }

    @Test("The SimClient calls named after libxenctrl/libxl: xc_domain_setmaxmem, xc_domain_populate_physmap_exact, xc_domain_decrease_reservation_exact, libxl_set_memory_target and the memory map; chanctl domain populate/decrease")
    func clientCalls() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            let alpha = GrantTableTests.domid(sim, "alpha")
            let dom0 = try GrantTableTests.dom0(sim)
            #expect(try dom0.setMaxMem(domain: alpha, maxKiB: 1028) == 257)
            let mfns = try dom0.populatePhysmapExact(domain: alpha, gfns: [GFN(0x400)])
            #expect(mfns.count == 1)
            do {
                try dom0.populatePhysmapExact(domain: alpha, gfns: [GFN(0x401)])
                Issue.record("populate past max_pages succeeded")
            } catch SimClientError.hypervisor(let errno, _) {
                #expect(errno == .busy)
            }
            var map = try dom0.memoryMap(domain: alpha)
            #expect(map.totPages == 257)
            #expect(map.maxPages == 257)
            #expect(map.ranges.first == SimClient.DomainMemoryMap.Range(type: "ram", first: GFN(0), last: GFN(0xFF), populated: 256))
            // A guest gives its own page back (DOMID_SELF is its own id here).
            let guest = try SimClient(stateDirectory: GrantTableTests.state(sim), token: GrantTableTests.token(sim, "alpha"))
            try guest.decreaseReservationExact(domain: alpha, gfns: [GFN(0x400)])
            do {
                try guest.decreaseReservationExact(domain: alpha, gfns: [GFN(0x400)])
                Issue.record("decrease of a hole succeeded")
            } catch SimClientError.hypervisor(let errno, _) {
                #expect(errno == .invalid)
            }
            #expect(try dom0.memoryMap(domain: alpha).totPages == 256)
            let outcome = try dom0.setMemoryTarget(domain: alpha, targetMiB: 0)
            #expect(outcome.out.count == 256)
            #expect(outcome.maxPages == 256)
            map = try dom0.memoryMap(domain: alpha)
            #expect(map.totPages == 0)
            #expect(map.ballooned.count == 256)
            #expect(map.targetKiB == 0)

            sim.ok("domain", "set-max-mem", "alpha", "4096")
            #expect(sim.ok("domain", "populate", "alpha", "0x500", "0x501")["done"]?.int64 == 2)
            #expect(sim.ok("domain", "decrease", "alpha", "0x500")["done"]?.int64 == 1)
            #expect(sim.run(["domain", "decrease", "alpha", "0x500"]).status == 3)
        }
    }
}
