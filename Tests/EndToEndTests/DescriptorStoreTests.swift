import Foundation
import Testing

/// End-to-end tests of what someone who can rewrite dom0's descriptor store
/// can do to an agent, through the built binaries: copy an envelope under
/// another name, publish a destroyed channel's envelope again; and the
/// agent's replay guard file that defeats the second.
@Suite("End to end: descriptor store tampering and the agent's replay guard", .serialized, .timeLimit(.minutes(2)))
struct DescriptorStoreTests {
    @Test("an envelope copied under an admin-* name: run refuses it as misnamed, serves no admin service, keeps serving its other channel")
    func misnamedDescriptor() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "public", "--between", "left", "right", "--pages", "4")
        let right = try domainID(world, "right")

        try stopDaemon(world)
        var journal = try readJournal(world)
        let original = try #require(publishRecord(in: journal, channel: "public", domain: right),
                                    "no publishDescriptor record for public / domain \(right)")
        let copy = original.replacingOccurrences(of: "\"name\":\"public\"", with: "\"name\":\"admin-x\"")
        #expect(copy != original)
        journal += journalRecord(copy)
        try Data(journal).write(to: URL(fileURLWithPath: world.state + "/journal"))
        try world.chanctl("sim", "start")
        #expect(publishRecord(in: try readJournal(world), channel: "admin-x", domain: right) != nil,
                "the copy is in the store the restarted daemon recovered")

        let services = world.tmp.path + "/services.conf"
        _ = FileManager.default.createFile(atPath: services, contents: Data("admin-*  sink\n*  echo\n".utf8))
        let agent = try world.spawnAgent(["run", "--wait", "block", "--poll-ms", "20", "--services", services] + world.agentOptions("right"),
                                         log: "run")
        defer { stopProcess(agent) }
        #expect(world.waitForLog("run", "refusal=name_mismatch"), "\(world.log("run"))")
        let refusal = world.log("run").split(separator: "\n").first { $0.contains("refusal=name_mismatch") } ?? ""
        #expect(refusal.contains("channel=admin-x") && refusal.contains("stored as 'admin-x' was signed for the channel 'public'"),
                "the refusal names the channel and what happened: \(refusal)")

        // The real channel is served (echo), and the admin service never ran.
        let ping = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "public", "--count", "5", "--wait", "block", "--timeout", "10"]
                                    + world.agentOptions("left"), timeout: 30)
        #expect(ping.status == 0, "\(ping.stderr) \(world.log("run"))")
        let log = world.log("run")
        #expect(!log.contains("serving with sink"), "the admin-* service must not be started: \(log)")
        #expect(agent.isRunning, "run keeps serving after a refusal: \(log)")
    }

    @Test("a destroyed channel's envelope published again after its window went to a newer channel: refused by the window's header in another process and after a restart, while the live channel reopens")
    func replayedDescriptor() throws {
        let world = try SimWorld()
        let old = try world.chanctl("channel", "create", "a", "--between", "left", "right", "--pages", "4").json ?? [:]
        let right = try domainID(world, "right")
        let first = try world.spawnAgent(["run", "--wait", "block", "--poll-ms", "20"] + world.agentOptions("right"), log: "run1")
        defer { stopProcess(first) }
        let pingA = try ping(world, "a")
        #expect(pingA.status == 0, "\(pingA.stderr) \(world.log("run1"))")
        // Kept before the destroy, as an attacker with access to the store would.
        let oldRecord = try #require(publishRecord(in: try readJournal(world), channel: "a", domain: right))

        try world.chanctl("channel", "destroy", "a")
        let new = try world.chanctl("channel", "create", "b", "--between", "left", "right", "--pages", "4").json ?? [:]
        let oldWindow = (old["windows"] as? [String: Any])?["right"] as? [String: Any]
        let newWindow = (new["windows"] as? [String: Any])?["right"] as? [String: Any]
        let oldGFN = try #require(oldWindow?["first_gfn"] as? Int, "\(old)")
        #expect(newWindow?["first_gfn"] as? Int == oldGFN, "first fit must give b the window a had: \(old) \(new)")
        let pingB = try ping(world, "b")
        #expect(pingB.status == 0, "\(pingB.stderr) \(world.log("run1"))")

        // The daemon is stopped only with no agent attached.
        first.terminate()
        #expect(waitForExit(first, seconds: 5), "\(world.log("run1"))")
        try stopDaemon(world)
        let journal = try readJournal(world) + journalRecord(oldRecord)
        try Data(journal).write(to: URL(fileURLWithPath: world.state + "/journal"))
        try world.chanctl("sim", "start")
        let channels = try world.chanctl("channel", "list").json?["channels"] as? [[String: Any]] ?? []
        #expect(!channels.contains { $0["name"] as? String == "a" }, "a stays destroyed in the registry: \(channels)")

        // Another process of the domain, which never opened a itself.
        let replay = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "a", "--count", "1", "--timeout", "2"]
                                      + world.agentOptions("right"), timeout: 30)
        #expect(replay.status == 1)
        #expect(replay.stderr.contains("descriptor rejected") && replay.stderr.contains("another channel"),
                "the republished envelope was found and refused by the window's header: \(replay.stderr)")

        // The agent restarted: it opens a's envelope and is refused by the
        // window, and opens b again (the same descriptor: a reopening).
        let second = try world.spawnAgent(["run", "--wait", "block", "--poll-ms", "20"] + world.agentOptions("right"), log: "run2")
        defer { stopProcess(second) }
        #expect(world.waitForLog("run2", "another channel"), "\(world.log("run2"))")
        let refusals = world.log("run2").split(separator: "\n").filter { $0.contains("another channel") }
        #expect(refusals.contains { $0.contains("channel=a ") }, "\(world.log("run2"))")
        #expect(!refusals.contains { $0.contains("channel=b ") }, "\(world.log("run2"))")
        let pingB2 = try ping(world, "b")
        #expect(pingB2.status == 0, "b reopens after the agent's restart: \(pingB2.stderr) \(world.log("run2"))")
        try world.chanctl("channel", "create", "c", "--between", "left", "right", "--pages", "4")
        let pingC = try ping(world, "c")
        #expect(pingC.status == 0, "\(pingC.stderr) \(world.log("run2"))")
        #expect(second.isRunning, "\(world.log("run2"))")
    }

    @Test("the replay guard file: 0600, replaced whole by rename; wrong permissions or bad content are refused naming the file")
    func guardFile() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "one", "--between", "left", "right", "--pages", "4")
        try world.chanctl("channel", "create", "two", "--between", "left", "right", "--pages", "4")
        let left = try domainID(world, "left")
        let path = world.state + "/replay-guard-\(left).json"
        let agent = try world.spawnAgent(["run", "--wait", "block", "--poll-ms", "20"] + world.agentOptions("right"), log: "run")
        defer { stopProcess(agent) }

        let pingOne = try ping(world, "one")
        #expect(pingOne.status == 0, "\(pingOne.stderr) \(world.log("run"))")
        var info = stat()
        #expect(stat(path, &info) == 0, "ping wrote the guard at \(path)")
        #expect(info.st_mode & 0o777 == 0o600, "mode \(String(info.st_mode & 0o777, radix: 8))")
        let firstInode = info.st_ino
        let firstText = try String(contentsOfFile: path, encoding: .utf8)
        #expect(firstText.contains("\"one\""), "\(firstText)")

        let pingTwo = try ping(world, "two")
        #expect(pingTwo.status == 0, "\(pingTwo.stderr)")
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(info.st_ino != firstInode, "an update replaces the file (rename), never rewrites it in place")
        let secondText = try String(contentsOfFile: path, encoding: .utf8)
        #expect(secondText.contains("\"one\"") && secondText.contains("\"two\""), "\(secondText)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: world.state).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty, "\(leftovers)")

        // Readable by others: refused, naming the file and the fix.
        try world.chanctl("channel", "create", "three", "--between", "left", "right", "--pages", "4")
        #expect(chmod(path, 0o644) == 0)
        let open = try ping(world, "three")
        #expect(open.status == 1)
        #expect(open.stderr.contains(path) && open.stderr.contains("chmod 600"), "\(open.stderr)")

        // Malformed: refused, naming the file; the file is left as it was.
        #expect(chmod(path, 0o600) == 0)
        try Data("{\"version\":1,\"domain\":\(left),\"channels\":{\"xyz\":1},\"names\":{}}".utf8).write(to: URL(fileURLWithPath: path))
        #expect(chmod(path, 0o600) == 0)
        let bad = try ping(world, "three")
        #expect(bad.status == 1)
        #expect(bad.stderr.contains(path) && bad.stderr.contains("malformed") && bad.stderr.contains("xyz"), "\(bad.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("xyz"))
    }

    // MARK: Helpers

    func ping(_ world: SimWorld, _ channel: String) throws -> Binaries.Result {
        try Binaries.run(Binaries.guestAgent, ["ping", "--channel", channel, "--count", "3", "--wait", "block", "--timeout", "10"]
                         + world.agentOptions("left"), timeout: 30)
    }

    func domainID(_ world: SimWorld, _ name: String) throws -> Int {
        let domains = try world.chanctl("domain", "list").json?["domains"] as? [[String: Any]] ?? []
        return try #require(domains.first { $0["name"] as? String == name }?["domid"] as? Int, "\(domains)")
    }

    /// Stops the daemon with a signal (its state is kept); the simulator
    /// reads its journal, descriptors included, only when it starts.
    func stopDaemon(_ world: SimWorld) throws {
        let pidText = try String(contentsOfFile: world.state + "/daemon.pid", encoding: .utf8)
        let daemon = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(daemon, SIGTERM) == 0)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && processAlive(daemon) { usleep(20_000) }
        try #require(!processAlive(daemon), "the daemon must stop on SIGTERM")
    }

    func readJournal(_ world: SimWorld) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: world.state + "/journal")))
    }
}

