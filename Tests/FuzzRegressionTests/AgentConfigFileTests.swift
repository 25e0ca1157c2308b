import AgentServices
import Foundation
import Testing

/// guest-agent's configuration file parser and loader (AgentConfigFile):
/// what a good file yields, and the message of each kind of mistake.
@Suite struct AgentConfigFileTests {
    static let hostKey = String(repeating: "3b", count: 32)

    func parse(_ text: String, directory: String = "/etc/secure-channel") throws(AgentConfigFile.ContentError) -> AgentConfigFile {
        try AgentConfigFile.parse(text, file: "agent.conf", directory: directory)
    }

    func error(_ text: String) -> AgentConfigFile.ContentError? {
        do { _ = try parse(text); return nil } catch { return error }
    }

    @Test("a good file with every key, comments, blank lines and odd spacing: each value, checked and typed, with its line")
    func everyKey() throws {
        let text = """
            # The agent of domain web.

            domain = web
            key=web.key   # next to this file
            \thost-key  =  \(Self.hostKey)\r
            backend = xen-sim
            state-dir = /var/lib/secure-channel
            enforcement = mprotect
            log-level = notice
            services = /etc/secure-channel/services.conf
            wait = block
            poll-ms = 20
            handshake-timeout = 2.5
            """
        let file = try parse(text)
        #expect(file.entries.map(\.key) == AgentConfigFile.keys.map(\.name), "every key, in the documentation's order")
        #expect(file.entry("domain") == .init(key: "domain", value: .text("web"), line: 3))
        #expect(file.entry("key")?.value == .text("/etc/secure-channel/web.key"))
        #expect(file.entry("host-key")?.value == .text(Self.hostKey))
        #expect(file.entry("backend")?.value == .text("xen-sim"))
        #expect(file.entry("enforcement")?.value == .text("mprotect"))
        #expect(file.entry("log-level")?.value == .text("notice"))
        #expect(file.entry("wait")?.value == .text("block"))
        #expect(file.entry("poll-ms")?.value == .integer(20))
        #expect(file.entry("handshake-timeout")?.value == .seconds(2.5))
        #expect(file.entry("handshake-timeout")?.line == 13)
        #expect(try parse("# only a comment\n\n   \n").entries.isEmpty)
        #expect(try parse("").entries.isEmpty)
    }

    @Test("'#' starts a comment at the start of a line or after whitespace, not inside a value")
    func comments() throws {
        let file = try parse("#domain = a\n  # key = b\nkey = /keys/web#1.key # the first\n")
        #expect(file.entries.count == 1)
        #expect(file.entry("key")?.value == .text("/keys/web#1.key"))
    }

    @Test("relative paths are taken from the file's directory; absolute ones stay")
    func relativePaths() throws {
        let file = try parse("key = keys/web.key\nstate-dir = ./state\nservices = ../shared/services.conf\n", directory: "/srv/agent")
        #expect(file.entry("key")?.value == .text("/srv/agent/keys/web.key"))
        #expect(file.entry("state-dir")?.value == .text("/srv/agent/state"))
        #expect(file.entry("services")?.value == .text("/srv/agent/../shared/services.conf"))
        #expect(try parse("key = /abs/web.key\n", directory: "/srv").entry("key")?.value == .text("/abs/web.key"))
        #expect(AgentConfigFile.directory(of: "/etc/secure-channel/agent.conf") == "/etc/secure-channel")
        #expect(AgentConfigFile.directory(of: "agent.conf") == ".")
        #expect(AgentConfigFile.directory(of: "/agent.conf") == "/")
        // domain is not a path: a value like a relative path is kept as is.
        #expect(try parse("domain = web\n").entry("domain")?.value == .text("web"))
    }

