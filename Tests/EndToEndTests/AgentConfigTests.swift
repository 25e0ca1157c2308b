import Foundation
import Testing

/// The agent's configuration file (--config FILE) through the built
/// binaries on the simulator: settings from the file alone, the command
/// line winning over it, and bad files refused before anything attaches.
@Suite("End to end: guest-agent --config", .serialized, .timeLimit(.minutes(2)))
struct AgentConfigEndToEndTests {
    /// Writes `text` as a 0600 file in the world's directory; returns its path.
    func configFile(_ directory: String, _ text: String, name: String) -> String {
        let path = directory + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        return path
    }

    /// A file naming `domain`, with the key and state directory as paths
    /// relative to the file (the tests run from the package directory, so
    /// they only resolve against the file's).
    func agentFile(_ world: SimWorld, domain: String, keyOf keyDomain: String? = nil, extra: String = "", name: String) -> String {
        configFile(world.tmp.path, """
            # the agent of \(domain)
            domain = \(domain)
            key = ./\(keyDomain ?? domain).key
            host-key = \(world.hostKey)   # chanctl keys show
            state-dir = state
            \(extra)
            """, name: name)
    }

    @Test("run and ping get everything from --config FILE; a command-line value wins over the file's; a stale file value is named in the failure")
    func settingsFromTheFile() throws {
        let world = try SimWorld()
        for channel in ["from-file", "override"] {
            try world.chanctl("channel", "create", channel, "--between", "left", "right", "--pages", "4")
        }
        let runFile = agentFile(world, domain: "right", extra: "wait = block\npoll-ms = 20\nhandshake-timeout = 20\nlog-level = debug\n",
                                name: "right.conf")
        let agent = try world.spawnAgent(["run", "--config", runFile], log: "run")
        defer { stopProcess(agent) }
        #expect(world.waitForLog("run", "agent running"), "\(world.log("run"))")
        let started = world.log("run")
        #expect(started.contains("config=\(runFile)") && started.contains("wait=block"), "the file's settings are used: \(started)")
        #expect(started.contains(" debug "), "log-level = debug from the file: \(started)")

        // ping with nothing on the command line but the file and its own options.
        let leftFile = agentFile(world, domain: "left", name: "left.conf")
        let ping = try Binaries.run(Binaries.guestAgent, ["ping", "--config", leftFile, "--channel", "from-file", "--count", "20",
                                                          "--wait", "block", "--json"], timeout: 60)
        #expect(ping.status == 0, "\(ping.stdout) \(ping.stderr) \(world.log("run"))")
        #expect(ping.json?["count"] as? Int == 20, "\(ping.stdout)")

        // A file naming a domain that does not exist: the command line's --domain wins.
        let staleFile = agentFile(world, domain: "nobody", keyOf: "left", name: "stale.conf")
        let overridden = try Binaries.run(Binaries.guestAgent, ["ping", "--config", staleFile, "--domain", "left", "--channel", "override",
                                                                "--count", "20", "--wait", "block", "--json"], timeout: 60)
        #expect(overridden.status == 0, "\(overridden.stdout) \(overridden.stderr) \(world.log("run"))")
        #expect(overridden.json?["count"] as? Int == 20, "\(overridden.stdout)")

        // Without it the file's value is used, and the failure says where it came from.
        let stale = try Binaries.run(Binaries.guestAgent, ["ping", "--config", staleFile, "--channel", "override", "--count", "1",
                                                           "--timeout", "2"])
        #expect(stale.status == 1, "\(stale.stdout) \(stale.stderr)")
        #expect(stale.stderr.contains("no domain nobody") && stale.stderr.contains("the domain 'nobody' is from \(staleFile):2"),
                "\(stale.stderr)")

