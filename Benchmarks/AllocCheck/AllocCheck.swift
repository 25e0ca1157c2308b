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
import BenchSupport
import Foundation
import SecureChannel
import Synchronization

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("alloc-check: \(message)\n".utf8))
    exit(2)
}

@main
enum AllocCheck {
    static func main() {
        let messages = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 100_000 : 100_000
        let size = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 64 : 64
        let mode: ChannelDescriptor.Mode = CommandLine.arguments.contains("--isolated") ? .isolated : .encrypted

        // A real channel on the in-process simulator.
        let world: InProcessChannelWorld
        do {
            world = try InProcessChannelWorld(mode: mode)
        } catch {
            fail("setting up the simulator failed: \(error)")
        }
        let stop = Atomic<Bool>(false)
        @Sendable func openEnd(_ index: Int) -> SecureChannel {
            do {
                return try world.openEnd(index, wait: .spin)
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
                while !stop.load(ordering: .relaxed) {
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
        stop.store(true, ordering: .relaxed)

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
