import Altp2m
@testable import Altp2mSim
import Foundation
import Testing

/// The daemon's parts on their own: JSON, the journal, table entries, and
/// `SimGuest` over an in-process engine.
@Suite("Daemon components")
struct ComponentTests {
    @Test("JSON: round trip, escapes, big unsigned numbers, errors with offsets")
    func json() throws {
        let text = #"{"b":[1,-2,18446744073709551615,1.5,true,null],"a":"q\"\\\n\u00e9\ud83d\ude00","ok":false}"#
        let value = try JSONValue.parse(text)
        #expect(value["b"]?.array?[2].uint64 == UInt64.max)
        #expect(value["b"]?.array?[1].int64 == -2)
        #expect(value["a"]?.string == "q\"\\\né😀")
        let again = try JSONValue.parse(value.serialized)
        #expect(again == value)
        #expect(value.serialized.hasPrefix(#"{"ok":false,"a":"#))
        #expect(throws: JSONParseError.self) { try JSONValue.parse("{\"a\":1,}") }
        #expect(throws: JSONParseError.self) { try JSONValue.parse("[1] x") }
    }

    @Test("journal: records survive reopening; a torn tail is cut off")
    func journal() throws {
        let path = NSTemporaryDirectory() + "/journal-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        do {
            let journal = try Journal(path: path)
            try journal.append(["op": "one"])
            try journal.append(["op": "two", "n": 2])
        }
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data([9, 0, 0, 0, 0, 0, 0, 0, 0x7B]))
        handle.closeFile()
        let journal = try Journal(path: path)
        let contents = try journal.readAll()
        #expect(contents.records == [["op": "one"], ["op": "two", "n": 2]])
        #expect(contents.discardedBytes == 9)
        try journal.append(["op": "three"])
        #expect(try Journal(path: path).readAll().records.count == 3)
        try journal.replace(with: [["op": "only"]])
        #expect(try Journal(path: path).readAll().records == [["op": "only"]])
    }

    @Test("control region entries encode the mfn, type, sve, access and effective permissions")
    func entries() {
        let entry = P2MEntry(mfn: MFN(0x12345), type: .ramLogDirty, access: .readWrite, suppressVE: false)
        let raw = ControlRegionLayout.encode(entry)
        #expect(ControlRegionLayout.decode(raw) == entry)
        #expect(ControlRegionLayout.permits(raw, .read))
        #expect(!ControlRegionLayout.permits(raw, .write))   // log-dirty forbids writes
        #expect(ControlRegionLayout.mfn(raw) == 0x12345)
        #expect(ControlRegionLayout.decode(0) == nil)
        #expect(GuestWindow.protection(raw) == PROT_READ)
    }

    @Test("SimGuest over an in-process engine: VMFUNC, accesses, faults")
    func inProcessGuest() throws {
        let engine = try Altp2mEngine(frameCount: 4096)
        let domain = try engine.createDomain(DomainConfig(name: "p", vcpuCount: 1, pages: 512, altp2mMode: .external))
        try engine.setDomainState(domain, active: true)
        let view = try engine.createView(domain, defaultAccess: .readWriteExecute)
        try engine.changeGFN(domain, view: view, oldGFN: 0x100, newGFN: 0x1F0)
        try engine.vcpuEnableNotify(domain, vcpu: 0, gfn: 0x180)
        let guest = try SimGuest(engine: engine, domain: domain)
        #expect(guest.currentView == 0)
        #expect(guest.vmfunc(UInt32(view.rawValue)) == .switched(from: 0, to: view))
        try guest.write(gfn: 0x100, offset: 8, bytes: Array("remapped".utf8))
        #expect(guest.vmfunc(0) == .switched(from: view, to: 0))
        #expect(try guest.read(gfn: 0x1F0, offset: 8, count: 8) == Array("remapped".utf8))
        #expect(guest.vmfunc(7) == .invalidOpcode(.vmExit))
        #expect(throws: GuestMemoryFault.noMapping) { try guest.read(gfn: 0x300, count: 1) }
        #expect(throws: GuestMemoryFault.outsidePage) { try guest.read(gfn: 0x100, offset: 4090, count: 8) }
        #expect(guest.probe(gfn: 0x100, kind: .read) == .notEnforced)
        #expect(guest.pointer(to: 0x1F0, for: .write) != nil)
        // Event words shared between in-process guests.
        let events = try SimEventWords()
        #expect(events.notify(domain: domain, port: 3))
        #expect(events.counter(domain: domain, port: 3) == 1)
        #expect(events.wait(domain: domain, port: 3, seen: 1, timeoutNanoseconds: 1_000_000) == 1)
        #expect(!events.notify(domain: domain, port: 64))
    }
}
