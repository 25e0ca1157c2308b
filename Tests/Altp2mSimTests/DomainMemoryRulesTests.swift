import Altp2m
@testable import Altp2mSim
import Testing

/// Domain memory rules of the engine, read off Xen 4.17.0's source: the
/// frame a PV dom0's foreign mapping gets per p2m type, and what
/// `guest_remove_page` refuses. (The daemon's side, with real clients, is in
/// Tests/SimDaemonTests/DomainMemoryTests.swift.)
@Suite("Domain memory rules")
struct DomainMemoryRulesTests {
    /// Baseline B plus a second domain that grants a frame to D at `grant`.
    static func setUp() throws -> (b: Baseline, granter: DomainID, grant: GFN, mmioDirect: GFN, mmioDM: GFN, foreign: GFN) {
        let b = try Baseline()
        let granter = try b.engine.createDomain(Baseline.config(name: "G"))
        let granted = try #require(try b.engine.entry(granter, .host, gfn: G1)).mfn
        let grant = GFN(0x400), mmioDirect = GFN(0x401), mmioDM = GFN(0x402), foreign = GFN(0x403)
        try b.engine.addGrantMapping(b.d, at: grant, mfn: granted, readOnly: false)
        try b.engine.mapDirectMMIO(b.d, at: mmioDirect, mfn: MFN(0x10_0000))
        try b.engine.mapEmulatedMMIO(b.d, at: mmioDM)
        try b.engine.mapFrame(granted, into: b.d, at: foreign, type: .mapForeign)
        return (b, granter, grant, mmioDirect, mmioDM, foreign)
    }

    @Test("mod_l1_entry → get_page_from_gfn (p2m_get_page_from_gfn): RAM gives its page; a hole, MMIO and a grant mapping give none (-EINVAL); p2m_map_foreign fails get_page_from_l1e (-EBUSY); no domain -ESRCH")
    func foreignFramePerType() throws {
        let (b, _, grant, mmioDirect, mmioDM, foreign) = try Self.setUp()
        #expect(try b.engine.foreignFrame(b.d, gfn: G1) == (try b.hostMFN(G1)))
        // p2m_ram_ro and p2m_ram_logdirty are p2m_is_ram: dom0 gets the page.
        try b.engine.setHostType(b.d, gfn: G2, type: .ramRO)
        #expect(try b.engine.foreignFrame(b.d, gfn: G2) == (try b.hostMFN(G2)))
        try b.engine.setHostType(b.d, gfn: G3, type: .ramLogDirty)
        #expect(try b.engine.foreignFrame(b.d, gfn: G3) == (try b.hostMFN(G3)))
        // get_page(page, d) fails for the granter's page, and a grant type is not p2m_is_ram.
        #expect(rc { try b.engine.foreignFrame(b.d, gfn: grant) } == EINVAL)
        #expect(rc { try b.engine.foreignFrame(b.d, gfn: mmioDirect) } == EINVAL)
        #expect(rc { try b.engine.foreignFrame(b.d, gfn: mmioDM) } == EINVAL)
        #expect(rc { try b.engine.foreignFrame(b.d, gfn: H) } == EINVAL)
        // could_not_pin: xsm_priv_mapping(XSM_TARGET, D, G) refuses a guest.
        #expect(rc { try b.engine.foreignFrame(b.d, gfn: foreign) } == EBUSY)
        #expect(rc { try b.engine.foreignFrame(DomainID(rawValue: 77), gfn: G1) } == ESRCH)
    }

    @Test("guest_remove_page: a hole or p2m_mmio_dm -ENOENT, p2m_mmio_direct -EPERM, a page the domain does not own -ENXIO; decrease_reservation stops at the first")
    func guestRemovePagePerType() throws {
        let (b, granter, grant, mmioDirect, mmioDM, _) = try Self.setUp()
        func stop(_ gfn: GFN) throws -> XenErrno? {
            try b.engine.decreaseReservationExtents(b.d, gfns: [gfn]).stoppedBy
        }
        #expect(try stop(H) == .noEntry)
        #expect(try stop(mmioDM) == .noEntry)
        #expect(try stop(mmioDirect) == .notPermitted)
        #expect(try stop(grant) == .noDeviceOrAddress)
        // The grant mapping stays, and with it the granter's page.
        #expect(try b.engine.entry(b.d, .host, gfn: grant)?.type == .grantMapRW)
        #expect(try b.engine.entry(granter, .host, gfn: G1) != nil)
        // Pages before the failure are removed; the call stops there.
        let result = try b.engine.decreaseReservationExtents(b.d, gfns: [G1, H, G2])
        #expect(result.done == 1)
        #expect(result.stoppedBy == .noEntry)
        #expect(try b.engine.entry(b.d, .host, gfn: G1) == nil)
        #expect(try b.engine.entry(b.d, .host, gfn: G2) != nil)
    }

    @Test("domain_tot_pages counts the domain's own RAM, not grant, foreign or direct-MMIO entries; assign_pages refuses past max_pages (-E2BIG), and below tot_pages (-EPERM)")
    func totPagesAndAssignPages() throws {
        let (b, _, _, _, _, _) = try Self.setUp()
        #expect(try b.engine.totPages(b.d) == 256)
        try b.engine.setMaxMemory(b.d, kib: 257 * 4)
        let first = try b.engine.populatePhysmap(b.d, gfns: [GFN(0x500), GFN(0x501)])
        #expect(first.done == 1)
        #expect(first.stoppedBy == .tooBig)
        try b.engine.setMaxMemory(b.d, kib: 4)
        #expect(try b.engine.populatePhysmap(b.d, gfns: [GFN(0x502)]).stoppedBy == .notPermitted)
        #expect(try b.engine.maxPages(b.d) == 1)
    }
}
