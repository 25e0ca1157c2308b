import Foundation
import Synchronization
import Altp2m
import ChannelCrypto
import SecureChannel
import XenGuest
import XenInterface

/// Ping-pong on many channels between two xen-sim guests while the host
/// destroys them one by one: one OS thread per side opens every channel,
/// then sweeps the channels still alive, a round trip on each per sweep.
/// A channel the test marked as being destroyed may fail; any other failure
/// is a survivor's error, which the test must not see.
final class ChannelTraffic: @unchecked Sendable {
    // @unchecked: the flags and counters are atomics or behind a mutex;
    // each side's channels are used by its one thread.
    let names: [String]
    /// Set by the test before it destroys a channel (``markDestroying(_:)``).
    private let destroying: Mutex<[Bool]>
    /// Round trips completed per channel.
    private let trips: Mutex<[Int]>
    /// Sweeps the initiating side has completed.
    let sweeps = Atomic<Int>(0)
    let failures = Mutex<[String]>([])
    private let finished = DispatchGroup()

    init(names: [String]) {
        self.names = names
        destroying = Mutex([Bool](repeating: false, count: names.count))
        trips = Mutex([Int](repeating: 0, count: names.count))
    }

    /// Says channel `index` is about to be destroyed: its failures are expected.
    func markDestroying(_ index: Int) { destroying.withLock { $0[index] = true } }

    private func isDestroying(_ index: Int) -> Bool { destroying.withLock { $0[index] } }

    /// Round trips channel `index` completed.
    func roundTrips(_ index: Int) -> Int { trips.withLock { $0[index] } }

    /// Starts a side's thread: it opens every channel (in the order of
    /// `names`, as the peer does), then sweeps until none is alive.
    func start(platform: XenGuestPlatform, key: Curve25519.KeyAgreement.PrivateKey,
               hostKey: Curve25519.Signing.PublicKey, initiates: Bool) {
        finished.enter()
        let box = UncheckedPlatform(platform)
        let thread = Thread { [self] in
            defer { finished.leave() }
            run(box.platform, key: key, hostKey: hostKey, initiates: initiates)
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Waits for both sides; false past `seconds`.
    func wait(seconds: Int) -> Bool {
        finished.wait(timeout: .now() + .seconds(seconds)) == .success
    }

    private func run(_ platform: XenGuestPlatform, key: Curve25519.KeyAgreement.PrivateKey,
                     hostKey: Curve25519.Signing.PublicKey, initiates: Bool) {
        let side = initiates ? "left" : "right"
        var replayGuard = DescriptorReplayGuard()
        var channels: [SecureChannel?] = []
        for name in names {
            do {
                let envelope = try platform.readDescriptor(named: name)
                channels.append(try SecureChannel.open(channel: name, descriptor: envelope, agentKey: key, hostKey: hostKey,
                                                       platform: platform,
                                                       options: .init(wait: .adaptive(spinFor: .microseconds(50))),
                                                       replayGuard: &replayGuard))
            } catch {
                failures.withLock { $0.append("\(side) \(name): open: \(error)") }
                channels.append(nil)
            }
        }
        var message = [UInt8](repeating: 0x5A, count: 64)
        while channels.contains(where: { $0 != nil }) {
            for index in channels.indices {
                guard let channel = channels[index] else { continue }
                if initiates, isDestroying(index) {
                    channels[index] = nil
                    continue
                }
                do {
                    if initiates {
                        message[0] = UInt8(truncatingIfNeeded: index)
                        try channel.send(message, timeout: .seconds(20))
                        guard try channel.receive(timeout: .seconds(20)) == message else {
                            throw ChannelError.protocolViolation("the reply differs from the message")
                        }
                        trips.withLock { $0[index] += 1 }
                    } else {
                        try channel.send(try channel.receive(timeout: .seconds(20)), timeout: .seconds(20))
                    }
                } catch {
                    channels[index] = nil
                    if !isDestroying(index) {
                        failures.withLock { $0.append("\(side) \(names[index]), a survivor: \(error)") }
                    }
                }
            }
            if initiates { sweeps.add(1, ordering: .releasing) }
        }
    }

    /// Waits until the initiating side completes a whole sweep that began
    /// after this call; false past `seconds`.
    func awaitSweep(seconds: Double) -> Bool {
        let target = sweeps.load(ordering: .acquiring) + 2
        let deadline = Date().addingTimeInterval(seconds)
        while sweeps.load(ordering: .acquiring) < target {
            guard Date() < deadline else { return false }
            usleep(500)
        }
        return true
    }
}

/// A platform handed to the one thread that uses it.
private struct UncheckedPlatform: @unchecked Sendable {
    let platform: XenGuestPlatform
    init(_ platform: XenGuestPlatform) { self.platform = platform }
}
