import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import SecureChannel
import Testing

/// A 256 MiB byte stream through a channel on the in-process simulator
/// arrives complete and in order (SHA-256 on both ends), in both modes and
/// with every wait strategy.
@Suite("Byte streams", .serialized)
struct StreamTests {
    static let total = 256 << 20

    @Test("256 MiB arrive intact", .serialized, arguments: [ChannelDescriptor.Mode.encrypted, .isolated],
          [WaitStrategy.spin, .block, .adaptive])
    func stream(mode: ChannelDescriptor.Mode, wait: WaitStrategy) throws {
        let directory = TemporaryDirectory()
        let engine = try Altp2mEngine(host: .default, frameCount: 16384)
        let host = EngineChannelHost(engine: engine)
        let grants = try GrantModule(host: host, stateDirectory: directory.path + "/grant")
        let keys = [Curve25519.KeyAgreement.PrivateKey(), Curve25519.KeyAgreement.PrivateKey()]
        var domains: [DomainID] = []
        for (index, name) in ["writer", "reader"].enumerated() {
            domains.append(try engine.createDomain(DomainConfig(name: name, vcpuCount: 1, pages: 64, altp2mMode: .external)))
            try grants.registerAgentKey(keys[index].publicKey, forDomain: name)
        }
        try grants.allow("writer", "reader", maxPages: 33, modes: [.encrypted, .isolated])
        _ = try grants.createChannel(ChannelRequest(name: "bulk", between: "writer", and: "reader", pageCount: 33, mode: mode))
        let lock = SimEngineLock()
        let ends = try domains.map { domain in
            SimGuestPlatform(guest: try SimGuest(engine: engine, domain: domain), descriptors: host, lock: lock)
        }
        let envelopes = try ends.map { try $0.readDescriptor(named: "bulk") }
        let hostKey = grants.hostPublicKey
        let writerSide = Handoff((ends[0], envelopes[0], keys[0]))
        let readerSide = Handoff((ends[1], envelopes[1], keys[1]))

        let writer = OSThread { () throws -> [UInt8] in
            let (platform, envelope, key) = writerSide.value
            var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
            let channel = try SecureChannel.open(channel: "bulk", descriptor: envelope, agentKey: key, hostKey: hostKey,
                                                 platform: platform, options: .init(wait: wait), replayGuard: &replayGuard)
            let stream = channel.byteStream()
            let hash = SHA256()
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            for _ in 0..<(Self.total / chunk.count) {
                chunk.withUnsafeMutableBytes { bytes in
                    let words = bytes.bindMemory(to: UInt64.self)
                    for i in words.indices {
                        state = state &* 6364136223846793005 &+ 1442695040888963407
                        words[i] = state
                    }
                }
                hash.update(chunk)
                try stream.write(chunk, timeout: .seconds(120))
            }
            try stream.finish(timeout: .seconds(120))
            return hash.finalize()
        }
        let reader = OSThread { () throws -> ([UInt8], Int) in
            let (platform, envelope, key) = readerSide.value
            var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
            let channel = try SecureChannel.open(channel: "bulk", descriptor: envelope, agentKey: key, hostKey: hostKey,
                                                 platform: platform, options: .init(wait: wait), replayGuard: &replayGuard)
            let stream = channel.byteStream()
            let hash = SHA256()
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
            defer { buffer.deallocate() }
            var received = 0
            while true {
                let n = try stream.read(into: buffer, timeout: .seconds(120))
                if n == 0 { break }
                hash.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                received += n
            }
            return (hash.finalize(), received)
        }
        // 256 MiB through a debug build: minutes on a slow machine, not ten.
        let sent = try writer.value(within: .seconds(400))
        let (got, count) = try reader.value(within: .seconds(60))
        #expect(count == Self.total)
        #expect(got == sent)
    }
}
