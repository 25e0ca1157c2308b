import Foundation
import Testing

@Suite("End to end: guest-agent stats", .serialized, .timeLimit(.minutes(2)))
struct AgentStatsEndToEndTests {
    /// `guest-agent stats --json` for `domain`; the channel entries.
    func stats(_ world: SimWorld, _ domain: String) throws -> [[String: Any]] {
        let result = try Binaries.run(Binaries.guestAgent, ["stats", "--domain", domain, "--state-dir", world.state, "--json"])
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        return result.json?["channels"] as? [[String: Any]] ?? []
    }

    @Test("run writes each channel's counters; stats shows them per channel (peer, state, handshake, transfer), also after SIGUSR1")
    func statsOfRunningAgent() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "orders", "--between", "left", "right", "--pages", "4")
        let domains = try world.chanctl("domain", "list").json?["domains"] as? [[String: Any]] ?? []
        let leftID = try #require(domains.first { $0["name"] as? String == "left" }?["domid"] as? Int)
        let agent = try world.spawnAgent(["run", "--wait", "block"] + world.agentOptions("right"), log: "run")
        defer { stopProcess(agent) }

        let ping = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "orders", "--count", "40", "--size", "100",
                                                          "--wait", "block", "--json"] + world.agentOptions("left"), timeout: 60)
        #expect(ping.status == 0, "\(ping.stdout) \(ping.stderr)")

        // 41 round trips: ping checks the echo with one before the 40 it times.
        // The snapshot follows within a second (at the latest when the
        // ping's close ends the session).
        var entry: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            entry = try stats(world, "right").first { $0["channel"] as? String == "orders" } ?? [:]
            if entry["messages_received"] as? Int == 41 && entry["messages_sent"] as? Int == 41 { break }
            usleep(100_000)
        }
        #expect(entry["messages_received"] as? Int == 41, "\(entry) \(world.log("run"))")
        #expect(entry["messages_sent"] as? Int == 41, "\(entry)")
        #expect(entry["bytes_received"] as? Int == 4100 && entry["bytes_sent"] as? Int == 4100, "\(entry)")
        #expect(entry["peer_domain"] as? Int == leftID, "\(entry)")
        #expect(entry["role"] as? String == "responder" || entry["role"] as? String == "initiator", "\(entry)")
        #expect((entry["handshakes"] as? Int ?? 0) >= 1, "\(entry)")
        #expect(entry["protocol_violations"] as? Int == 0 && entry["authentication_failures"] as? Int == 0, "\(entry)")
        #expect((entry["waits"] as? Int ?? 0) >= 1, "a blocking echo waits for each ping: \(entry)")
        #expect(entry["agent_running"] as? Bool == true, "\(entry)")
        #expect(entry["pid"] as? Int == Int(agent.processIdentifier), "\(entry)")
        #expect(entry["service"] as? String == "echo", "\(entry)")
        let mode = try #require(try FileManager.default.attributesOfItem(
            atPath: world.state + "/agent-stats-right/orders.json")[.posixPermissions] as? Int)
        #expect(mode == 0o600)

        // SIGUSR1 asks for fresh snapshots; it must not stop the agent.
        kill(agent.processIdentifier, SIGUSR1)
        usleep(500_000)
        #expect(agent.isRunning, "SIGUSR1 ended the agent: \(world.log("run"))")

        // The text form: one block per channel, as wg show prints peers.
        let text = try Binaries.run(Binaries.guestAgent, ["stats", "--domain", "right", "--state-dir", world.state])
        #expect(text.status == 0, "\(text.stderr)")
        for line in ["channel: orders", "  peer domain: \(leftID)", "  latest handshake: ",
                     "  transfer: 4.00 KiB received (41 messages), 4.00 KiB sent (41 messages)",
                     "  protocol violations: 0, authentication failures: 0", "  waits: "] {
            #expect(text.stdout.contains(line), "missing '\(line)' in:\n\(text.stdout)")
        }
        let unknown = try Binaries.run(Binaries.guestAgent, ["stats", "--domain", "right", "--state-dir", world.state,
                                                             "--channel", "nope"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no statistics for channel nope"), "\(unknown.stderr)")
    }
}
