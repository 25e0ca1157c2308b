// Request/response over a secure channel: a service in one domain answers
// requests from a client in another, both with async/await. The service
// iterates its requests with `for try await` over `channel.messages`, which
// receives on an OS thread of its own; the client hops to its own serial
// OS thread for each blocking round trip. Neither waits for the channel on
// Swift concurrency's cooperative pool (the channel's data path spins or
// sleeps like a vCPU).
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import Foundation
import SecureChannel

/// dom0's side, as in examples/PingPong: engine, grant module, two domains, a channel.
final class World: @unchecked Sendable {  // @unchecked: the engine is reached under `lock` only
    let directory = NSTemporaryDirectory() + "echoservice-\(getpid())"
    let engine: Altp2mEngine, host: EngineChannelHost, grants: GrantModule
    let keys = ["client": Curve25519.KeyAgreement.PrivateKey(), "service": Curve25519.KeyAgreement.PrivateKey()]
    var domains: [String: DomainID] = [:]
    let lock = SimEngineLock()

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        engine = try Altp2mEngine(host: .default, frameCount: 16384)
        host = EngineChannelHost(engine: engine)
        grants = try GrantModule(host: host, stateDirectory: directory + "/grant")
        for name in ["client", "service"] {
            domains[name] = try engine.createDomain(DomainConfig(name: name, vcpuCount: 1, pages: 64, altp2mMode: .external))
            try grants.registerAgentKey(keys[name]!.publicKey, forDomain: name)
        }
        try grants.allow("client", "service")
        _ = try grants.createChannel(ChannelRequest(name: "rpc", between: "client", and: "service", pageCount: 8))
    }

    func open(_ name: String) throws -> SecureChannel {
        let platform = SimGuestPlatform(guest: try SimGuest(engine: engine, domain: domains[name]!), descriptors: host, lock: lock)
        var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
        return try SecureChannel.open(channel: "rpc", descriptor: try platform.readDescriptor(named: "rpc"),
                                      agentKey: keys[name]!, hostKey: grants.hostPublicKey, platform: platform,
                                      options: .init(wait: .block), replayGuard: &replayGuard)
    }

    /// Opens an end on a new OS thread (the handshake waits for the peer like
    /// a vCPU) and hands the channel to the awaiting task.
    func openOnThread(_ name: String) async throws -> Opened {
        try await withCheckedThrowingContinuation { c in
            Thread { c.resume(with: Result { Opened(try self.open(name)) }) }.start()
        }
    }
}

/// A channel on its way from the thread that opened it to the task that uses
/// it. @unchecked: one party at a time uses the channel.
final class Opened: @unchecked Sendable {
    let channel: SecureChannel
    init(_ channel: SecureChannel) { self.channel = channel }
}

/// The service: one request in, one response out, until the client closes
/// (then the loop ends). `messages` receives only while the loop waits for
/// the next request, so the body may answer on the same channel; with
/// `.block` that send sleeps, rather than spins, if the ring is ever full.
func serve(_ channel: SecureChannel) async throws {
    for try await request in channel.messages {
        let text = String(decoding: request, as: UTF8.self)
        try channel.send(Array("echo(\(text.count) chars): \(text.uppercased())".utf8), timeout: .seconds(5))
    }
    try channel.close()
}

/// The client: an actor-free async facade; each call hops to the client's
/// own serial OS thread (a dispatch queue), does the blocking round trip there.
final class EchoClient: @unchecked Sendable {  // @unchecked: the channel is used on `queue` only
    private let queue = DispatchQueue(label: "echo-client")
    private var channel: SecureChannel?

    init(_ open: @escaping @Sendable () throws -> SecureChannel) async throws {
        let queue = self.queue
        channel = try await withCheckedThrowingContinuation { c in queue.async { c.resume(with: Result { try open() }) } }
    }

    func request(_ text: String) async throws -> String {
        try await withCheckedThrowingContinuation { c in
            queue.async { [self] in
                c.resume(with: Result {
                    try channel!.send(Array(text.utf8), timeout: .seconds(5))
                    return String(decoding: try channel!.receive(timeout: .seconds(5)), as: UTF8.self)
                })
            }
        }
    }

    /// Half-closes, then waits for the service's own close: an orderly end
    /// on both sides.
    func close() async {
        await withCheckedContinuation { c in
            queue.async { [self] in
                try? channel?.closeSending()
                while (try? channel?.receive(timeout: .seconds(5))) != nil {}
                c.resume()
            }
        }
    }
}

let world = try World()
defer { try? FileManager.default.removeItem(atPath: world.directory) }
// Both ends open at once (the handshake needs both).
let opening = Task { try await world.openOnThread("service") }
let client = try await EchoClient { try world.open("client") }
let service = Task { try await serve(try await opening.value.channel) }

for question in ["hello", "secure channels", "on altp2m views"] {
    let answer = try await client.request(question)
    print("> \(question)\n< \(answer)")
}
await client.close()
try await service.value
