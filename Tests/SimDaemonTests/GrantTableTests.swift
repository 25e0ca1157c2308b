import Altp2m
@testable import Altp2mSim
import Foundation
import Testing

/// Xen grant tables served by the daemon: each test names the function of
/// Xen 4.17's `xen/common/grant_table.c`, `xen/arch/x86/hvm/grant_table.c`
/// or `xen/arch/x86/mm/p2m.c` (or of the Linux gntalloc/gntdev drivers
/// behind libxengntshr/libxengnttab) whose rule it checks.
@Suite("Grant tables", .serialized)
struct GrantTableTests {
    static func token(_ sim: ChanctlHarness, _ name: String) throws -> String {
        try EventChannelTests.token(sim, name)
    }

    static func state(_ sim: ChanctlHarness) -> StateDirectory { StateDirectory(path: sim.stateDir) }

    static func domid(_ sim: ChanctlHarness, _ name: String) -> DomainID {
        let id = sim.ok("domain", "list")["domains"]?.array?.first { $0["name"]?.string == name }?["domid"]?.int64 ?? 0
        return DomainID(rawValue: UInt16(id))
    }

    static func dom0(_ sim: ChanctlHarness) throws -> SimClient { try SimClient(stateDirectory: state(sim)) }

    static func hostEntry(_ dom0: SimClient, _ domain: String, _ gfn: GFN) throws -> JSONValue {
        try dom0.call("sim.view-entry", ["domain": .string(domain), "table": "host", "gfn": gfn.json])
    }

    static func errno(_ body: () throws -> Void) -> String? { EventChannelTests.errno(body) }

    @Test("gnttab_grant_foreign_access + map_grant_ref/create_grant_p2m_mapping: bytes written through the share are read through the mapping, both ways")
    func shareMapUnmap() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            sim.ok("domain", "create", "beta", "--memory-mib", "1")
            let beta = Self.domid(sim, "beta")
            let shr = try SimGrantShare(stateDirectory: Self.state(sim), token: Self.token(sim, "alpha"))
            let tab = try SimGrantTable(stateDirectory: Self.state(sim), token: Self.token(sim, "beta"))
            let share = try shr.sharePages(with: beta, count: 2, writable: true)
            // Linux keeps references 0...7 (GNTTAB_NR_RESERVED_ENTRIES); gntalloc's
            // pages are the kernel's highest free RAM pages.
            #expect(share.refs == [8, 9])
            #expect(share.gfns == [GFN(0xFF), GFN(0xFE)])
            share.pointer.storeBytes(of: 0xA11CE, as: UInt64.self)
            (share.pointer + 4096).storeBytes(of: 0xB0B, as: UInt64.self)

            let mapping = try tab.mapGrantRefs(domain: Self.domid(sim, "alpha"), refs: share.refs, writable: true)
            #expect(mapping.mfns == share.mfns)
            // unpopulated-alloc: the first 32768-aligned free section above RAM, lowest page first.
            #expect(mapping.gfns == [GFN(0x8000), GFN(0x8001)])
            #expect(mapping.pointer.load(as: UInt64.self) == 0xA11CE)
            #expect((mapping.pointer + 4096).load(as: UInt64.self) == 0xB0B)
            (mapping.pointer + 8).storeBytes(of: 0xBE7A, as: UInt64.self)
            #expect((share.pointer + 8).load(as: UInt64.self) == 0xBE7A)

            let dom0 = try Self.dom0(sim)
            let entry = try Self.hostEntry(dom0, "beta", mapping.gfns[0])
            #expect(entry["type"]?.string == "p2m_grant_map_rw")
            let list = try dom0.call("gnttab.list", ["domain": "alpha"])
            #expect(list["grants"]?.array?.first?["writing"]?.bool == true)
            // tot_pages counts only the domain's own frames, not grant mappings.
            let pages = sim.ok("domain", "list")["domains"]?.array?.first { $0["name"]?.string == "beta" }?["pages"]?.int64
            #expect(pages == 256)

