import Foundation
import Synchronization
import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import SecureChannel
import XenGuest
import XenInterface

/// The view belongs to the vCPU, not to the thread: a channel's ring
/// accesses must happen on the vCPU that entered the channel view, with no
/// other switch on that vCPU in between (docs/XEN.md, "Threads, vCPUs and
/// views"). These tests run a channel over the Xen backend's own code on
/// xen-sim, with both domains on two vCPUs, `access_required` set by the
/// grant module, and a scheduler that migrates threads and preempts them
/// with another thread of the process at every schedule point of a send and
/// a receive (before each `VMFUNC`, and at the visit's first and last window
/// access, which `SimGuestHardware` makes then). A ring access in the wrong
/// view crashes the domain, as `p2m_mem_access_check` does on Xen.
@Suite("View visits on shared vCPUs (xen-sim)", .serialized)
struct ViewVisitTests {
    /// One domain's end: its libraries on vCPUs 0 and 1, its platform and
    /// agent key, and a thread per vCPU that intrudes on the other threads.
    final class Side: @unchecked Sendable {
        // @unchecked: made on the test thread, then used by the one thread
        // that runs the channel (the intruders run in its place).
        let platform: XenGuestPlatform
        let hardware: SimGuestHardware
        let key: Curve25519.KeyAgreement.PrivateKey
        let intruders: [GuestThread]
        /// Preemptions in which the intruder found the vCPU in another
        /// thread's visit, and those in which it switched views itself.
        let blocked = Atomic<Int>(0), switched = Atomic<Int>(0)

        init(fixture: XenSimFixture, domain: String, key: Curve25519.KeyAgreement.PrivateKey) throws {
            let libraries = try XenGuestLibraries.simulator(domain: domain, stateDirectory: fixture.state.path,
                                                            vcpu: 0, vcpus: [0, 1])
            platform = try XenGuestPlatform(libraries: libraries)
            hardware = try #require(libraries.hardware as? SimGuestHardware)
            self.key = key
            let guest = hardware.platform.guest
            intruders = try [UInt32(0), 1].map { vcpu in
                let thread = try guest.thread(named: "intruder-\(vcpu)", on: VCPUID(vcpu))
                try thread.pin(to: VCPUID(vcpu))
                return thread
            }
        }

        var guest: SimGuest { hardware.platform.guest }

        /// What another thread of the process does when the scheduler runs
        /// it on `victim`'s vCPU: a visit of its own to `view`, by the rule
        /// (`obeysRule`) or with a bare `VMFUNC` as code ignoring it would.
        func intrude(on victim: GuestThread, view: ViewID, obeysRule: Bool) {
            let intruder = intruders[Int(victim.vcpu.rawValue)]
            hardware.acting(as: intruder) {
                if obeysRule {
                    guard (try? platform.switching.tryEnter(view.rawValue)) == true else {
                        blocked.add(1, ordering: .relaxed)
                        return
                    }
                    switched.add(1, ordering: .relaxed)
                    platform.switching.leave()
                } else {
                    _ = hardware.vmfunc(view.rawValue)
                    _ = hardware.vmfunc(0)
                    switched.add(1, ordering: .relaxed)
                }
            }
        }
    }

    /// Two domains on two vCPUs each, a channel between them, and each
    /// side's libraries; `body` gets the sides and the channel's view ids.
    func withChannel(_ body: (XenSimFixture, Side, Side, GrantModule, ChannelSummary) throws -> Void) throws {
        let fixture = try XenSimFixture()
        defer { fixture.stop() }
        try fixture.addPair()
        let grants = try GrantModule(host: try fixture.control(), stateDirectory: fixture.directory.path + "/grants")
        try grants.allow("left", "right")
        let keys = [Curve25519.KeyAgreement.PrivateKey(), Curve25519.KeyAgreement.PrivateKey()]
        try grants.registerAgentKey(keys[0].publicKey, forDomain: "left")
        try grants.registerAgentKey(keys[1].publicKey, forDomain: "right")
        let made = try grants.createChannel(ChannelRequest(name: "visits", between: .name("left"), and: .name("right"),
                                                           pageCount: 4)).channel
        let left = try Side(fixture: fixture, domain: "left", key: keys[0])
        let right = try Side(fixture: fixture, domain: "right", key: keys[1])
        try body(fixture, left, right, grants, made)
        left.guest.scheduler = nil
        right.guest.scheduler = nil
    }

