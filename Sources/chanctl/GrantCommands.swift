import Altp2m
import Altp2mGrant
import Altp2mSim
import ArgumentParser
import XenBackend
import XenGuest
import XenInterface

/// `--backend sim|xen|xen-sim`: which hypervisor the commands drive, and how.
struct BackendOptions: ParsableArguments {
    enum Backend: String, ExpressibleByArgument, CaseIterable {
        case sim
        case xen
        case xenSim = "xen-sim"
    }

    @Option(help: ArgumentHelp(
        "The hypervisor: sim (the simulator daemon), xen (the Xen libraries on a Xen dom0) or xen-sim.",
        discussion: "xen-sim runs the Xen backend's own code (XenControl) over the simulator's implementation of the Xen libraries, against the simulator at --state-dir."))
    var backend: Backend = .sim

    @Option(name: .customLong("agent-timeout"), help: ArgumentHelp(
        "With --backend xen or xen-sim: how long channel create waits for the guests' agents to answer the frame flow, in seconds (1...600).",
        valueName: "SECONDS"))
    var agentTimeout: Int = 30

    @Option(name: .customLong("lock-wait"), help: ArgumentHelp(
        "With --backend xen or xen-sim: how long a grant operation waits for another one on the same state (another chanctl, or a chanctl domain watch sweep) to finish, in seconds (0...600; 0 fails at once).",
        valueName: "SECONDS"))
    var lockWait: Int = 10

    func validate() throws {
        guard (1...600).contains(agentTimeout) else {
            throw ValidationError("bad --agent-timeout \(agentTimeout): expected 1...600 seconds")
        }
        guard (0...600).contains(lockWait) else {
            throw ValidationError("bad --lock-wait \(lockWait): expected 0...600 seconds")
        }
    }

    /// Whether the Xen backend's code runs (on Xen, or on the simulator's Xen libraries).
    var usesXenBackend: Bool { backend != .sim }

    /// The Xen backend over the chosen libraries.
    func openXenControl(_ options: GlobalOptions) throws(CommandFailure) -> XenControl {
        do {
            switch backend {
            case .xenSim:
                let directory = options.stateDirectory
                let libraries: XenHostLibraries
                do {
                    libraries = XenHostLibraries(control: try SimXenControlLibrary(stateDirectory: directory),
                                                 store: try SimXenStoreLibrary(stateDirectory: directory),
                                                 foreignMemory: try SimForeignMemoryLibrary(stateDirectory: directory))
                } catch {
                    throw CommandFailure(error)
                }
                return configured(try XenControl(libraries: libraries))
            case .xen, .sim:
                return configured(try XenControl())
            }
        } catch let error as XenBackendError {
            throw .failure(error.description)
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw .failure("\(error)")
        }
    }

    /// The frame flow's timeout from `--agent-timeout`, and its progress
    /// lines on standard error (standard output stays one JSON object).
    private func configured(_ control: XenControl) -> XenControl {
        control.frameReportTimeoutMilliseconds = agentTimeout * 1000
        control.frameFlowProgress = { line in
            var standardError = StandardError()
            print("chanctl: \(line)", to: &standardError)
        }
        return control
    }

    /// Where the grant module keeps its state when it runs in this process
    /// (on Xen, and on xen-sim apart from the simulator's own grant module).
    func grantDirectory(_ options: GlobalOptions) -> String {
        backend == .xenSim ? options.stateDirectory.path + "/grant-xen-sim" : options.stateDirectory.grantPath
    }
}

/// Runs one grant operation on the chosen backend. A change that happened
/// but whose audit record could not be written is said on standard error.
func grantCall(_ options: GlobalOptions, _ backend: BackendOptions, _ op: String,
               _ arguments: [String: JSONValue] = [:]) throws(CommandFailure) -> JSONValue {
    let answer = try grantAnswer(options, backend, op, arguments)
    if let problem = answer["audit_error"]?.string {
        var standardError = StandardError()
        print("chanctl: warning: \(op) was done, but its audit record is missing: \(problem)", to: &standardError)
    }
    if !op.hasSuffix(".show") && !op.hasSuffix(".list") {
        options.log.info("done", metadata: ["op": "\(op)", "backend": "\(backend.backend.rawValue)"])
    }
    return answer
}

private func grantAnswer(_ options: GlobalOptions, _ backend: BackendOptions, _ op: String,
                         _ arguments: [String: JSONValue]) throws(CommandFailure) -> JSONValue {
    switch backend.backend {
    case .sim:
        return try Session(options).call(op, arguments)
    case .xen, .xenSim:
        let control = try backend.openXenControl(options)
        let service: GrantService
        do {
            service = GrantService(grants: try GrantModule(host: control, stateDirectory: backend.grantDirectory(options),
                                                           lockWaitMilliseconds: backend.lockWait * 1000))
        } catch {
            throw .failure(error.description)
        }
        options.log.debug("request", metadata: ["op": "\(op)", "backend": "\(backend.backend.rawValue)"])
        do {
            return .object(try service.handle(op, arguments: arguments))
        } catch {
            options.log.error("refused", metadata: ["op": "\(op)", "error": "\(error)"])
            switch error {
            case .hypervisor(let errno, let message):
                throw CommandFailure(exitCode: 3, json: ["ok": false, "errno": .string(errno.name),
                                                         "code": .int(Int64(errno.code)), "message": .string(message)],
                                     text: message)
            case .usage(let message): throw .usage(message)
            case .failure(let message): throw .failure(message)
            }
        }
    }
}

