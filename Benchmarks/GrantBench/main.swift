// grant-bench: how long the grant module takes to create and destroy a
// channel on the in-process simulator, next to baselines measured in the
// same run: a bare createView + destroyView pair, the descriptor crypto
// alone, and creation with the registry kept in memory (no fsync).
//
//   swift build -c release --product grant-bench && .build/release/grant-bench
//
// Figures go to docs/BENCHMARKS.md ("Grant module").
#if canImport(Glibc)
import Glibc
#endif
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto

/// Registry storage that keeps the bytes in memory: isolates the cost of
/// the atomic file write (write, fsync, rename, directory fsync).
final class MemoryRegistry: RegistryStorage {
    var bytes: [UInt8]?
    func load() throws(GrantError) -> [UInt8]? { bytes }
    func save(_ contents: [UInt8]) throws(GrantError) { bytes = contents }
}

func temporaryDirectory() -> String {
    var template = Array("/tmp/grant-bench-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        print("grant-bench: cannot create a temporary directory in /tmp: \(String(cString: strerror(errno)))")
        exit(1)
    }
    return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func microseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1e6 + Double(attoseconds) / 1e12
}

/// Median and 90th percentile of per-iteration times, in microseconds.
func summarize(_ samples: [Double]) -> (median: Double, p90: Double) {
    let sorted = samples.sorted()
    return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 9 / 10)])
}

/// One decimal place, without Foundation.
func format(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

func row(_ label: String, _ samples: [Double]) {
    let (median, p90) = summarize(samples)
    print("| \(label) | \(format(median)) | \(format(p90)) |")
}

struct World {
    let engine: Altp2mEngine
    let host: EngineChannelHost
    let grants: GrantModule
    let directory: String

    init(memoryRegistry: Bool) throws {
        engine = try Altp2mEngine(frameCount: 65536)
        host = EngineChannelHost(engine: engine)
        directory = temporaryDirectory()
        grants = try GrantModule(host: host, stateDirectory: directory + "/grant",
                                 registryStorage: memoryRegistry ? MemoryRegistry() : nil)
        for name in ["a", "b"] {
            _ = try engine.createDomain(DomainConfig(name: name, vcpuCount: 2, pages: 256, altp2mMode: .external))
            try grants.registerAgentKey(Curve25519.KeyAgreement.PrivateKey().publicKey, forDomain: name)
        }
        try grants.allow("a", "b", maxPages: 512)
    }
}

let iterations = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 200
let clock = ContinuousClock()
print("grant-bench: \(iterations) iterations per row, times in microseconds per operation")
print("| Operation | median | p90 |")
print("|---|---:|---:|")

// Baseline 1: the cheapest altp2m round trip the module makes per domain.
do {
    let engine = try Altp2mEngine(frameCount: 4096)
    let domain = try engine.createDomain(DomainConfig(name: "x", vcpuCount: 2, pages: 256, altp2mMode: .external))
    try engine.setDomainState(domain, active: true)
    var samples: [Double] = []
    for _ in 0..<iterations * 10 {
        let start = clock.now
        let view = try engine.createView(domain, defaultAccess: .default)
        try engine.destroyView(domain, view: view)
        samples.append(microseconds(clock.now - start))
    }
    row("baseline: engine createView + destroyView", samples)
}

// Baseline 2: the descriptor crypto of one channel (two seals, two signatures).
do {
    let host = Curve25519.Signing.PrivateKey()
    let agents = [Curve25519.KeyAgreement.PrivateKey(), Curve25519.KeyAgreement.PrivateKey()]
    let plaintext = [UInt8](repeating: 7, count: 180)
    var samples: [Double] = []
    for _ in 0..<iterations {
        let start = clock.now
        for agent in agents {
            let box = try AnonymousSealedBox.seal(plaintext, to: agent.publicKey)
            let signed = DescriptorEnvelope.signedPortion(recipient: 1, sealedBox: box)
            _ = host.signature(for: signed)
        }
        samples.append(microseconds(clock.now - start))
    }
    row("baseline: seal + sign two descriptors", samples)
}

// The grant module, by window size and registry storage.
for memoryRegistry in [true, false] {
    for pages in [2, 17, 257] {
        let world = try World(memoryRegistry: memoryRegistry)
        let before = world.engine.frameCounts
        var create: [Double] = [], destroy: [Double] = []
        for index in 0..<iterations {
            let name = "c\(index)"
            var start = clock.now
            try world.grants.createChannel(ChannelRequest(name: name, between: "a", and: "b", pageCount: pages))
            create.append(microseconds(clock.now - start))
            start = clock.now
            try world.grants.destroyChannel(name)
            destroy.append(microseconds(clock.now - start))
        }
        precondition(world.engine.frameCounts == before, "the benchmark leaked frames")
        let storage = memoryRegistry ? "registry in memory" : "registry file, fsync"
        row("createChannel \(pages) pages (\(storage))", create)
        row("destroyChannel \(pages) pages (\(storage))", destroy)
    }
}

// A channel view already carrying channels: creation adds to it, and
// destruction re-applies the others (the backing drop resets the view).
do {
    let world = try World(memoryRegistry: true)
    for index in 0..<8 {
        try world.grants.createChannel(ChannelRequest(name: "keep\(index)", between: "a", and: "b", pageCount: 5))
    }
    var create: [Double] = [], destroy: [Double] = []
    for index in 0..<iterations {
        var start = clock.now
        try world.grants.createChannel(ChannelRequest(name: "c\(index)", between: "a", and: "b", pageCount: 5))
        create.append(microseconds(clock.now - start))
        start = clock.now
        try world.grants.destroyChannel("c\(index)")
        destroy.append(microseconds(clock.now - start))
    }
    row("createChannel 5 pages, view already carries 8", create)
    row("destroyChannel 5 pages, 8 others re-applied", destroy)
}
