// Request/response over a secure channel: a service thread in one domain answers
// requests from a client in another; the client exposes async/await, while
// both endpoints run on OS threads (the channel's data path spins or sleeps
// like a vCPU and must not occupy Swift concurrency's cooperative pool).
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
        return try SecureChannel.open(descriptor: try platform.readDescriptor(named: "rpc"), agentKey: keys[name]!,
                                      hostKey: grants.hostPublicKey, platform: platform, options: .init(wait: .block))
    }
}

/// The service: one request in, one response out, until the client closes.
func serve(_ channel: SecureChannel) throws {
    while true {
        let request: [UInt8]
        do { request = try channel.receive() } catch ChannelError.peerClosed { break }
        let text = String(decoding: request, as: UTF8.self)
        let response = "echo(\(text.count) chars): \(text.uppercased())"
        try channel.send(Array(response.utf8))
    }
    try? channel.close()
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

    func close() async {
        await withCheckedContinuation { c in queue.async { [self] in try? channel?.close(); c.resume() } }
    }
}

let world = try World()
defer { try? FileManager.default.removeItem(atPath: world.directory) }
let service = Thread {
    do { try serve(try world.open("service")) } catch { print("service: \(error)") }
}
service.start()

let client = try await EchoClient { try world.open("client") }
for question in ["hello", "secure channels", "on altp2m views"] {
    let answer = try await client.request(question)
    print("> \(question)\n< \(answer)")
}
await client.close()