    @Test("an unknown key: FILE:LINE and the list of known keys")
    func unknownKey() throws {
        let e = try #require(error("domain = web\n\ndomian = db\n"))
        #expect(e.line == 3)
        #expect(e.description.hasPrefix("agent.conf:3: unknown key 'domian'"), "\(e)")
        for key in AgentConfigFile.keys { #expect(e.problem.contains(key.name), "the known keys are listed: \(e)") }
        let dashed = try #require(error("--domain = web\n"))
        #expect(dashed.problem.contains("without dashes") && dashed.problem.contains("'domain = web'"), "\(dashed)")
        let verbose = try #require(error("verbose = true\n"))
        #expect(verbose.problem.contains("unknown key 'verbose'"), "-v is for the command line: \(verbose)")
    }

    @Test("a key given twice: both lines named")
    func duplicateKey() throws {
        let e = try #require(error("domain = web\nkey = a.key\n# again\ndomain = db\n"))
        #expect(e.line == 4)
        #expect(e.problem.contains("'domain' is set twice, on line 1 and line 4"), "\(e)")
    }

    @Test("bad values: FILE:LINE, the value, and the form expected")
    func badValues() throws {
        let cases: [(text: String, says: String)] = [
            ("host-key = abcd\n", "expected 64 hex digits"),
            ("host-key = \(String(repeating: "g", count: 64))\n", "expected 64 hex digits"),
            ("backend = kvm\n", "expected one of sim, xen, xen-sim"),
            ("enforcement = strict\n", "expected one of software, mprotect"),
            ("log-level = loud\n", "expected one of trace, debug, info, notice, warning, error, critical"),
            ("wait = sometimes\n", "expected one of spin, block, adaptive"),
            ("poll-ms = 0\n", "expected a whole number in 1...10000"),
            ("poll-ms = 10001\n", "expected a whole number in 1...10000"),
            ("poll-ms = fast\n", "expected a whole number in 1...10000"),
            ("handshake-timeout = 0\n", "expected seconds, more than 0 and at most 3600"),
            ("handshake-timeout = 3601\n", "expected seconds, more than 0 and at most 3600"),
            ("handshake-timeout = inf\n", "expected seconds"),
            ("handshake-timeout = -1\n", "expected seconds"),
            ("domain = web server\n", "expected a name without spaces"),
            ("domain =\n", "'domain' has no value"),
            ("domain web\n", "is not a setting: write KEY = VALUE"),
        ]
        for (text, says) in cases {
            let e = try #require(error("# first line\n" + text), "accepted: \(text)")
            #expect(e.line == 2, "\(text): \(e)")
            #expect(e.description.hasPrefix("agent.conf:2: "), "\(e)")
            #expect(e.problem.contains(says), "\(text): \(e)")
        }
        let control = try #require(error("key = a\u{1}b\n"))
        #expect(control.problem.contains("bad key"), "\(control)")
        let long = try #require(error("domain = " + String(repeating: "a", count: 5000) + "\n"))
        #expect(long.problem.contains("longer than 4096 bytes"), "\(long)")
    }

    @Test("as root, a file others than root could change is refused with the chmod or chown fix; otherwise accepted")
    func permissions() throws {
        let path = "/etc/secure-channel/agent.conf"
        #expect(AgentConfigFile.permissionProblem(path: path, mode: 0o100600, owner: 0, runningAsRoot: true) == nil)
        #expect(AgentConfigFile.permissionProblem(path: path, mode: 0o100644, owner: 0, runningAsRoot: true) == nil)
        let group = try #require(AgentConfigFile.permissionProblem(path: path, mode: 0o100664, owner: 0, runningAsRoot: true))
        #expect(group.contains("mode 0664") && group.contains("chmod 600 \(path)") && group.contains("644"), "\(group)")
        let world = try #require(AgentConfigFile.permissionProblem(path: path, mode: 0o100646, owner: 0, runningAsRoot: true))
        #expect(world.contains("writable by others"), "\(world)")
        let owner = try #require(AgentConfigFile.permissionProblem(path: path, mode: 0o100600, owner: 1000, runningAsRoot: true))
        #expect(owner.contains("uid 1000") && owner.contains("chown root:root \(path)"), "\(owner)")
        #expect(AgentConfigFile.permissionProblem(path: path, mode: 0o100666, owner: 1000, runningAsRoot: false) == nil,
                "a user's own agent may use a file of its own")
    }

    @Test("load: a real file is parsed relative to its directory; a missing, unsafe or bad one is told apart")
    func load() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agent-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/agent.conf"
        try "domain = web\nkey = web.key\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o600)
        let file = try AgentConfigFile.load(path, runningAsRoot: geteuid() == 0)
        #expect(file.file == path)
        #expect(file.entry("key")?.value == .text(directory + "/web.key"))

        #expect(throws: AgentConfigFile.LoadError.missing(path: directory + "/none.conf")) {
            try AgentConfigFile.load(directory + "/none.conf", runningAsRoot: false)
        }
        chmod(path, 0o666)
        do {
            _ = try AgentConfigFile.load(path, runningAsRoot: true)
            Issue.record("a 0666 file was accepted as root")
        } catch {
            guard case .unsafe(_, let problem) = error else { Issue.record("\(error)"); return }
            #expect(problem.contains("chmod 600 \(path)"), "\(problem)")
        }
        chmod(path, 0o600)
        try "domain = web\nbackend = kvm\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: AgentConfigFile.LoadError.content(.init(file: path, line: 2, problem: "bad backend 'kvm': expected one of sim, xen, xen-sim"))) {
            try AgentConfigFile.load(path, runningAsRoot: false)
        }
        do {
            _ = try AgentConfigFile.load(directory, runningAsRoot: false)
            Issue.record("a directory was read as a configuration file")
        } catch {
            #expect(error.description.contains("not a regular file"), "\(error)")
        }
    }
}