        // config check names every value's source.
        let check = try Binaries.run(Binaries.guestAgent, ["config", "check", "--config", staleFile, "--domain", "left", "--json"])
        #expect(check.status == 0, "\(check.stdout) \(check.stderr)")
        let settings = check.json?["settings"] as? [String: [String: String]] ?? [:]
        #expect(settings["domain"] == ["value": "left", "source": "command line"], "\(check.stdout)")
        #expect(settings["key"] == ["value": world.tmp.path + "/left.key", "source": "\(staleFile):3"], "\(check.stdout)")
        #expect(settings["state-dir"]?["value"] == world.state, "\(check.stdout)")
        #expect(settings["wait"] == ["value": "adaptive", "source": "default"], "\(check.stdout)")
        #expect(agent.isRunning, "\(world.log("run"))")
    }

    @Test("a bad file exits 2 naming FILE:LINE before attaching; a missing --config file exits 1; --no-config ignores it; a required value missing everywhere says so")
    func badFiles() throws {
        let tmp = try TemporaryDirectory()
        let key = String(repeating: "ab", count: 32)
        let cases: [(text: String, line: Int, says: String)] = [
            ("domain = a\nkye = a.key\n", 2, "unknown key 'kye': the keys are domain, key, host-key"),
            ("domain = a\nkey = a.key\n\ndomain = b\n", 4, "'domain' is set twice, on line 1 and line 4"),
            ("# c\nhost-key = \(key.prefix(10))\n", 2, "bad host-key '\(key.prefix(10))': expected 64 hex digits"),
            ("handshake-timeout = forever\n", 1, "bad handshake-timeout 'forever': expected seconds"),
            ("backend = kvm\n", 1, "bad backend 'kvm': expected one of sim, xen, xen-sim"),
        ]
        for (index, item) in cases.enumerated() {
            let path = configFile(tmp.path, item.text, name: "bad\(index).conf")
            for command in [["run"], ["ping", "--channel", "c"], ["config", "check"]] {
                let result = try Binaries.run(Binaries.guestAgent, command + ["--config", path, "--state-dir", tmp.path + "/nowhere"])
                #expect(result.status == 2, "case \(index) \(command[0]): \(result.stderr)")
                #expect(result.stderr.contains("\(path):\(item.line): \(item.says)"), "case \(index) \(command[0]): \(result.stderr)")
            }
        }
        let bad = configFile(tmp.path, "frobnicate = yes\n", name: "ignored.conf")
        let ignored = try Binaries.run(Binaries.guestAgent, ["config", "check", "--config", bad, "--no-config",
                                                             "--domain", "a", "--key", "a.key", "--host-key", key])
        #expect(ignored.status == 2 && ignored.stderr.contains("contradict"), "\(ignored.stderr)")
        let none = try Binaries.run(Binaries.guestAgent, ["config", "check", "--config", "none", "--domain", "a", "--key", "a.key", "--host-key", key])
        #expect(none.status == 0, "\(none.stdout) \(none.stderr)")

        let missing = try Binaries.run(Binaries.guestAgent, ["run", "--config", tmp.path + "/none.conf"])
        #expect(missing.status == 1, "\(missing.stderr)")
        #expect(missing.stderr.contains("no configuration file at \(tmp.path)/none.conf"), "\(missing.stderr)")

        let partial = configFile(tmp.path, "domain = a\nhost-key = \(key)\n", name: "partial.conf")
        let noKey = try Binaries.run(Binaries.guestAgent, ["ping", "--channel", "c", "--config", partial])
        #expect(noKey.status == 2, "\(noKey.stderr)")
        #expect(noKey.stderr.contains("Missing expected argument '--key <file>'") && noKey.stderr.contains("'key = ...' in the configuration file")
                && noKey.stderr.contains("\(partial) does not set it"), "\(noKey.stderr)")
    }

    @Test("as root, a configuration file others can write is refused with the chmod fix",
          .enabled(if: geteuid() == 0, "the check applies when the agent runs as root"))
    func unsafeFile() throws {
        let tmp = try TemporaryDirectory()
        let path = configFile(tmp.path, "domain = a\n", name: "agent.conf")
        chmod(path, 0o666)
        let result = try Binaries.run(Binaries.guestAgent, ["run", "--config", path])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("writable by others than its owner (mode 0666)") && result.stderr.contains("chmod 600 \(path)"),
                "\(result.stderr)")
        chmod(path, 0o644)
        let accepted = try Binaries.run(Binaries.guestAgent, ["config", "check", "--config", path])
        #expect(accepted.status == 2 && accepted.stderr.contains("Missing expected argument '--key"), "\(accepted.stderr)")
    }
}
