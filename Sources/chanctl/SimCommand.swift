import Altp2m
import Altp2mSim
import ArgumentParser
import ServiceNotify

/// `chanctl sim ...`: the simulator's lifecycle, and what happens inside a
/// guest (memory accesses, VMFUNC, #VE) for scripting and tests.
struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Run the altp2m simulator and act as a guest inside it.",
        subcommands: [
            Start.self, Stop.self, Status.self, Serve.self,
            Access.self, VMFUNC.self, VEInfo.self, VERearm.self, Host.self, ViewEntry.self,
            GuestProbeCommand.self, ChannelProbeCommand.self,
        ]
    )

    enum CPUArgument: String, ExpressibleByArgument, CaseIterable {
        case intel
        case intelNoVE = "intel-no-ve"
        case intelNoVMFUNC = "intel-no-vmfunc"
        case amd
    }

    enum XenArgument: String, ExpressibleByArgument, CaseIterable {
        case v417 = "4.17"
        case v419 = "4.19"
        case v420 = "4.20"
        case v421 = "4.21"
    }

    /// The host profile options of `start` and `serve`.
    struct HostOptions: ParsableArguments {
        @Option(help: "The CPU: intel (VMFUNC and #VE), intel-no-ve, intel-no-vmfunc or amd. Default: intel, or what the state directory's journal recorded.")
        var cpu: CPUArgument?

        @Flag(name: .customLong("no-altp2m-boot"), help: "Boot Xen without altp2m=1 (every altp2m call fails with EOPNOTSUPP).")
        var noAltp2mBoot = false

        @Option(help: "The Xen release whose semantics apply: 4.17, 4.19, 4.20 or 4.21. Default: 4.17, or what the journal recorded.")
        var xen: XenArgument?

        @Option(name: .customLong("machine-mib"), help: ArgumentHelp("Machine memory in MiB (a sparse file).", visibility: .hidden))
        var machineMiB: Int?

        var configuration: SimDaemon.Configuration {
            var c = SimDaemon.Configuration()
            if let cpu {
                c.cpu = switch cpu {
                case .intel: .intel
                case .intelNoVE: .intelNoVE
                case .intelNoVMFUNC: .intelNoVMFUNC
                case .amd: .amd
                }
            }
            if noAltp2mBoot { c.altp2mBootOption = false }
            if let xen {
                c.xen = switch xen {
                case .v417: .v4_17
                case .v419: .v4_19
                case .v420: .v4_20
                case .v421: .v4_21
                }
            }
            if let machineMiB { c.machineFrames = machineMiB * 256 }
            return c
        }

        var arguments: [String] {
            var a: [String] = []
            if let cpu { a += ["--cpu", cpu.rawValue] }
            if noAltp2mBoot { a.append("--no-altp2m-boot") }
            if let xen { a += ["--xen", xen.rawValue] }
            if let machineMiB { a += ["--machine-mib", String(machineMiB)] }
            return a
        }
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the simulator daemon in the background; returns once it answers.",
            discussion: "A state directory left by a daemon that died (kill -9) is recovered from its journal.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var host: HostOptions

        func run() throws {
            // The daemon logs at the level asked for here, into STATE/daemon.log.
            let level = options.logLevel.map { ["--log-level", $0.rawValue] } ?? []
            let response = try DaemonLauncher.start(options.stateDirectory, serveArguments: host.arguments + level)
            emit(response, json: options.json) { r in
                "simulator running (pid \(renderScalar(r["pid"] ?? .null)), \(renderScalar(r["host"] ?? .null))) at \(renderScalar(r["socket"] ?? .null))"
            }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the simulator: the simulated host powers off and its state is discarded.")
        @OptionGroup var options: GlobalOptions

        func run() throws {
            let response = try DaemonLauncher.stop(options.stateDirectory)
            emit(response, json: options.json) { _ in "simulator stopped" }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show whether the simulator runs, its host profile and domains.")
        @OptionGroup var options: GlobalOptions

        func run() throws {
            let session = try Session(options)
            try session.run("sim.status") { renderFields($0) }
        }
    }

    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the simulator daemon in the foreground (sim start runs this).",
            discussion: """
                SIGTERM or SIGINT stops it with the simulated host's state kept in the state \
                directory, for the next daemon to recover; sim stop powers the host off. Under \
                a service manager ($NOTIFY_SOCKET set, as by secure-channel-sim.service, \
                Type=notify) it sends READY=1 once its socket accepts clients.
                """)
        @OptionGroup var options: GlobalOptions
        @OptionGroup var host: HostOptions
        @Flag(name: .long, help: ArgumentHelp("Detach from the terminal's session (sim start passes it).", visibility: .hidden))
        var background = false

        func run() throws {
            do {
                // Under a service manager (secure-channel-sim.service, Type=notify):
                // READY=1 once the socket listens. A daemon that sim start put in
                // the background tells nothing to whatever manager its caller has.
                let notifier: ServiceManagerNotifier?
                do { notifier = background ? nil : try ServiceManagerNotifier.fromEnvironment() } catch {
                    throw CommandFailure.failure(error.description)
                }
                // The daemon's own log: lifecycle at info by default; --log-level
                // debug adds each changing request, trace every request.
                let daemon = try SimDaemon(stateDirectory: options.stateDirectory, configuration: host.configuration,
                                           background: background,
                                           logger: SimDaemon.defaultLogger(level: options.logLevel ?? .info))
                // The grant module runs next to the engine (chanctl keys|policy|channel).
                do { daemon.register(try GrantService.inDaemon(daemon)) } catch {
                    throw CommandFailure.failure("cannot open the grant module in \(options.stateDirectory.grantPath): \(error)")
                }
                try daemon.run {
                    guard let notifier else { return }
                    do { try notifier.notify(["READY=1", "STATUS=serving at \(options.stateDirectory.socketPath)"]) } catch {
                        var standardError = StandardError()
                        print("chanctl sim serve: \(error)", to: &standardError)
                    }
                }
            } catch let failure as CommandFailure {
                throw failure
            } catch let error as SimDaemonError {
                throw CommandFailure.failure(error.description)
            } catch {
                throw CommandFailure.failure("\(error)")
            }
        }
    }

    struct Access: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A guest memory access on a vCPU; prints the outcome (ok, lazy_copy_then_ok, ve, vm_event, relaxed, no_mapping, domain_crashed, ...).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The vCPU.", transform: ArgumentValue.vcpu) var vcpu: UInt32
        @Argument(help: "The gfn.", transform: ArgumentValue.realGFN) var gfn: UInt64
        @Argument(help: "r (read), w (write) or x (execute).") var kind: String
        @Option(help: "The byte offset in the page.", transform: { t in
            guard let v = ArgumentValue.integer(t), v < 4096 else { throw ValidationError("bad --offset '\(t)': expected 0...4095") }
            return v
        })
        var offset: UInt64 = 0
        @Option(help: "The guest linear address, if the access had one.", transform: { t in
            guard let v = ArgumentValue.integer(t) else { throw ValidationError("bad --gla '\(t)': expected a number") }
            return v
        })
        var gla: UInt64?
        @Flag(name: .customLong("page-walk"), help: "The access is the CPU's page walk of a guest page table.")
        var pageWalk = false

        func validate() throws {
            guard ["r", "w", "x"].contains(kind) else { throw ValidationError("bad access kind '\(kind)': expected r, w or x") }
        }

        func run() throws {
            var arguments: [String: JSONValue] = ["domain": domainArgument(domain), "vcpu": .int(Int64(vcpu)),
                                                  "gfn": .uint(gfn), "kind": .string(kind), "offset": .uint(offset),
                                                  "page_walk": .bool(pageWalk)]
            if let gla { arguments["gla"] = .uint(gla) }
            try Session(options).run("guest.access", arguments) { renderFields($0) }
        }
    }

    struct VMFUNC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "vmfunc", abstract: "The guest on a vCPU executes VMFUNC (EAX=0 leaf, ECX=INDEX); prints ok or ud and the view.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The vCPU.", transform: ArgumentValue.vcpu) var vcpu: UInt32
        @Argument(help: "The view index (ECX).", transform: { t in
            guard let v = ArgumentValue.integer(t), v <= UInt64(UInt32.max) else { throw ValidationError("bad INDEX '\(t)': expected 0...4294967295") }
            return UInt32(v)
        })
        var index: UInt32
        @Option(help: "EAX (the VM function; only 0 exists).") var eax: UInt32 = 0

        func run() throws {
            try Session(options).run("guest.vmfunc", ["domain": domainArgument(domain), "vcpu": .int(Int64(vcpu)),
                                                      "index": .int(Int64(index)), "eax": .int(Int64(eax))]) { renderFields($0) }
        }
    }

    struct VEInfo: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ve-info", abstract: "Read a vCPU's #VE information page.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The vCPU.", transform: ArgumentValue.vcpu) var vcpu: UInt32

        func run() throws {
            try Session(options).run("guest.ve-info", ["domain": domainArgument(domain), "vcpu": .int(Int64(vcpu))]) { renderFields($0) }
        }
    }

    struct VERearm: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ve-rearm", abstract: "The guest writes 0 to its #VE semaphore (re-arms #VE).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The vCPU.", transform: ArgumentValue.vcpu) var vcpu: UInt32

        func run() throws {
            try Session(options).run("guest.ve-rearm", ["domain": domainArgument(domain), "vcpu": .int(Int64(vcpu))]) { _ in "re-armed" }
        }
    }

    struct Host: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change the host p2m: drop GFN (balloon out) or populate GFN (a fresh frame).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "drop or populate.") var action: String
        @Argument(help: "The gfn.", transform: ArgumentValue.realGFN) var gfn: UInt64

        func validate() throws {
            guard ["drop", "populate"].contains(action) else {
                throw ValidationError("bad action '\(action)': expected drop or populate")
            }
        }

        func run() throws {
            try Session(options).run("host.\(action)", ["domain": domainArgument(domain), "gfn": .uint(gfn)]) { renderFields($0) }
        }
    }

    struct ViewEntry: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "view-entry",
            abstract: "A p2m table's own entry for GFN (VIEW 0 is the view-0 table; 'host' the host p2m).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index, or host.") var view: String
        @Argument(help: "The gfn.", transform: ArgumentValue.realGFN) var gfn: UInt64

        func validate() throws {
            if view != "host" { _ = try ArgumentValue.view(view) }
        }

        func run() throws {
            var arguments: [String: JSONValue] = ["domain": domainArgument(domain), "gfn": .uint(gfn)]
            if view == "host" { arguments["table"] = "host" } else { arguments["view"] = .int(Int64(try ArgumentValue.view(view))) }
            try Session(options).run("sim.view-entry", arguments) { renderFields($0) }
        }
    }
}
