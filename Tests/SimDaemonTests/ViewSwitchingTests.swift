import Altp2m
import Foundation
import Synchronization
import Testing
import XenInterface

/// `ViewSwitching`'s claims on their own, over a hardware whose threads all
/// run on one vCPU: one visit per vCPU at a time, no visit ended by a
/// thread that does not own it, and a slot taken over from a dead process.
@Suite("View switching: one visit per vCPU")
struct ViewSwitchingTests {
    /// Every thread on vCPU 0; identities given per OS thread by the test.
    final class OneVCPUHardware: XenGuestHardware, @unchecked Sendable {
        // @unchecked: the counters are atomics; identities are per thread.
        let path: String
        let switches = Atomic<Int>(0)
        nonisolated(unsafe) static var identity: [UInt: UInt64] = [:]
        static let lock = NSLock()

        init(path: String) { self.path = path }

        static func setIdentity(_ value: UInt64) {
            lock.withLock { identity[UInt(pthread_self())] = value }
        }

        func vmfunc(_ view: UInt16) -> Bool {
            switches.add(1, ordering: .relaxed)
            return true
        }
        func mapPhysical(firstGFN: UInt64, pageCount: Int, view: UInt16) throws(XenErrno) -> UnsafeMutableRawPointer {
            throw .invalid
        }
        func unmapPhysical(_ base: UnsafeMutableRawPointer, pageCount: Int) {}
        func guestFrame(of address: UnsafeRawPointer) throws(XenErrno) -> UInt64 { throw .notFound }
        func touch(_ address: UnsafeRawPointer) {}
        func pinnedVCPU() -> Int? { 0 }
        func pinCallingThread() throws(XenErrno) -> Int { 0 }
        func threadIdentity() -> UInt64 { Self.lock.withLock { Self.identity[UInt(pthread_self())] ?? 0 } }
        func threadMayLive(_ identity: UInt64) -> Bool { ViewClaimTable.ownerMayLive(identity) }
        func viewClaims() throws(XenErrno) -> ViewClaimTable { try ViewClaimTable.map(path: path) }
    }

    static func identity(pid: Int32, thread: UInt32) -> UInt64 { UInt64(UInt32(bitPattern: pid)) << 32 | UInt64(thread) }

    @Test("a second thread on the vCPU cannot switch inside the first one's visit; a leave by a thread that does not own the visit ends nothing")
    func oneVisitPerVCPU() throws {
        let directory = NSTemporaryDirectory() + "view-claims-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hardware = OneVCPUHardware(path: directory + "/view-claims")
        let switching = try ViewSwitching(hardware: hardware)
        let owner = Self.identity(pid: getpid(), thread: 1)
        OneVCPUHardware.setIdentity(owner)
        try switching.enter(3)
        let table = try hardware.viewClaims()
        #expect(table.word(0).pointee.load(ordering: .relaxed) == owner)

        let intruder = Self.identity(pid: getpid(), thread: 2)
        let outcome = Mutex<(Bool?, UInt64)>((nil, 0))
        let thread = Thread {
            OneVCPUHardware.setIdentity(intruder)
            let entered = try? switching.tryEnter(5)
            // Not the owner: its leave must not end the owner's visit.
            switching.leave()
            outcome.withLock { $0 = (entered, table.word(0).pointee.load(ordering: .relaxed)) }
        }
        thread.start()
        let deadline = Date().addingTimeInterval(10)
        while outcome.withLock({ $0.0 }) == nil, Date() < deadline { usleep(1000) }
        let (entered, after) = outcome.withLock { $0 }
        #expect(entered == false, "the intruder switched inside the owner's visit")
        #expect(after == owner, "the intruder's leave ended the owner's visit")
        switching.leave()
        #expect(table.word(0).pointee.load(ordering: .relaxed) == 0)
        #expect(try switching.tryEnter(5))
        switching.leave()
    }

    @Test("a slot whose owner's process is gone (killed inside a visit) is taken over, within a deadline")
    func takeoverFromDeadProcess() throws {
        let directory = NSTemporaryDirectory() + "view-claims-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hardware = OneVCPUHardware(path: directory + "/view-claims")
        let switching = try ViewSwitching(hardware: hardware)
        // A process that has exited and been reaped: its pid names nothing.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        let dead = Self.identity(pid: child.processIdentifier, thread: 9)
        let table = try hardware.viewClaims()
        table.word(0).pointee.store(dead, ordering: .releasing)
        let me = Self.identity(pid: getpid(), thread: 1)
        let finished = DispatchSemaphore(value: 0)
        let entered = Atomic<Bool>(false)
        // On a thread of its own: a claim that never ends fails the test at
        // the deadline instead of stalling the suite.
        Thread {
            OneVCPUHardware.setIdentity(me)
            if (try? switching.enter(3)) != nil { entered.store(true, ordering: .releasing) }
            finished.signal()
        }.start()
        #expect(finished.wait(timeout: .now() + 10) == .success, "the dead owner's slot was not taken over within 10 s")
        let didEnter = entered.load(ordering: .acquiring)
        #expect(didEnter)
        #expect(switching.slotTakeovers == 1)
        #expect(switching.contendedClaims == 1)
        #expect(table.word(0).pointee.load(ordering: .relaxed) == me)
    }
}
