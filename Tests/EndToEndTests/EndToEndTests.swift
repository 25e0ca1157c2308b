import Foundation
import Testing

/// End-to-end tests of the built `chanctl pingpong` and `guest-agent`: they run
/// the binaries found next to the test bundle (any --scratch-path), or
/// `$CHANCTL_PATH` / `$GUEST_AGENT_PATH`.
@Suite("End to end: chanctl pingpong and guest-agent", .serialized)
struct EndToEndTests {
    @Test("chanctl pingpong --count 200 --json: exit 0, sane numbers, nothing left behind")
    func pingpongJSON() throws {
        let tmp = try TemporaryDirectory()
        let result = try Binaries.run(Binaries.chanctl, ["pingpong", "--count", "200", "--json"],
                                      environment: ["TMPDIR": tmp.path], timeout: 120)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let json = try #require(result.json, "not one JSON object: \(result.stdout)")
        #expect(json["ok"] as? Bool == true)
        #expect(json["count"] as? Int == 200)
        #expect(json["size"] as? Int == 64)
        #expect(json["mode"] as? String == "encrypted")
        #expect(json["suite"] as? String == "chachapoly")
        #expect(json["wait"] as? String == "spin")
        let keys = ["p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"]
        let values = keys.compactMap { (json[$0] as? NSNumber)?.uint64Value }
        #expect(values.count == keys.count, "\(json)")
        #expect(values.first ?? 0 > 0)
        #expect(values == values.sorted(), "percentiles must not decrease: \(values)")
        #expect((values.first ?? 0) < 1_000_000_000, "a median round trip above 1 s is not sane")
        #expect(((json["unix_socket_p50_ns"] as? NSNumber)?.uint64Value ?? 0) > 0)
        let setup = try #require(json["setup_ms"] as? [String: Any])
        for stage in ["simulator_start", "domains", "channel", "handshake", "first_round_trip"] {
            let ms = (setup[stage] as? NSNumber)?.doubleValue ?? -1
            #expect(ms >= 0 && ms < 60_000, "stage \(stage): \(setup)")
        }
        // Nothing left behind: no files under TMPDIR, no process naming them.
        let left = try FileManager.default.contentsOfDirectory(atPath: tmp.path)
        #expect(left.isEmpty, "left behind in TMPDIR: \(left)")
        #expect(Binaries.processes(mentioning: tmp.path).isEmpty, "processes left running")
    }

    @Test("chanctl pingpong that fails midway (message larger than the channel) still leaves nothing behind")
    func pingpongFailureCleansUp() throws {
        let tmp = try TemporaryDirectory()
        let result = try Binaries.run(Binaries.chanctl, ["pingpong", "--count", "10", "--size", "200000", "--pages", "2", "--json"],
                                      environment: ["TMPDIR": tmp.path], timeout: 120)
        #expect(result.status == 1, "\(result.stdout) \(result.stderr)")
        #expect(result.json?["ok"] as? Bool == false)
        #expect((result.json?["error"] as? String ?? "").contains("--size"), "\(result.stdout)")
        let left = try FileManager.default.contentsOfDirectory(atPath: tmp.path)
        #expect(left.isEmpty, "left behind in TMPDIR: \(left)")
        #expect(Binaries.processes(mentioning: tmp.path).isEmpty, "processes left running")
    }

