import Foundation
import Testing

@Suite("End to end: --log-level", .serialized, .timeLimit(.minutes(2)))
struct LogLevelEndToEndTests {
    @Test("chanctl --log-level: one line per event on standard error at the level asked for, none without it")
    func chanctlLevels() throws {
        let world = try SimWorld(allow: false)
        func run(_ arguments: [String]) throws -> Binaries.Result {
            try Binaries.run(Binaries.chanctl, arguments + ["--state-dir", world.state])
        }
        let quiet = try run(["policy", "allow", "left", "right"])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "no log lines without --log-level: \(quiet.stderr)")

        let debug = try run(["policy", "allow", "left", "right", "--log-level", "debug"])
        #expect(debug.status == 0)
        let lines = debug.stderr.split(separator: "\n")
        #expect(lines.contains { $0.contains(" debug ") && $0.contains("op=grant.policy.allow") && $0.hasSuffix("request") }, "\(debug.stderr)")
        #expect(lines.contains { $0.contains(" debug ") && $0.contains("elapsed=") && $0.hasSuffix("answer") }, "\(debug.stderr)")
        #expect(lines.contains { $0.contains(" info ") && $0.contains("op=grant.policy.allow") && $0.hasSuffix("done") }, "\(debug.stderr)")
        #expect(!lines.contains { $0.contains(" trace ") }, "trace lines at debug level: \(debug.stderr)")

        let info = try run(["policy", "allow", "left", "right", "--log-level", "info"])
        #expect(!info.stderr.contains(" debug "), "\(info.stderr)")
        #expect(info.stderr.contains("op=grant.policy.allow"), "\(info.stderr)")

        let refused = try run(["channel", "show", "nope", "--log-level", "error"])
        #expect(refused.status == 1)
        #expect(refused.stderr.split(separator: "\n").contains { $0.contains(" error ") && $0.contains("op=grant.channel.show") && $0.hasSuffix("refused") },
                "\(refused.stderr)")

        let bad = try run(["policy", "show", "--log-level", "loud"])
        #expect(bad.status == 2 && bad.stderr.contains("trace") && bad.stderr.contains("warning"), "\(bad.stderr)")
    }

    @Test("under journald ($JOURNAL_STREAM names standard error) each line starts with its sd-daemon priority and has no time; a redirected standard error keeps the plain format")
    func journalFormat() throws {
        let world = try SimWorld(allow: false)
        let file = world.tmp.path + "/journal-stream"
        // As systemd does: JOURNAL_STREAM is DEVICE:INODE of the stream on
        // standard error; here a file stands for the journal's socket.
        func run(matching: Bool) throws -> [Substring] {
            let stream = matching ? "$(stat -c %d:%i \(file))" : "1:1"
            let script = "exec 2>\(file); JOURNAL_STREAM=\(stream) exec \(try Binaries.chanctl) policy allow left right --state-dir \(world.state) --log-level info"
            let result = try Binaries.run("/bin/sh", ["-c", script])
            #expect(result.status == 0, "\(result.stderr)")
            return try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        }
        let journal = try run(matching: true)
        #expect(!journal.isEmpty && journal.allSatisfy { $0.hasPrefix("<6>chanctl: ") }, "\(journal)")
        #expect(journal.contains { $0.contains("op=grant.policy.allow") && $0.hasSuffix("done") }, "\(journal)")
        let plain = try run(matching: false)
        #expect(!plain.isEmpty && plain.allSatisfy { $0.contains(" info chanctl: ") && $0.first?.isNumber == true }, "\(plain)")
    }

    @Test("guest-agent run --log-level: notice hides the info lines, debug adds its own")
    func agentLevels() throws {
        let world = try SimWorld()
        try world.chanctl("channel", "create", "orders", "--between", "left", "right", "--pages", "4")
        let notice = try world.spawnAgent(["run", "--log-level", "notice", "--handshake-timeout", "2"] + world.agentOptions("right"), log: "notice")
        usleep(1_000_000)
        kill(notice.processIdentifier, SIGTERM)
        #expect(waitForExit(notice, seconds: 20), "\(world.log("notice"))")
        #expect(!world.log("notice").contains("agent running"), "an info line at --log-level notice: \(world.log("notice"))")

        let debug = try world.spawnAgent(["run", "--log-level", "debug", "--handshake-timeout", "2"] + world.agentOptions("right"), log: "debug")
        defer { stopProcess(debug) }
        #expect(world.waitForLog("debug", "starting a thread for the channel"), "\(world.log("debug"))")
        #expect(world.log("debug").contains("agent running"), "\(world.log("debug"))")

        let both = try Binaries.run(Binaries.guestAgent, ["run", "-v", "--log-level", "error"] + world.agentOptions("left"))
        #expect(both.status == 2 && both.stderr.contains("--verbose is --log-level debug"), "\(both.stderr)")
    }
}
