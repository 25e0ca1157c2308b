import Foundation
import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto

/// A fresh private directory, removed when the value is released.
final class TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/grant-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A clock the test sets.
final class TestClock: @unchecked Sendable {
    var now: UInt64 = 1_700_000_000
    func read() -> UInt64 { now }
}

/// An agent: its key pair and the domain it runs in.
struct Agent {
    var name: String
    var domain: DomainID
    var key: Curve25519.KeyAgreement.PrivateKey
}

/// The simulator, a host over it, a grant module and a set of agents.
final class SimWorld {
    let engine: Altp2mEngine
    let host: EngineChannelHost
    let directory = TemporaryDirectory()
    let clock = TestClock()
    var grants: GrantModule!
    var agents: [String: Agent] = [:]

    init(frameCount: Int = 16384, hostProfile: HostProfile = .default) throws {
        engine = try Altp2mEngine(host: hostProfile, frameCount: frameCount)
        host = EngineChannelHost(engine: engine)
        grants = try makeGrants(host: host)
    }

    /// A grant module on this world's state directory (and `host`, which may wrap ``host``).
    func makeGrants(host: any ChannelHost, registryStorage: (any RegistryStorage)? = nil) throws -> GrantModule {
        let clock = self.clock
        return try GrantModule(host: host, stateDirectory: directory.path + "/grant",
                               registryStorage: registryStorage, clock: { clock.read() })
    }

    /// Creates a domain with an agent whose key is registered.
    @discardableResult
    func addDomain(_ name: String, vcpus: UInt32 = 2, mode: Altp2mMode = .external, pages: UInt64 = 64) throws -> Agent {
        let id = try engine.createDomain(DomainConfig(name: name, vcpuCount: vcpus, pages: pages, altp2mMode: mode))
        let agent = Agent(name: name, domain: id, key: Curve25519.KeyAgreement.PrivateKey())
        try grants.registerAgentKey(agent.key.publicKey, forDomain: name)
        agents[name] = agent
        return agent
    }

    /// An opener for an agent, pinned to this world's host key.
    func opener(_ name: String) -> DescriptorOpenerFactory {
        DescriptorOpenerFactory(hostKey: grants.hostPublicKey, agent: agents[name]!)
    }
}

/// Builds openers (kept separate so tests can swap keys).
struct DescriptorOpenerFactory {
    var hostKey: Curve25519.Signing.PublicKey
    var agent: Agent
}

/// Everything about the simulator the grant module may change, except the
/// generation counters (which count changes, not state).
struct SimSnapshot: Equatable, CustomStringConvertible {
    struct DomainPart: Equatable {
        var isActive: Bool
        var mode: Altp2mMode
        var accessRequired: Bool
        var pauseCount: Int
        var host: [ViewTableEntry]
        var views: [ViewInfo]
        var viewEntries: [[ViewTableEntry]]
        var vcpus: [VCPUInfo]
    }

    var domains: [DomainID: DomainPart]
    var frames: FrameCounts
    var store: [String: EngineChannelHost.StoreEntry]
    var ports: [DomainID: Set<UInt32>]
    var channels: [String]
    var registryFile: [UInt8]?

    init(_ world: SimWorld, grants: GrantModule? = nil) throws {
        let engine = world.engine
        var parts: [DomainID: DomainPart] = [:]
        for info in engine.domainList() where info.id != .controlDomain {
            let status = try engine.domainStatus(info.id)
            var views: [ViewInfo] = []
            var entries: [[ViewTableEntry]] = []
            for index in 0..<status.viewCount {
                views.append(try engine.viewInfo(info.id, view: ViewID(UInt16(index))))
                entries.append(try engine.entries(info.id, .view(ViewID(UInt16(index)))))
            }
            parts[info.id] = DomainPart(
                isActive: status.isActive, mode: status.mode, accessRequired: status.accessRequired,
                pauseCount: status.pauseCount, host: try engine.entries(info.id, .host), views: views,
                viewEntries: entries,
                vcpus: try (0..<info.vcpuCount).map { try engine.vcpuInfo(info.id, vcpu: VCPUID($0)) })
        }
        domains = parts
        frames = engine.frameCounts
        store = world.host.storeEntries
        ports = world.host.allocatedPorts
        channels = (grants ?? world.grants).listChannels().map(\.name)
        registryFile = FileManager.default.contents(atPath: world.directory.path + "/grant/channels.json").map { Array($0) }
    }

    var description: String {
        "\(domains.count) domains, frames \(frames), \(store.count) store entries, ports \(ports), channels \(channels)"
    }

    /// The first difference, for a readable failure message.
    func difference(from other: SimSnapshot) -> String {
        if frames != other.frames { return "frames \(other.frames) -> \(frames)" }
        if store != other.store { return "store \(other.store.keys.sorted()) -> \(store.keys.sorted())" }
        if ports != other.ports { return "ports \(other.ports) -> \(ports)" }
        if channels != other.channels { return "channels \(other.channels) -> \(channels)" }
        if registryFile != other.registryFile { return "registry file changed" }
        for (id, part) in domains {
            guard let old = other.domains[id] else { return "\(id) appeared" }
            if part.isActive != old.isActive { return "\(id) active \(old.isActive) -> \(part.isActive)" }
            if part.accessRequired != old.accessRequired { return "\(id) access_required \(old.accessRequired) -> \(part.accessRequired)" }
            if part.pauseCount != old.pauseCount { return "\(id) pause count \(old.pauseCount) -> \(part.pauseCount)" }
            if part.host != old.host {
                let added = Set(part.host).subtracting(old.host), removed = Set(old.host).subtracting(part.host)
                return "\(id) host p2m: +\(added.sorted { $0.gfn < $1.gfn }.prefix(3)) -\(removed.sorted { $0.gfn < $1.gfn }.prefix(3))"
            }
            for index in part.views.indices where part.views[index] != old.views[index] {
                return "\(id) view \(index): \(old.views[index]) -> \(part.views[index])"
            }
            for index in part.viewEntries.indices where part.viewEntries[index] != old.viewEntries[index] {
                let added = Set(part.viewEntries[index]).subtracting(old.viewEntries[index])
                let removed = Set(old.viewEntries[index]).subtracting(part.viewEntries[index])
                return "\(id) view \(index) entries: +\(added.sorted { $0.gfn < $1.gfn }.prefix(3)) -\(removed.sorted { $0.gfn < $1.gfn }.prefix(3))"
            }
            if part.vcpus != old.vcpus { return "\(id) vcpus \(old.vcpus) -> \(part.vcpus)" }
        }
        return "no difference"
    }
}

extension ChannelSetupError {
    var stepName: SetupStep { failedStep }
}