func grantRun(_ options: GlobalOptions, _ backend: BackendOptions, _ op: String, _ arguments: [String: JSONValue] = [:],
              text: ((JSONValue) -> String)? = nil) throws(CommandFailure) {
    emit(try grantCall(options, backend, op, arguments), json: options.json, text: text)
}

// MARK: keys

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "The host's signing key and the agents' keys.",
        subcommands: [Show.self, Register.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the host's Ed25519 public key (made on first use); agents pin it.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions

        func run() throws {
            try grantRun(options, backend, "grant.keys.show") { r in renderScalar(r["public_key"] ?? .null) }
        }
    }

    struct Register: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register the X25519 public key of the agent in a domain (descriptors are sealed to it).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain's name.") var domain: String
        @Argument(help: "The agent's X25519 public key, 64 hex digits.") var publicKey: String

        func run() throws {
            try grantRun(options, backend, "grant.keys.register",
                         ["domain": .string(domain), "public_key": .string(publicKey)]) { _ in
                "registered the agent key of \(domain)"
            }
        }
    }
}

// MARK: policy

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Which domains may be connected (default: none).",
        subcommands: [Allow.self, Deny.self, Limit.self, Show.self])

    struct Allow: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Allow channels between two domains.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "One domain's name.") var first: String
        @Argument(help: "The other domain's name.") var second: String
        @Option(name: .customLong("max-pages"), help: "Largest window allowed (2...512).") var maxPages: Int = 64
        @Option(help: ArgumentHelp("Modes allowed, comma-separated: encrypted, isolated (default: encrypted).", valueName: "modes"))
        var modes: String?
        @Option(help: ArgumentHelp("Cipher suites allowed, comma-separated: chachapoly, aesgcm (default: both).", valueName: "suites"))
        var suites: String?

        static let modeNames = ["encrypted", "isolated"]
        static let suiteNames = ["chachapoly", "aesgcm"]

        /// A comma-separated list, each name one of `allowed`.
        static func list(_ text: String, option: String, allowed: [String]) throws -> [String] {
            let names = text.split(separator: ",", omittingEmptySubsequences: false)
                .map { String($0.filter { $0 != " " }).lowercased() }
            guard !names.isEmpty, !names.contains(where: \.isEmpty) else {
                throw ValidationError("bad \(option) '\(text)': expected a comma-separated list of \(allowed.joined(separator: ", "))")
            }
            for name in names where !allowed.contains(name) {
                throw ValidationError("bad \(option) value '\(name)': expected \(allowed.joined(separator: " or ")) (comma-separated)")
            }
            return names
        }

        func validate() throws {
            guard (2...512).contains(maxPages) else { throw ValidationError("bad --max-pages \(maxPages): expected 2...512") }
            guard first != second else { throw ValidationError("a policy rule names two different domains") }
            if let modes { _ = try Self.list(modes, option: "--modes", allowed: Self.modeNames) }
            if let suites { _ = try Self.list(suites, option: "--suites", allowed: Self.suiteNames) }
        }

        func run() throws {
            var arguments: [String: JSONValue] = ["a": .string(first), "b": .string(second), "max_pages": .int(Int64(maxPages))]
            if let modes {
                arguments["modes"] = .array(try Self.list(modes, option: "--modes", allowed: Self.modeNames).map { .string($0) })
            }
            if let suites {
                arguments["suites"] = .array(try Self.list(suites, option: "--suites", allowed: Self.suiteNames).map { .string($0) })
            }
            try grantRun(options, backend, "grant.policy.allow", arguments) { r in
                let modes = (r["modes"]?.array ?? []).compactMap(\.string).joined(separator: ", ")
                let suites = (r["suites"]?.array ?? []).compactMap(\.string).joined(separator: ", ")
                return "allowed \(first) <-> \(second), up to \(maxPages) pages, modes \(modes), suites \(suites)"
            }
        }
    }

    struct Deny: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove the rule for two domains (existing channels stay until destroyed).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "One domain's name.") var first: String
        @Argument(help: "The other domain's name.") var second: String

        func run() throws {
            try grantRun(options, backend, "grant.policy.deny", ["a": .string(first), "b": .string(second)]) { r in
                r["removed"]?.bool == true ? "removed the rule for \(first) <-> \(second)" : "no rule for \(first) <-> \(second)"
            }
        }
    }

    struct Limit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set the most channels one domain may take part in (default 16).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Option(name: .customLong("max-channels-per-domain"), help: "The cap (1...4096).") var maxChannels: Int

        func validate() throws {
            guard GrantPolicy.maxChannelsPerDomainRange.contains(maxChannels) else {
                throw ValidationError("bad --max-channels-per-domain \(maxChannels): expected 1...4096")
            }
        }

        func run() throws {
            try grantRun(options, backend, "grant.policy.limit", ["max_channels_per_domain": .int(Int64(maxChannels))]) { _ in
                "each domain may now take part in up to \(maxChannels) channels"
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the policy.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions

        func run() throws {
            try grantRun(options, backend, "grant.policy.show")
        }
    }
}

