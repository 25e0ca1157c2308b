import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import Foundation
import SecureChannel

/// A real channel on the in-process simulator, for benchmarks and checks:
/// an altp2m engine, the grant module over it (in a private temporary state
/// directory), two domains with agent keys, one channel, and a way to open
/// either end from the thread that will use it.
///
/// Everything the data path touches is the real thing (ring, session,
/// simulator guest with software-enforced VMFUNC); only the processes are
/// threads of this one.
public final class InProcessChannelWorld: @unchecked Sendable {
    // @unchecked: set up on one thread; afterwards each end is opened and
    // used by its own thread, and the engine is guarded by `lock`.
    public let engine: Altp2mEngine
    public let host: EngineChannelHost
    public let grants: GrantModule
    public let lock = SimEngineLock()
    public let channelName = "bench"
    private let keys = [Curve25519.KeyAgreement.PrivateKey(), Curve25519.KeyAgreement.PrivateKey()]
    private var domains: [DomainID] = []
    private let stateDirectory: String

    public init(mode: ChannelDescriptor.Mode, suite: ChannelDescriptor.CipherSuite = .chachapoly,
                pages: Int = 17) throws {
        stateDirectory = NSTemporaryDirectory() + "secure-channel-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        engine = try Altp2mEngine(frameCount: 8192)
        host = EngineChannelHost(engine: engine)
        grants = try GrantModule(host: host, stateDirectory: stateDirectory)
        for (index, name) in ["left", "right"].enumerated() {
            domains.append(try engine.createDomain(DomainConfig(name: name, vcpuCount: 1, pages: 256, altp2mMode: .external)))
            try grants.registerAgentKey(keys[index].publicKey, forDomain: name)
        }
        try grants.allow("left", "right", maxPages: pages, modes: [.encrypted, .isolated])
        _ = try grants.createChannel(ChannelRequest(name: channelName, between: "left", and: "right",
                                                    pageCount: pages, suite: suite, mode: mode))
    }

    deinit {
        try? FileManager.default.removeItem(atPath: stateDirectory)
    }

    /// Opens end `index` (0 = the initiator "left", 1 = "right") on the
    /// calling thread; both ends must be opened concurrently (the handshake
    /// needs both).
    public func openEnd(_ index: Int, wait: WaitStrategy) throws -> SecureChannel {
        let guest = try lock.withLock { () throws -> SimGuest in
            try SimGuest(engine: engine, domain: domains[index], vcpu: 0)
        }
        let platform = SimGuestPlatform(guest: guest, descriptors: host, lock: lock)
        let descriptor = try platform.readDescriptor(named: channelName)
        var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
        return try SecureChannel.open(channel: channelName, descriptor: descriptor, agentKey: keys[index],
                                      hostKey: grants.hostPublicKey, platform: platform,
                                      options: .init(wait: wait), replayGuard: &replayGuard)
    }
}