    @Test("chanctl pingpong with a bad --wait value: exit 2 and the accepted values")
    func pingpongBadWait() throws {
        let result = try Binaries.run(Binaries.chanctl, ["pingpong", "--wait", "sometimes"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("spin") && result.stderr.contains("block") && result.stderr.contains("adaptive"), "\(result.stderr)")
    }

    @Test("guest-agent run echoes on every new channel, survives a peer that goes away; cat pipes bytes through")
    func echoAgentAndCat() throws {
        let tmp = try TemporaryDirectory()
        let state = tmp.path + "/state"
        func chanctl(_ arguments: String...) throws -> Binaries.Result {
            let result = try Binaries.run(Binaries.chanctl, arguments + ["--state-dir", state, "--json"])
            #expect(result.status == 0, "chanctl \(arguments.joined(separator: " ")): \(result.stdout) \(result.stderr)")
            return result
        }
        _ = try chanctl("sim", "start")
        defer { _ = try? Binaries.run(Binaries.chanctl, ["sim", "stop", "--state-dir", state]) }
        for name in ["left", "right"] {
            _ = try chanctl("domain", "create", name, "--altp2m", "external")
            let key = try Binaries.run(Binaries.guestAgent, ["keygen", "--out", "\(tmp.path)/\(name).key", "--json"])
            _ = try chanctl("keys", "register", name, try #require(key.json?["public_key"] as? String))
        }
        _ = try chanctl("policy", "allow", "left", "right")
        let hostKey = try #require(try chanctl("keys", "show").json?["public_key"] as? String)

        let echo = Process()
        echo.executableURL = URL(fileURLWithPath: try Binaries.guestAgent)
        echo.arguments = ["run", "--domain", "right", "--key", tmp.path + "/right.key", "--host-key", hostKey,
                          "--state-dir", state, "--wait", "block"]
        echo.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try echo.run()
        defer { stopProcess(echo) }

        let input = tmp.path + "/input"
        let bytes = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
        _ = FileManager.default.createFile(atPath: input, contents: Data(bytes))
        for round in 1...2 {
            // A new channel each round: the first session's peer (cat) went away.
            _ = try chanctl("channel", "create", "pipe\(round)", "--between", "left", "right", "--pages", "4")
            let output = tmp.path + "/output\(round)"
            let cat = try Binaries.run("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \(input) > \(output)", try Binaries.guestAgent, "cat",
                                                   "--domain", "left", "--key", tmp.path + "/left.key", "--host-key", hostKey,
                                                   "--state-dir", state, "--channel", "pipe\(round)"], timeout: 60)
            #expect(cat.status == 0, "round \(round): \(cat.stderr)")
            let back = FileManager.default.contents(atPath: output) ?? Data()
            #expect(back == Data(bytes), "round \(round): \(back.count) of \(bytes.count) bytes came back intact")
            #expect(echo.isRunning, "the echo agent must survive its peer going away")
        }
        // SIGTERM stops the agent even though the test runner blocks signals.
        echo.terminate()
        let deadline = Date().addingTimeInterval(5)
        while echo.isRunning && Date() < deadline { usleep(10_000) }
        #expect(!echo.isRunning, "guest-agent run must stop on SIGTERM")
    }

    @Test("guest-agent keygen writes a 0600 key file and prints its public key")
    func keygen() throws {
        let tmp = try TemporaryDirectory()
        let path = tmp.path + "/agent.key"
        let result = try Binaries.run(Binaries.guestAgent, ["keygen", "--out", path, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let publicKey = try #require(result.json?["public_key"] as? String)
        #expect(publicKey.count == 64 && publicKey.allSatisfy(\.isHexDigit))
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains(publicKey))

        let plain = try Binaries.run(Binaries.guestAgent, ["keygen", "--out", tmp.path + "/second.key"])
        #expect(plain.status == 0)
        #expect(plain.stdout.trimmingCharacters(in: .whitespacesAndNewlines).count == 64)

        let again = try Binaries.run(Binaries.guestAgent, ["keygen", "--out", path])
        #expect(again.status == 1, "an existing key must not be overwritten silently")
        #expect(again.stderr.contains("--force"), "\(again.stderr)")
    }

    @Test("guest-agent: a missing key file fails with exit 1 and says how to make one")
    func missingKey() throws {
        let tmp = try TemporaryDirectory()
        let result = try Binaries.run(Binaries.guestAgent, ["ping", "--domain", "a", "--key", tmp.path + "/none.key",
                                                            "--host-key", Binaries.someHostKey, "--channel", "c",
                                                            "--state-dir", tmp.path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("keygen"), "\(result.stderr)")
    }

    @Test("guest-agent: a corrupt key file fails with exit 1 naming the file")
    func wrongKey() throws {
        let tmp = try TemporaryDirectory()
        let path = tmp.path + "/bad.key"
        _ = FileManager.default.createFile(atPath: path, contents: Data("not a key\n".utf8), attributes: [.posixPermissions: 0o600])
        let result = try Binaries.run(Binaries.guestAgent, ["run", "--domain", "a", "--key", path,
                                                            "--host-key", Binaries.someHostKey, "--state-dir", tmp.path])
        #expect(result.status == 1)
        #expect(result.stderr.contains(path), "\(result.stderr)")
    }

    @Test("guest-agent: no simulator running fails with exit 1 and says to start one")
    func noSimulator() throws {
        let tmp = try TemporaryDirectory()
        let key = tmp.path + "/agent.key"
        _ = try Binaries.run(Binaries.guestAgent, ["keygen", "--out", key])
        let state = tmp.path + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o700])
        let result = try Binaries.run(Binaries.guestAgent, ["ping", "--domain", "a", "--key", key, "--host-key", Binaries.someHostKey,
                                                            "--channel", "c", "--state-dir", state, "--json"])
        #expect(result.status == 1)
        #expect(result.json?["ok"] as? Bool == false)
        #expect((result.json?["error"] as? String ?? "").contains("chanctl sim start"), "\(result.stdout)")
    }

    @Test("guest-agent: an unknown channel fails with exit 1 and lists the published ones")
    func unknownChannel() throws {
        let tmp = try TemporaryDirectory()
        let state = tmp.path + "/state"
        let started = try Binaries.run(Binaries.chanctl, ["sim", "start", "--state-dir", state])
        defer { _ = try? Binaries.run(Binaries.chanctl, ["sim", "stop", "--state-dir", state]) }
        #expect(started.status == 0, "\(started.stderr)")
        let created = try Binaries.run(Binaries.chanctl, ["domain", "create", "web", "--altp2m", "external", "--state-dir", state])
        #expect(created.status == 0, "\(created.stderr)")
        let key = tmp.path + "/agent.key"
        _ = try Binaries.run(Binaries.guestAgent, ["keygen", "--out", key])
        let result = try Binaries.run(Binaries.guestAgent, ["ping", "--domain", "web", "--key", key, "--host-key", Binaries.someHostKey,
                                                            "--channel", "missing", "--timeout", "0.5", "--state-dir", state])
        #expect(result.status == 1)
        #expect(result.stderr.contains("no channel named 'missing'") && result.stderr.contains("chanctl channel create"),
                "\(result.stderr)")
    }

    @Test("guest-agent: bad --wait and bad --host-key values are usage errors (exit 2)")
    func badArguments() throws {
        let wait = try Binaries.run(Binaries.guestAgent, ["ping", "--domain", "a", "--key", "k", "--host-key", Binaries.someHostKey,
                                                          "--channel", "c", "--wait", "forever"])
        #expect(wait.status == 2)
        #expect(wait.stderr.contains("spin"), "\(wait.stderr)")
        let host = try Binaries.run(Binaries.guestAgent, ["run", "--domain", "a", "--key", "k", "--host-key", "xyz"])
        #expect(host.status == 2)
        #expect(host.stderr.contains("chanctl keys show"), "\(host.stderr)")
        let none = try Binaries.run(Binaries.guestAgent, ["frobnicate"])
        #expect(none.status == 2)
    }
}