/// The payload of the journal's last `publishDescriptor` record for
/// `channel` and `domain`. Records are u32 LE length, u32 LE CRC-32, payload.
func publishRecord(in journal: [UInt8], channel: String, domain: Int) -> String? {
    func u32(_ at: Int) -> Int {
        Int(journal[at]) | Int(journal[at + 1]) << 8 | Int(journal[at + 2]) << 16 | Int(journal[at + 3]) << 24
    }
    var found: String?
    var position = 0
    while position + 8 <= journal.count {
        let length = u32(position), start = position + 8
        guard start + length <= journal.count else { break }
        let payload = String(decoding: journal[start..<start + length], as: UTF8.self)
        if payload.contains("\"call\":\"publishDescriptor\""), payload.contains("\"name\":\"\(channel)\""),
           payload.contains("\"domain\":\(domain),") || payload.contains("\"domain\":\(domain)}") {
            found = payload
        }
        position = start + length
    }
    return found
}

/// One journal record holding `payload`, with its length and CRC-32.
func journalRecord(_ payload: String) -> [UInt8] {
    let bytes = Array(payload.utf8)
    let crc = crc32(bytes[...])
    var record: [UInt8] = []
    for value in [UInt32(bytes.count), crc] {
        for i in 0..<4 { record.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }
    return record + bytes
}
