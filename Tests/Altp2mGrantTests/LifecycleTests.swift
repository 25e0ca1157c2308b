import Foundation
import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto

@Suite("Channel lifecycle and policy")
struct LifecycleTests {
    @Test("200 channels between 20 domain pairs leak no frames, views or registry entries")
    func manyChannels() throws {
        let world = try SimWorld(frameCount: 32768)
        let names = (0..<8).map { "vm\($0)" }
        for name in names { try world.addDomain(name, vcpus: UInt32(1 + names.firstIndex(of: name)! % 3)) }
        var pairs: [(String, String)] = []
        for i in names.indices { for j in names.indices where i < j { pairs.append((names[i], names[j])) } }
        pairs = Array(pairs.prefix(20))
        for (a, b) in pairs { try world.grants.allow(a, b, maxPages: 16) }
        var before = try SimSnapshot(world)
        before.registryFile = nil

        var live: [String] = []
        for index in 0..<200 {
            let (a, b) = pairs[index % pairs.count]
            let name = "ch\(index)"
            let made = try world.grants.createChannel(ChannelRequest(name: name, between: .name(a), and: .name(b),
                                                                     pageCount: 2 + index % 7, oneWay: index % 5 == 0))
            #expect(made.warnings.isEmpty)
            live.append(name)
            if live.count > 12 {
                let report = try world.grants.destroyChannel(live.removeFirst())
                #expect(report.problems.isEmpty, "\(report.problems)")
            }
            if index % 50 == 49 {
                for channel in live {
                    let state = try world.grants.showChannel(channel).state
                    #expect(state == .active, "\(channel): \(state)")
                }
            }
        }
        for name in live { #expect(try world.grants.destroyChannel(name).problems.isEmpty) }
        #expect(world.grants.listChannels().isEmpty)
        var after = try SimSnapshot(world)
        after.registryFile = nil
        #expect(after == before, "\(after.difference(from: before))")
        let registry = try #require(FileManager.default.contents(atPath: world.directory.path + "/grant/channels.json"))
        #expect(String(decoding: registry, as: UTF8.self).contains("\"channels\" : [\n\n  ]"))
    }

    @Test("without a rule the policy denies, naming the fix")
    func defaultDeny() throws {
        let world = try SimWorld()
        try world.addDomain("web")
        try world.addDomain("db")
        do {
            try world.grants.createChannel(ChannelRequest(name: "x", between: "web", and: "db", pageCount: 3))
            Issue.record("created without a policy rule")
        } catch {
            #expect(error.description == "no policy allows web <-> db; run: chanctl policy allow web db")
            #expect(error.cause == .denied)
        }
        try world.grants.allow("db", "web")
        try world.grants.createChannel(ChannelRequest(name: "x", between: "web", and: "db", pageCount: 3))
        #expect(try world.grants.disallow("web", "db"))
        #expect(world.grants.listChannels().count == 1, "existing channels stay")
    }

    @Test("the policy's limits are enforced")
    func limits() throws {
        let world = try SimWorld()
        try world.addDomain("a")
        try world.addDomain("b")
        try world.grants.allow("a", "b", maxPages: 8, suites: [.chachapoly], modes: [.encrypted], oneWayRequired: true)
        func refusal(_ request: ChannelRequest) -> String? {
            do {
                try world.grants.createChannel(request)
                return nil
            } catch {
                #expect(error.failedStep == .policy)
                return error.description
            }
        }
        #expect(refusal(ChannelRequest(name: "p", between: "a", and: "b", pageCount: 9, oneWay: true))?
            .contains("at most 8 pages") == true)
        #expect(refusal(ChannelRequest(name: "p", between: "a", and: "b", pageCount: 8, oneWay: true, suite: .aesgcm))?
            .contains("suite aesgcm") == true)
        #expect(refusal(ChannelRequest(name: "p", between: "a", and: "b", pageCount: 8, oneWay: true, mode: .isolated))?
            .contains("isolated mode") == true)
        #expect(refusal(ChannelRequest(name: "p", between: "a", and: "b", pageCount: 8))?.contains("one-way") == true)
        #expect(refusal(ChannelRequest(name: "p", between: "a", and: "b", pageCount: 8, oneWay: true)) == nil)
        #expect(refusal(ChannelRequest(name: "p", between: "a", and: "b", pageCount: 8, oneWay: true))?
            .contains("already exists") == true)
        #expect(refusal(ChannelRequest(name: "bad/name", between: "a", and: "b", pageCount: 2, oneWay: true))?
            .contains("not a valid channel name") == true)
        #expect(refusal(ChannelRequest(name: "q", between: "a", and: "b", pageCount: 1, oneWay: true))?
            .contains("2 to 512 pages") == true)

        var policy = try world.grants.loadPolicy()
        policy.maxChannelsPerDomain = 1
        try world.grants.savePolicy(policy)
        #expect(refusal(ChannelRequest(name: "q", between: "a", and: "b", pageCount: 2, oneWay: true))?
            .contains("maxChannelsPerDomain") == true)
    }

    @Test("mixed mode is refused unless allowed, and then warned about")
    func mixedMode() throws {
        let world = try SimWorld()
        try world.addDomain("a")
        try world.addDomain("m", mode: .mixed)
        try world.addDomain("off", mode: .disabled)
        try world.grants.allow("a", "m")
        try world.grants.allow("a", "off")
        do {
            try world.grants.createChannel(ChannelRequest(name: "x", between: "a", and: "m", pageCount: 2))
            Issue.record("mixed mode accepted")
        } catch {
            #expect(error.detail.contains("mixed altp2m mode"))
        }
        let made = try world.grants.createChannel(ChannelRequest(name: "x", between: "a", and: "m", pageCount: 2, allowMixed: true))
        #expect(made.warnings.contains { $0.contains("mixed altp2m mode") })
        do {
            try world.grants.createChannel(ChannelRequest(name: "y", between: "a", and: "off", pageCount: 2))
            Issue.record("altp2m disabled accepted")
        } catch {
            #expect(error.detail.contains("altp2m=\"external\""))
        }
    }

    @Test("missing agent keys and unknown domains are named")
    func missingPieces() throws {
        let world = try SimWorld()
        try world.addDomain("a")
        _ = try world.engine.createDomain(DomainConfig(name: "nokey", altp2mMode: .external))
        try world.grants.allow("a", "nokey")
        do {
            try world.grants.createChannel(ChannelRequest(name: "x", between: "a", and: "nokey", pageCount: 2))
        } catch {
            #expect(error.detail == "no agent key is registered for nokey; run: chanctl keys register nokey <agent-public-key-hex>")
        }
        do {
            try world.grants.createChannel(ChannelRequest(name: "x", between: "a", and: "ghost", pageCount: 2))
        } catch {
            #expect(error.detail.contains("no domain 'ghost'"))
        }
    }

    @Test("policy.json is decoded strictly")
    func strictPolicyFile() throws {
        let world = try SimWorld()
        let path = world.directory.path + "/grant/policy.json"
        try Data(#"{"rules": [{"domains": ["a", "b"], "maxPage": 8}]}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: GrantError.self) { try world.grants.loadPolicy() }
        do {
            _ = try world.grants.loadPolicy()
        } catch {
            #expect(error.description.contains("rule 1: unknown key 'maxPage'"))
        }
        try Data(#"{"version": 1, "rules": [{"domains": ["a", "b"], "maxPages": 8, "modes": ["isolated"]}]}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        let policy = try world.grants.loadPolicy()
        #expect(policy.rules == [GrantPolicy.Rule(domains: ["a", "b"], maxPages: 8, modes: [.isolated])])
        let again = try GrantPolicy.decode(policy.encoded())
        #expect(again == policy)
    }

    @Test("the host key is made once, private, and kept")
    func hostKey() throws {
        let world = try SimWorld()
        let key = world.grants.hostPublicKey
        var info = stat()
        #expect(stat(world.directory.path + "/grant/host-ed25519.key", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        world.grants = nil
        let reopened = try world.makeGrants(host: world.host)
        #expect(reopened.hostPublicKey == key)
        #expect(throws: GrantError.self) { try world.makeGrants(host: world.host) }
    }
}
