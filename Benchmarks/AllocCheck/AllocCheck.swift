// alloc-check: proves that the spin-mode data path allocates nothing.
//
// This executable links `AllocationCounter`, which interposes malloc and
// friends for the whole process. It sets up a real channel on the in-process
// simulator (engine, grant module, two guest vCPUs on two threads), warms it
// up, then counts every heap allocation of the process while the two sides
// exchange messages in spin mode with the zero-copy API (`send` of a buffer,
// `receive(into:)`). It prints the allocations per message and exits 1 if
// there are any.
//
//   swift build -c release --product alloc-check && .build/release/alloc-check
import AllocationCounter
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import Foundation
import SecureChannel
import Synchronization

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("alloc-check: \(message)\n".utf8))
    exit(2)
}

/// The simulator and both ends; shared with the echo thread, which only
/// reads it after set-up (hence unchecked).
final class World: @unchecked Sendable {
    var engine: Altp2mEngine!
    var host: EngineChannelHost!
    var grants: GrantModule!
    var domains: [DomainID] = []
    let keys = [Curve25519.KeyAgreement.PrivateKey(), Curve25519.KeyAgreement.PrivateKey()]
    let lock = SimEngineLock()
    let stop = Atomic<Bool>(false)
}

@main
enum AllocCheck {
    static func main() {

        let messages = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 100_000 : 100_000
        let size = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 64 : 64
        let mode: ChannelDescriptor.Mode = CommandLine.arguments.contains("--isolated") ? .isolated : .encrypted

        // The in-process simulator with a channel between two domains.
        let stateDirectory = NSTemporaryDirectory() + "alloc-check-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: stateDirectory) }
        let world = World()
        do {
            world.engine = try Altp2mEngine(frameCount: 8192)
            world.host = EngineChannelHost(engine: world.engine)
            world.grants = try GrantModule(host: world.host, stateDirectory: stateDirectory)
            for (index, name) in ["left", "right"].enumerated() {
                world.domains.append(try world.engine.createDomain(
                    DomainConfig(name: name, vcpuCount: 1, pages: 256, altp2mMode: .external)))
                try world.grants.registerAgentKey(world.keys[index].publicKey, forDomain: name)
            }
            try world.grants.allow("left", "right", maxPages: 17, modes: [.encrypted, .isolated])
            _ = try world.grants.createChannel(ChannelRequest(name: "check", between: "left", and: "right",
                                                              pageCount: 17, mode: mode))
        } catch {
            fail("setting up the simulator failed: \(error)")
        }

        /// Opens one end on the calling thread.
        @Sendable func openEnd(_ index: Int) -> SecureChannel {
            do {
                let guest = try world.lock.withLock { () throws -> SimGuest in
                    try SimGuest(engine: world.engine, domain: world.domains[index], vcpu: 0)
                }
                let platform = SimGuestPlatform(guest: guest, descriptors: world.host, lock: world.lock)
                let descriptor = try platform.readDescriptor(named: "check")
                return try SecureChannel.open(descriptor: descriptor, agentKey: world.keys[index],
                                              hostKey: world.grants.hostPublicKey,
                                              platform: platform, options: .init(wait: .spin))
            } catch {
                fail("opening end \(index) failed: \(error)")
            }
        }

        let echoReady = DispatchSemaphore(value: 0)
        let echo = Thread {
            let channel = openEnd(1)
            echoReady.signal()
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
            do {
                while !world.stop.load(ordering: .relaxed) {
                    guard let n = try channel.tryReceive(into: buffer) else { continue }
                    try channel.send(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                }
            } catch ChannelError.peerClosed {
            } catch {
                fail("echo side failed: \(error)")
            }
        }
        echo.start()
        let channel = openEnd(0)
        echoReady.wait()

        let message = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        message.initializeMemory(as: UInt8.self, repeating: 0x5A)
        let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

        func roundTrips(_ count: Int) {
            do {
                for _ in 0..<count {
                    try channel.send(UnsafeRawBufferPointer(message))
                    _ = try channel.receive(into: reply)
                }
            } catch {
                fail("round trip failed: \(error)")
            }
        }

        roundTrips(10_000)   // warm-up: lazy initialisation, first-touch of pages
        let before = allocation_counter_allocations()
        let started = ContinuousClock.now
        roundTrips(messages)
        let elapsed = ContinuousClock.now - started
        let allocations = allocation_counter_allocations() - before
        world.stop.store(true, ordering: .relaxed)

        let perMessage = Double(allocations) / Double(2 * messages)
        let (s, a) = elapsed.components
        let nsPerRoundTrip = (Double(s) * 1e9 + Double(a) / 1e9) / Double(messages)
        // The counter must be live, or a zero above would prove nothing: set-up
        // allocated plenty.
        guard before > 1000 else { fail("the allocation counter is not interposed (\(before) allocations during set-up)") }
        print("alloc-check: \(mode) \(size) B, \(messages) round trips (\(2 * messages) messages), \(allocations) allocations, \(perMessage) per message, \(Int(nsPerRoundTrip)) ns per round trip")
        exit(allocations == 0 ? 0 : 1)
    }
}