            try tab.unmap(mapping)
            #expect(try Self.hostEntry(dom0, "beta", mapping.gfns[0])["present"]?.bool == false)
            #expect(try dom0.call("gnttab.list", ["domain": "alpha"])["grants"]?.array?.first?["reading"]?.bool == false)
            let ended = try shr.unshare(share)
            #expect(ended.ended == share.refs && ended.deferred.isEmpty)
            // put_free_entry: the freed references are handed out again, last freed first.
            let again = try shr.sharePages(with: beta, count: 1, writable: true)
            #expect(again.refs == [9])
        }
    }

    @Test("_set_status_v1 and map_grant_ref errors: write-pin of a r/o grant, bad ref, another domain's grant, no domain; a r/o mapping discards writes")
    func readOnlyAndMapErrors() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            sim.ok("domain", "create", "beta", "--memory-mib", "1")
            sim.ok("domain", "create", "gamma", "--memory-mib", "1")
            let alpha = Self.domid(sim, "alpha")
            let shr = try SimGrantShare(stateDirectory: Self.state(sim), token: Self.token(sim, "alpha"))
            let tab = try SimGrantTable(stateDirectory: Self.state(sim), token: Self.token(sim, "beta"))
            let other = try SimGrantTable(stateDirectory: Self.state(sim), token: Self.token(sim, "gamma"))
            let share = try shr.sharePages(with: Self.domid(sim, "beta"), count: 1, writable: false)

            // "Attempt to write-pin a r/o grant entry": GNTST_general_error; gntdev says EINVAL.
            #expect(Self.errno { _ = try tab.mapGrantRefs(domain: alpha, refs: share.refs, writable: true) } == "EINVAL")
            #expect(tab.lastStatuses == [.generalError])
            // Beyond nr_grant_entries (one frame of 512): GNTST_bad_gntref; within it but not granted: general error.
            #expect(Self.errno { _ = try tab.mapGrantRefs(domain: alpha, refs: [600], writable: false) } == "EINVAL")
            #expect(tab.lastStatuses == [.badGrantRef])
            #expect(Self.errno { _ = try tab.mapGrantRefs(domain: alpha, refs: [100], writable: false) } == "EINVAL")
            #expect(tab.lastStatuses == [.generalError])
            // Granted to beta, mapped by gamma: "Bad flags or dom", GNTST_general_error.
            #expect(Self.errno { _ = try other.mapGrantRefs(domain: alpha, refs: share.refs, writable: false) } == "EINVAL")
            #expect(other.lastStatuses == [.generalError])
            // rcu_lock_domain_by_id fails: GNTST_bad_domain. All or nothing: the good ref is not left mapped.
            #expect(Self.errno { _ = try tab.mapGrantRefs(domain: DomainID(rawValue: 999), refs: [8], writable: false) } == "EINVAL")
            #expect(tab.lastStatuses == [.badDomain])

            let mapping = try tab.mapGrantRefs(domain: alpha, refs: share.refs, writable: false)
            let dom0 = try Self.dom0(sim)
            #expect(try Self.hostEntry(dom0, "beta", mapping.gfns[0])["type"]?.string == "p2m_grant_map_ro")
            #expect(try dom0.call("gnttab.list", ["domain": "beta"])["mappings"]?.array?.count == 1)
            // A guest write to p2m_grant_map_ro is a type fault the engine discards.
            let write = try dom0.call("guest.access", ["domain": "beta", "vcpu": 0, "gfn": mapping.gfns[0].json, "kind": "w"])
            #expect(write["outcome"]?.string == "write_discarded")
            share.pointer.storeBytes(of: 42, as: UInt64.self)
            #expect(mapping.pointer.load(as: UInt64.self) == 42)
        }
    }

    @Test("replace_grant_p2m_mapping → p2m_remove_page → p2m_altp2m_propagate_change: unmapping a gfn in a view's remapped range resets the view; altp2m_get_effective_entry refuses a grant type, lazy copy takes it")
    func unmapResetsView() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            sim.ok("domain", "create", "beta", "--memory-mib", "1", "--altp2m", "external")
            let dom0 = try Self.dom0(sim)
            _ = try dom0.call("altp2m.set-state", ["domain": "beta", "state": 1])
            let view = try dom0.call("altp2m.create-view", ["domain": "beta", "default_access": "rwx"])["view"]!
            let shr = try SimGrantShare(stateDirectory: Self.state(sim), token: Self.token(sim, "alpha"))
            let tab = try SimGrantTable(stateDirectory: Self.state(sim), token: Self.token(sim, "beta"))
            let share = try shr.sharePages(with: Self.domid(sim, "beta"), count: 1, writable: true)
            let mapping = try tab.mapGrantRefs(domain: Self.domid(sim, "alpha"), refs: share.refs, writable: true)
            let gfn = mapping.gfns[0]

            // altp2m_get_effective_entry: the host entry is p2m_grant_map_rw, not p2m_ram_rw: ESRCH.
            #expect(Self.errno {
                _ = try dom0.call("altp2m.change-gfn", ["domain": "beta", "view": view, "old_gfn": "0x10", "new_gfn": gfn.json])
            } == "ESRCH")
            // p2m_set_mem_access skips a gfn whose lookup gives -ESRCH: no error, no entry.
            _ = try dom0.call("altp2m.set-access", ["domain": "beta", "view": view, "gfn": gfn.json, "access": "r"])
            #expect(try dom0.call("sim.view-entry", ["domain": "beta", "view": view, "gfn": gfn.json])["present"]?.bool == false)
            // p2m_altp2m_get_or_propagate copies any type: a guest access in the view copies it.
            _ = try dom0.call("altp2m.switch-view", ["domain": "beta", "view": view])
            #expect(try dom0.call("guest.access", ["domain": "beta", "vcpu": 0, "gfn": gfn.json, "kind": "r"])["outcome"]?.string == "lazy_copy_then_ok")
            _ = try dom0.call("altp2m.change-gfn", ["domain": "beta", "view": view, "old_gfn": "0x10", "new_gfn": gfn.json])
            let before = try dom0.call("sim.view-entry", ["domain": "beta", "view": view, "gfn": "0x10"])
            #expect(before["mfn"] == share.mfns[0].json)
            #expect(before["remapped_range"]?.array?.count == 2)

            try tab.unmap(mapping)
            let after = try dom0.call("sim.view-entry", ["domain": "beta", "view": view, "gfn": "0x10"])
            #expect(after["present"]?.bool == false)
            #expect(after["remapped_range"] == .null)
        }
    }

    @Test("gnttab_end_foreign_access_ref fails while GTF_reading/GTF_writing: gntalloc defers the end until the peer unmaps")
    func endAccessWhileMapped() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            sim.ok("domain", "create", "beta", "--memory-mib", "1")
            let shr = try SimGrantShare(stateDirectory: Self.state(sim), token: Self.token(sim, "alpha"))
            let tab = try SimGrantTable(stateDirectory: Self.state(sim), token: Self.token(sim, "beta"))
            let share = try shr.sharePages(with: Self.domid(sim, "beta"), count: 1, writable: true)
            let mapping = try tab.mapGrantRefs(domain: Self.domid(sim, "alpha"), refs: share.refs, writable: true)
            share.pointer.storeBytes(of: 7, as: UInt64.self)
            let outcome = try shr.unshare(share)
            #expect(outcome.ended.isEmpty && outcome.deferred == share.refs)
            let dom0 = try Self.dom0(sim)
            let grant = try dom0.call("gnttab.list", ["domain": "alpha"])["grants"]?.array?.first
            #expect(grant?["end_deferred"]?.bool == true)
            // The page stays: the peer still reads what was written.
            #expect(mapping.pointer.load(as: UInt64.self) == 7)
            // Unsharing it again: gntalloc no longer holds it (EINVAL).
            #expect(Self.errno { _ = try shr.unshare(refs: share.refs) } == "EINVAL")
            try tab.unmap(mapping)
            #expect(try dom0.call("gnttab.list", ["domain": "alpha"])["grants"]?.array?.isEmpty == true)
        }
    }

    @Test("gntalloc_release / gntdev_release: a closed handle's shares end and its mappings go (with the p2m removal)")
    func processExitReleases() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            sim.ok("domain", "create", "beta", "--memory-mib", "1")
            let shr = try SimGrantShare(stateDirectory: Self.state(sim), token: Self.token(sim, "alpha"))
            let tab = try SimGrantTable(stateDirectory: Self.state(sim), token: Self.token(sim, "beta"))
            let share = try shr.sharePages(with: Self.domid(sim, "beta"), count: 2, writable: true)
            let mapping = try tab.mapGrantRefs(domain: Self.domid(sim, "alpha"), refs: share.refs, writable: true)
            let dom0 = try Self.dom0(sim)
            // The sharer goes first: its grants are still mapped, so their end is deferred.
            shr.close()
            var grants: [JSONValue] = []
            for _ in 0..<200 {
                grants = try dom0.call("gnttab.list", ["domain": "alpha"])["grants"]?.array ?? []
                if grants.allSatisfy({ $0["end_deferred"]?.bool == true }) { break }
                usleep(10_000)
            }
            #expect(grants.count == 2 && grants.allSatisfy { $0["end_deferred"]?.bool == true })
            // Then the mapper: its mappings go, and with them the deferred grants.
            tab.close()
            var state: (JSONValue?, JSONValue?) = (nil, nil)
            for _ in 0..<200 {
                state = (try dom0.call("gnttab.list", ["domain": "beta"])["mappings"],
                         try dom0.call("gnttab.list", ["domain": "alpha"])["grants"])
                if state.0?.array?.isEmpty == true && state.1?.array?.isEmpty == true { break }
                usleep(10_000)
            }
            #expect(state.0?.array?.isEmpty == true && state.1?.array?.isEmpty == true)
            #expect(try Self.hostEntry(dom0, "beta", mapping.gfns[0])["present"]?.bool == false)
        }
    }

    @Test("domain_crash keeps the grant table; domain_kill: gnttab_release_mappings drops a dying mapper's pins; grant_table_destroy drops a dying granter's table while others' mappings keep its frames")
    func domainDestroy() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            sim.ok("domain", "create", "beta", "--memory-mib", "1")
            sim.ok("domain", "create", "gamma", "--memory-mib", "1")
            let alpha = Self.domid(sim, "alpha")
            let shr = try SimGrantShare(stateDirectory: Self.state(sim), token: Self.token(sim, "alpha"))
            let toBeta = try shr.sharePages(with: Self.domid(sim, "beta"), count: 1, writable: true)
            let toGamma = try shr.sharePages(with: Self.domid(sim, "gamma"), count: 1, writable: true)
            let beta = try SimGrantTable(stateDirectory: Self.state(sim), token: Self.token(sim, "beta"))
            let gamma = try SimGrantTable(stateDirectory: Self.state(sim), token: Self.token(sim, "gamma"))
            _ = try beta.mapGrantRefs(domain: alpha, refs: toBeta.refs, writable: true)
            let kept = try gamma.mapGrantRefs(domain: alpha, refs: toGamma.refs, writable: true)
            let dom0 = try Self.dom0(sim)
            func grant(_ ref: UInt32) throws -> JSONValue? {
                try dom0.call("gnttab.list", ["domain": "alpha"])["grants"]?.array?.first { $0["ref"]?.int64 == Int64(ref) }
            }
            #expect(try grant(toBeta.refs[0])?["writing"]?.bool == true)
            sim.ok("domain", "destroy", "beta")
            #expect(try grant(toBeta.refs[0])?["reading"]?.bool == false)

            toGamma.pointer.storeBytes(of: 99, as: UInt64.self)
            // A crash (domain_crash → domain_shutdown) releases nothing:
            // gnttab_release_mappings runs at domain_kill, i.e. destroy.
            sim.ok("domain", "crash", "alpha")
            let state = sim.ok("domain", "list")["domains"]?.array?.first { $0["name"]?.string == "alpha" }?["state"]?.string
            #expect(state == "crashed")
            #expect(try grant(toGamma.refs[0])?["writing"]?.bool == true)
            #expect(try Self.hostEntry(dom0, "gamma", kept.gfns[0])["type"]?.string == "p2m_grant_map_rw")
            sim.ok("domain", "destroy", "alpha")
            #expect(try Self.hostEntry(dom0, "gamma", kept.gfns[0])["type"]?.string == "p2m_grant_map_rw")
            #expect(kept.pointer.load(as: UInt64.self) == 99)
            try gamma.unmap(kept)
            #expect(try Self.hostEntry(dom0, "gamma", kept.gfns[0])["present"]?.bool == false)
        }
    }

    @Test("kill -9 of the daemon: grants and mappings come back from the journal; the handles are resumed with their keys")
    func recovery() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        try sim.start()
        sim.ok("domain", "create", "alpha", "--memory-mib", "1")
        sim.ok("domain", "create", "beta", "--memory-mib", "1")
        let shr = try SimGrantShare(stateDirectory: Self.state(sim), token: Self.token(sim, "alpha"))
        let tab = try SimGrantTable(stateDirectory: Self.state(sim), token: Self.token(sim, "beta"))
        let share = try shr.sharePages(with: Self.domid(sim, "beta"), count: 2, writable: true)
        let mapping = try tab.mapGrantRefs(domain: Self.domid(sim, "alpha"), refs: share.refs, writable: true)
        share.pointer.storeBytes(of: 0x5EED, as: UInt64.self)
        func lists() throws -> [String] {
            let dom0 = try Self.dom0(sim)
            return try ["alpha", "beta"].map { try dom0.call("gnttab.list", ["domain": .string($0)]).serialized }
        }
        let before = try lists()

        let pid = try #require(sim.daemonPID)
        Foundation.kill(pid, SIGKILL)
        var waited = 0
        while Foundation.kill(pid, 0) == 0 && waited < 200 { usleep(10_000); waited += 1 }
        try sim.start()

        #expect(try lists() == before)
        #expect(mapping.pointer.load(as: UInt64.self) == 0x5EED)
        let shr2 = try SimGrantShare.resume(stateDirectory: Self.state(sim), token: Self.token(sim, "alpha"),
                                            handle: try #require(shr.handle), key: try #require(shr.key))
        let tab2 = try SimGrantTable.resume(stateDirectory: Self.state(sim), token: Self.token(sim, "beta"),
                                            handle: try #require(tab.handle), key: try #require(tab.key))
        try tab2.unmap(mapping)
        #expect(try shr2.unshare(share).ended == share.refs)
    }
}
