import Altp2m
@testable import Altp2mSim
import Testing

/// Spec §10 F: change_gfn and propagation.
@Suite("F. change_gfn and propagation")
struct ScenariosChangeGFNTests {
    /// S47's state: view 1 (default rwx) with G1 remapped to G2's frame by dom0.
    static func remapped(_ xen: XenVersion) throws -> Baseline {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.fill(G1, with: 0x11)
        try b.fill(G2, with: 0x22)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: G2)
        return b
    }

    @Test("S47 change_gfn remaps a gfn in one view only", arguments: everyProfile)
    func s47(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.fill(G1, with: 0x11)
        try b.fill(G2, with: 0x22)
        let hostBefore = try b.engine.entries(b.d, .host)
        #expect(rc { try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: G2) } == OK)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: G1) == .readWriteExecute)
        #expect(try b.engine.getSuppressVE(b.d, view: 1, gfn: G1) == true)

        #expect(try b.viewEntry(1, G1)?.mfn == b.hostMFN(G2))
        #expect(try b.engine.entries(b.d, .host) == hostBefore)
        #expect(try b.engine.entries(b.d, .view(0)).isEmpty)
        let view1 = try b.engine.viewInfo(b.d, view: 1)
        #expect(view1.remappedRange == G2...G2)

        try b.engine.switchToView(b.d, view: 1)
        #expect(try b.engine.guestRead(b.d, vcpu: v0, gfn: G1, count: 8).bytes == Array(repeating: 0x22, count: 8))
        try b.engine.switchToView(b.d, view: 0)
        #expect(try b.engine.guestRead(b.d, vcpu: v0, gfn: G1, count: 8).bytes == Array(repeating: 0x11, count: 8))
    }

    @Test("S48 change_gfn checks", arguments: everyProfile)
    func s48(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        #expect(rc { try b.engine.changeGFN(b.d, view: 4, oldGFN: G1, newGFN: G2) } == EINVAL)
        #expect(rc { try b.engine.changeGFN(b.d, view: 10, oldGFN: G1, newGFN: G2) } == EINVAL)
        #expect(rc { try b.engine.changeGFN(b.d, view: 1, oldGFN: H, newGFN: G2) } == ESRCH)
        #expect(try b.viewEntry(1, G1) == nil)
        #expect(rc { try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: H) } == ESRCH)
        // Nothing is left behind: Xen's lookup of the old gfn writes into the
        // view only for a host superpage (altp2m_get_effective_entry).
        #expect(try b.viewEntry(1, G1) == nil)
        #expect(try b.engine.viewInfo(b.d, view: 1).remappedRange == nil)
        #expect(b.hypercall(.changeGFN(b.d, view: 1, oldGFN: G1.rawValue, newGFN: G2.rawValue, pad1: 1)).rc == EINVAL)
        #expect(b.hypercall(.changeGFN(b.d, view: 1, oldGFN: G1.rawValue, newGFN: G2.rawValue, pad2: 1)).rc == EINVAL)
    }

    @Test("S51 reverting a remap drops the entry; the next access re-copies the host page", arguments: everyProfile)
    func s51(xen: XenVersion) throws {
        let b = try Self.remapped(xen)
        #expect(rc { try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: .invalid) } == OK)
        #expect(rc { try b.engine.getMemAccess(b.d, view: 1, gfn: G1) } == ESRCH)
        try b.engine.switchToView(b.d, view: 1)
        let read = try b.engine.guestRead(b.d, vcpu: v0, gfn: G1, count: 4)
        #expect(read.outcome == .lazyCopyThenOK(mfn: try b.hostMFN(G1), view: 1))
        #expect(read.bytes == [0x11, 0x11, 0x11, 0x11])
        #expect(try b.engine.viewInfo(b.d, view: 1).remappedRange == G2...G2)
        // Reverting a gfn the view does not hold does nothing.
        #expect(rc { try b.engine.changeGFN(b.d, view: 1, oldGFN: G3, newGFN: .invalid) } == OK)
        #expect(try b.viewEntry(1, G3) == nil)
    }

    @Test("S55 a drop outside the remapped range only removes that gfn", arguments: everyProfile)
    func s55(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: G2)
        try b.engine.setMemAccess(b.d, view: 1, gfn: 0x150, access: .none)
        try b.engine.setMemAccess(b.d, view: 1, gfn: 0x151, access: .none)
        let g2 = try b.hostMFN(G2)
        try b.engine.decreaseReservation(b.d, gfns: [0x151])
        #expect(rc { try b.engine.getMemAccess(b.d, view: 1, gfn: 0x151) } == ESRCH)
        #expect(try b.engine.getMemAccess(b.d, view: 1, gfn: 0x150) == MemAccess.none)
        #expect(try b.viewEntry(1, G1)?.mfn == g2)
        #expect(try b.engine.viewInfo(b.d, view: 1).remappedRange == G2...G2)
    }

    @Test("S56 a host write overwrites a remap with the host's mfn and access, keeping sve", arguments: everyProfile)
    func s56(xen: XenVersion) throws {
        let b = try Baseline(xen: xen, active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: G2)
        #expect(rc { try b.engine.setMemAccess(b.d, view: 0, gfn: G1, access: .readWrite) } == OK)
        let entry = try #require(try b.viewEntry(1, G1))
        #expect(entry.mfn == (try b.hostMFN(G1)))
        #expect(entry.access == .readWrite)
        #expect(entry.suppressVE == true)
        #expect(try b.engine.viewInfo(b.d, view: 1).remappedRange == G2...G2)
        #expect(try b.engine.getMemAccess(b.d, view: 0, gfn: G1) == .readWrite)

        // "sve kept": a view whose entry has sve 0 keeps 0 through the host write.
        try b.engine.changeGFN(b.d, view: 1, oldGFN: G1, newGFN: G2)
        try b.engine.setSuppressVE(b.d, view: 1, gfn: G1, suppress: false)
        try b.engine.setMemAccess(b.d, view: 0, gfn: G1, access: .readWriteExecute)
        let kept = try #require(try b.viewEntry(1, G1))
        #expect(kept.mfn == (try b.hostMFN(G1)))
        #expect(kept.suppressVE == false)
    }
}