// MARK: channel

struct ChannelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channel",
        abstract: "Create, list, show, re-issue and destroy channels.",
        subcommands: [Create.self, List.self, Show.self, Reissue.self, Destroy.self])

    enum SuiteArgument: String, ExpressibleByArgument, CaseIterable { case chachapoly, aesgcm }
    enum ModeArgument: String, ExpressibleByArgument, CaseIterable { case encrypted, isolated }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a channel between two domains and publish each side's descriptor.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The channel's name: 1-64 of A-Z a-z 0-9 _ -, not starting with - (as xenstore takes them)") var name: String
        @Option(parsing: .upToNextOption, help: ArgumentHelp("The two domains.", valueName: "DOM_A DOM_B"))
        var between: [String] = []
        @Option(help: "Pages in each window, control page included (2...512).") var pages: Int = 16
        @Option(help: "chachapoly or aesgcm.") var suite: SuiteArgument = .chachapoly
        @Option(help: "encrypted or isolated.") var mode: ModeArgument = .encrypted
        @Flag(name: .customLong("one-way"), help: "Data flows from the initiator to the responder only.") var oneWay = false

        func validate() throws {
            guard between.count == 2 else {
                throw ValidationError("--between takes two domains: --between DOM_A DOM_B")
            }
            guard (2...512).contains(pages) else { throw ValidationError("bad --pages \(pages): expected 2...512") }
        }

        func run() throws {
            try grantRun(options, backend, "grant.channel.create", [
                "name": .string(name), "a": .string(between[0]), "b": .string(between[1]), "pages": .int(Int64(pages)),
                "suite": .string(suite.rawValue), "mode": .string(mode.rawValue), "one_way": .bool(oneWay),
            ]) { r in
                var lines = ["created channel \(name) (\(renderScalar(r["channel"] ?? .null)))", renderFields(r)]
                for warning in r["warnings"]?.array ?? [] { lines.append("warning: \(renderScalar(warning))") }
                return lines.joined(separator: "\n")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List channels.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions

        func run() throws {
            try grantRun(options, backend, "grant.channel.list") { r in
                let channels = r["channels"]?.array ?? []
                if channels.isEmpty { return "no channels" }
                return channels.map { c in
                    "\(renderScalar(c["name"] ?? .null)) \(renderScalar(c["initiator"] ?? .null)) <-> \(renderScalar(c["responder"] ?? .null)) \(renderScalar(c["pages"] ?? .null)) pages \(renderScalar(c["suite"] ?? .null)) \(renderScalar(c["mode"] ?? .null))"
                }.joined(separator: "\n")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a channel and check it against the hypervisor.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The channel's name.") var name: String

        func run() throws {
            try grantRun(options, backend, "grant.channel.show", ["name": .string(name)])
        }
    }

    struct Reissue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish fresh descriptors for a channel: a new pre-shared key, the next generation, a new expiry.",
            discussion: """
                Both agents must open the new descriptors (a new handshake). An agent \
                accepts each descriptor once, so an agent that restarted on a live \
                channel, or whose descriptor expired, needs a re-issue to open it again.
                """)
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The channel's name.") var name: String
        @Option(help: "Seconds the new descriptors are valid.") var lifetime: Int = 3600

        func run() throws {
            try grantRun(options, backend, "grant.channel.reissue", ["name": .string(name), "lifetime": .int(Int64(lifetime))]) { r in
                "re-issued channel \(name): generation \(renderScalar(r["generation"] ?? .null))"
            }
        }
    }

    struct Destroy: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Tear a channel down (the agents see it closed).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The channel's name.") var name: String

        func run() throws {
            try grantRun(options, backend, "grant.channel.destroy", ["name": .string(name)]) { r in
                let problems = r["problems"]?.array ?? []
                let notes = r["notes"]?.array ?? []
                var text = problems.isEmpty ? "destroyed channel \(name)"
                    : "destroyed channel \(name); not undone:\n" + problems.map(renderScalar).joined(separator: "\n")
                if !notes.isEmpty { text += "\nleft as it is:\n" + notes.map(renderScalar).joined(separator: "\n") }
                return text
            }
        }
    }
}
