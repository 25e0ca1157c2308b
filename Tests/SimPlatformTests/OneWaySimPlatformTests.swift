import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import Foundation
import SecureChannel
import Testing

/// Hands a value to another thread or task. @unchecked: every test hands
/// a channel to exactly one user at a time (an OS thread, or the task that
/// iterates it) and reads results only after joining.
struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// An engine, the grant module over it and one channel between `alpha`
/// (created first: the lower domain id, so the initiator, and the writer of
/// a one-way channel) and `beta`, opened through `SimGuestPlatform`s.
final class ChannelWorld: @unchecked Sendable {
    // @unchecked: set up on the test's thread; afterwards each end is used
    // by one thread, and the engine only under `lock`.
    let directory = TemporaryDirectory()
    let engine: Altp2mEngine
    let host: EngineChannelHost
    let grants: GrantModule
    let lock = SimEngineLock()
    let domains: [DomainID]
    let keys = [Curve25519.KeyAgreement.PrivateKey(), Curve25519.KeyAgreement.PrivateKey()]
    let name = "stream"

    init(oneWay: Bool, mode: ChannelDescriptor.Mode = .encrypted, pages: Int = 4) throws {
        engine = try Altp2mEngine(host: .default, frameCount: 16384)
        host = EngineChannelHost(engine: engine)
        grants = try GrantModule(host: host, stateDirectory: directory.path + "/grant")
        var made: [DomainID] = []
        for (index, domain) in ["alpha", "beta"].enumerated() {
            made.append(try engine.createDomain(DomainConfig(name: domain, vcpuCount: 1, pages: 64, altp2mMode: .external)))
            try grants.registerAgentKey(keys[index].publicKey, forDomain: domain)
        }
        domains = made
        try grants.allow("alpha", "beta", maxPages: 64, modes: [.encrypted, .isolated])
        _ = try grants.createChannel(ChannelRequest(name: name, between: "alpha", and: "beta", pageCount: pages,
                                                    oneWay: oneWay, mode: mode))
    }

    func platform(_ index: Int) throws -> SimGuestPlatform {
        let guest = try lock.withLock { () throws -> SimGuest in try SimGuest(engine: engine, domain: domains[index]) }
        return SimGuestPlatform(guest: guest, descriptors: host, lock: lock)
    }

    /// Opens end `index` (0: alpha, 1: beta) on the calling thread.
    func open(_ index: Int, wait: WaitStrategy) throws -> SecureChannel {
        let platform = try platform(index)
        var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
        return try SecureChannel.open(channel: name, descriptor: try platform.readDescriptor(named: name), agentKey: keys[index],
                                      hostKey: grants.hostPublicKey, platform: platform,
                                      options: .init(wait: wait, handshakeTimeout: .seconds(10)), replayGuard: &replayGuard)
    }

    /// Both ends, each opened on its own OS thread (the handshake needs both).
    func openBoth(wait: WaitStrategy) throws -> (alpha: SecureChannel, beta: SecureChannel) {
        let a = OSThread { Unchecked(try self.open(0, wait: wait)) }
        let b = OSThread { Unchecked(try self.open(1, wait: wait)) }
        let beta = Result { try b.value() }
        let alpha = try a.value().value
        return (alpha, try beta.get().value)
    }

    /// The window as a third mapping in beta's domain (the simulator hands
    /// out shared memory), for tests that play a hostile party.
    func window() throws -> UnsafeMutableRawPointer {
        let end = try grants.showChannel(name).channel.responder
        let pages = try grants.showChannel(name).channel.pageCount
        return try platform(1).mapWindow(view: end.view, firstGFN: end.windowFirstGFN, pageCount: pages)
    }
}

/// Checksum over a message stream (FNV-1a, length first).
struct Checksum: Equatable {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325
    mutating func add(_ message: [UInt8]) {
        withUnsafeBytes(of: UInt32(message.count).littleEndian) { for b in $0 { mix(b) } }
        for b in message { mix(b) }
    }
    private mutating func mix(_ b: UInt8) { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
}

func message(_ index: Int, size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ index &* 11 &+ size) }
}

/// The error `body` throws, if any (threads return it; the test checks it).
func channelError(_ body: () throws -> Void) -> ChannelError? {
    do { try body(); return nil } catch let error as ChannelError { return error } catch {
        return .platform("unexpected \(error)")
    }
}

@Suite("One-way channels through the grant module", .serialized)
struct OneWaySimPlatformTests {
    @Test("the grant module's one-way channel opens; 0 B to the largest message arrive in order and intact",
          arguments: [ChannelDescriptor.Mode.encrypted, .isolated], [WaitStrategy.spin, .block])
    func stream(mode: ChannelDescriptor.Mode, wait: WaitStrategy) throws {
        let world = try ChannelWorld(oneWay: true, mode: mode, pages: 5)
        let (writer, reader) = try world.openBoth(wait: wait)
        #expect(writer.isOneWay && reader.isOneWay)
        #expect(writer.canSend && !writer.canReceive)
        #expect(reader.canReceive && !reader.canSend)
        #expect(writer.endpoint.handshakeHash == reader.endpoint.handshakeHash)
        let maximum = writer.maximumMessageBytes
        var sizes = [0, 1, 16, 17, 4000, maximum - 1, maximum]
        for i in 0..<300 { sizes.append((i &* 1_231) % (maximum + 1)) }
        let w = Unchecked(writer), r = Unchecked(reader), allSizes = sizes
        let sending = OSThread { () throws -> Checksum in
            var sum = Checksum()
            for (i, size) in allSizes.enumerated() {
                let m = message(i, size: size)
                sum.add(m)
                try w.value.send(m, timeout: .seconds(10))
            }
            try w.value.close(timeout: .seconds(10))
            return sum
        }
        let receiving = OSThread { () throws -> (Checksum, Int, Int, [ChannelError?]) in
            var sum = Checksum()
            var count = 0, wrong = 0
            while true {
                let m: [UInt8]
                do { m = try r.value.receive(timeout: .seconds(10)) } catch ChannelError.peerClosed { break }
                sum.add(m)
                if count >= allSizes.count || m != message(count, size: allSizes[count]) { wrong += 1 }
                count += 1
            }
            let refused = [channelError { try r.value.send([1]) }, channelError { _ = try r.value.trySend(UnsafeRawBufferPointer(start: nil, count: 0)) }]
            try r.value.close()
            return (sum, count, wrong, refused)
        }
        let (got, count, wrong, refused) = try receiving.value()
        let sent = try sending.value()
        #expect(count == sizes.count)
        #expect(wrong == 0)
        #expect(got == sent)
        #expect(refused == [.receiveOnly, .receiveOnly])
        #expect(channelError { _ = try writer.receive(timeout: .milliseconds(10)) } == .sendOnly)
    }
}