    /// Opens the channel on both sides, each on its own OS thread, and
    /// ping-pongs `rounds` messages; returns the failures (empty when every
    /// reply came back intact).
    func pingPong(_ left: Side, _ right: Side, hostKey: Curve25519.Signing.PublicKey, rounds: Int,
                  wait: WaitStrategy) throws -> [String] {
        let failures = Mutex<[String]>([])
        let done = DispatchGroup()
        for (index, side) in [left, right].enumerated() {
            let box = HandedOver(side)
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                let side = box.value
                do {
                    var guardState = DescriptorReplayGuard()
                    let envelope = try side.platform.readDescriptor(named: "visits")
                    let channel = try SecureChannel.open(channel: "visits", descriptor: envelope, agentKey: side.key,
                                                         hostKey: hostKey, platform: side.platform,
                                                         options: .init(wait: wait), replayGuard: &guardState)
                    var message = [UInt8](repeating: 0, count: 64)
                    for round in 0..<rounds {
                        withUnsafeBytes(of: UInt64(round).littleEndian) { message.replaceSubrange(0..<8, with: $0) }
                        if index == 0 {
                            try channel.send(message, timeout: .seconds(20))
                            let reply = try channel.receive(timeout: .seconds(20))
                            guard reply == message else { throw Mismatch(round: round) }
                        } else {
                            let got = try channel.receive(timeout: .seconds(20))
                            guard got == message else { throw Mismatch(round: round) }
                            try channel.send(got, timeout: .seconds(20))
                        }
                    }
                    if index == 0 { try channel.close() } else { _ = try? channel.receive(timeout: .seconds(20)) }
                } catch {
                    failures.withLock { $0.append("\(index == 0 ? "left" : "right"): \(error)") }
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        guard done.wait(timeout: .now() + 600) == .success else { return ["the ping-pong did not end within 600 s"] }
        return failures.withLock { $0 }
    }

    struct Mismatch: Error, CustomStringConvertible {
        let round: Int
        var description: String { "round \(round): the reply differs from the message" }
    }

    /// The domain's state as the simulator reports it (`running`, `crashed`).
    static func domainState(_ name: String, in fixture: XenSimFixture) -> String {
        guard let client = try? SimClient(stateDirectory: fixture.state) else { return "unreachable" }
        defer { client.close() }
        let list = (try? client.call("domain.list"))?["domains"]?.array ?? []
        return list.first { $0["name"]?.string == name }?["state"]?.string ?? "missing"
    }

    // MARK: The tests

    @Test("100 000 round trips under injected migrations and preemptions at every schedule point of a send and a receive: every reply intact, no domain crash; the migrations were refused (threads pinned) and the preemptions found the vCPU mid-visit")
    func soak() throws {
        try withChannel { fixture, left, right, grants, channel in
            let view = channel.initiator.view
            let schedulers = [left, right].enumerated().map { index, side in
                RandomGuestScheduler(seed: 0x5EED + UInt64(index), rate: 0.05, yields: false) { victim in
                    side.intrude(on: victim, view: view, obeysRule: true)
                }
            }
            left.guest.scheduler = schedulers[0]
            right.guest.scheduler = schedulers[1]
            let failures = try pingPong(left, right, hostKey: grants.hostPublicKey, rounds: 100_000, wait: .spin)
            #expect(failures.isEmpty, "\(failures)")
            for (name, side) in [("left", left), ("right", right)] {
                #expect(Self.domainState(name, in: fixture) == "running")
                #expect(side.hardware.visitFaults == 0, "\(name): window accesses outside the channel view")
                // The attacks happened: intruders found the vCPU mid-visit
                // and stayed out; migrations were drawn for pinned threads.
                #expect(side.blocked.load(ordering: .relaxed) > 0, "\(name): no preemption hit a visit")
            }
            let counts = schedulers.map { "\($0.points) points, \($0.refusedMigrations) migrations refused, \($0.preemptions) preemptions" }
            print("view visit soak: left \(counts[0]) (\(left.blocked.load(ordering: .relaxed)) found a visit open); right \(counts[1]) (\(right.blocked.load(ordering: .relaxed)) found a visit open)")
            for scheduler in schedulers {
                #expect(scheduler.refusedMigrations > 0, "no migration was drawn for a pinned thread")
                #expect(scheduler.preemptions > 1000)
            }
        }
    }

    @Test("the probe is real: a thread of the process that ignores the rule (a bare VMFUNC in the middle of another thread's visit) crashes the domain")
    func bareVMFUNCPreemptionCrashes() throws {
        try withChannel { fixture, left, right, grants, channel in
            let view = channel.initiator.view
            left.guest.scheduler = RandomGuestScheduler(seed: 7, rate: 0.2) { victim in
                left.intrude(on: victim, view: view, obeysRule: false)
            }
            let failures = try pingPong(left, right, hostKey: grants.hostPublicKey, rounds: 2_000, wait: .spin)
            #expect(!failures.isEmpty)
            #expect(Self.domainState("left", in: fixture) == "crashed", "\(failures)")
            #expect(left.hardware.visitFaults > 0)
        }
    }
}
