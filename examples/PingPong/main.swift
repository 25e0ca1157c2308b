// A channel between two threads on the in-process simulator, and its round trip.
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import Foundation
import SecureChannel

/// dom0's side: an engine, the grant module, two domains, agent keys, a policy rule, a channel.
final class World: @unchecked Sendable {  // @unchecked: the engine is reached under `lock` only
    let directory = NSTemporaryDirectory() + "pingpong-\(getpid())"
    let engine: Altp2mEngine, host: EngineChannelHost, grants: GrantModule
    let keys = ["ping": Curve25519.KeyAgreement.PrivateKey(), "echo": Curve25519.KeyAgreement.PrivateKey()]
    var domains: [String: DomainID] = [:]
    let lock = SimEngineLock()

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        engine = try Altp2mEngine(host: .default, frameCount: 16384)
        host = EngineChannelHost(engine: engine)
        grants = try GrantModule(host: host, stateDirectory: directory + "/grant")
        for name in ["ping", "echo"] {
            domains[name] = try engine.createDomain(DomainConfig(name: name, vcpuCount: 1, pages: 64, altp2mMode: .external))
            try grants.registerAgentKey(keys[name]!.publicKey, forDomain: name)
        }
        try grants.allow("ping", "echo")
        _ = try grants.createChannel(ChannelRequest(name: "demo", between: "ping", and: "echo", pageCount: 8))
    }

    /// What a guest does: attach one vCPU, read its descriptor, open (the handshake waits for the peer).
    func open(_ name: String) throws -> SecureChannel {
        let platform = SimGuestPlatform(guest: try SimGuest(engine: engine, domain: domains[name]!), descriptors: host, lock: lock)
        var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
        return try SecureChannel.open(channel: "demo", descriptor: try platform.readDescriptor(named: "demo"),
                                      agentKey: keys[name]!, hostKey: grants.hostPublicKey, platform: platform,
                                      options: .init(wait: .spin), replayGuard: &replayGuard)
    }
}

let count = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 10_000
let world = try World()
defer { try? FileManager.default.removeItem(atPath: world.directory) }

let echo = Thread {  // the echo agent, on an OS thread of its own
    do {
        let channel = try world.open("echo")
        var buffer = [UInt8](repeating: 0, count: channel.maximumMessageBytes)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try channel.receive(into: $0) }
            try channel.send(Array(buffer[0..<n]))
        }
    } catch ChannelError.peerClosed {
    } catch { print("echo: \(error)") }
}
echo.start()

let channel = try world.open("ping")
let message = [UInt8](repeating: 0x42, count: 64)
var reply = [UInt8](repeating: 0, count: channel.maximumMessageBytes)
var samples: [UInt64] = []
for _ in 0..<count {
    let start = DispatchTime.now().uptimeNanoseconds  // CLOCK_MONOTONIC
    try channel.send(message)
    _ = try reply.withUnsafeMutableBytes { try channel.receive(into: $0) }
    samples.append(DispatchTime.now().uptimeNanoseconds - start)
}
try channel.close()
let sorted = samples.sorted()
let p50 = sorted[sorted.count / 2], p99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
print("\(count) round trips of 64 bytes: p50 \(p50) ns, p99 \(p99) ns, max \(sorted.last!) ns")
