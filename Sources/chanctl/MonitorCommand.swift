import Altp2m
import Altp2mSim
import ArgumentParser

/// `chanctl monitor ...`: the vm_event monitor ring of a domain (simulator).
struct MonitorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor",
        abstract: "The vm_event monitor ring: enable it, take events, respond, disable it.",
        subcommands: [Enable.self, Events.self, Respond.self, Disable.self]
    )

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable the monitor ring (mem_access events go to it).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Flag(name: .customLong("access-required"), help: "Also set access_required: a violation with no listener crashes the domain (without the flag it is left as it is).")
        var accessRequired = false
        @Flag(name: .customLong("singlestep-events"), help: "Also send SINGLESTEP events.")
        var singlestepEvents = false
        func run() throws {
            let session = try Session(options)
            var arguments: [String: JSONValue] = ["domain": domainArgument(domain), "singlestep_events": .bool(singlestepEvents)]
            if accessRequired { arguments["access_required"] = .bool(true) }
            try session.run("monitor.enable", arguments) { _ in "monitor enabled on \(domain)" }
        }
    }

    struct Events: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take the pending vm_event requests (oldest first).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        func run() throws {
            let session = try Session(options)
            try session.run("monitor.events", ["domain": domainArgument(domain)]) { r in
                let events = r["events"]?.array ?? []
                if events.isEmpty { return "no pending events" }
                return events.map { renderFields($0) }.joined(separator: "\n\n")
            }
        }
    }

    struct Respond: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Answer a paused vCPU's event (VCPU_PAUSED response, unpauses it).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The vCPU.", transform: ArgumentValue.vcpu) var vcpu: UInt32
        @Option(name: .customLong("altp2m-idx"), help: "Switch the vCPU to this view (VM_EVENT_FLAG_ALTERNATE_P2M; visibility is not checked).",
                transform: ArgumentValue.view)
        var altp2mIndex: UInt16?
        @Flag(name: .customLong("toggle-singlestep"), help: "Flip single-stepping (VM_EVENT_FLAG_TOGGLE_SINGLESTEP).")
        var toggleSinglestep = false
        @Option(name: .customLong("fast-singlestep"), help: "Step one instruction, then switch to this view (VM_EVENT_FLAG_FAST_SINGLESTEP).",
                transform: ArgumentValue.view)
        var fastSinglestep: UInt16?
        @Flag(name: .customLong("no-unpause"), help: "Leave out VM_EVENT_FLAG_VCPU_PAUSED (a response for a running vCPU is ignored).")
        var noUnpause = false
        func run() throws {
            var arguments: [String: JSONValue] = ["domain": domainArgument(domain), "vcpu": .int(Int64(vcpu)),
                                                  "toggle_singlestep": .bool(toggleSinglestep), "unpause": .bool(!noUnpause)]
            if let altp2mIndex { arguments["altp2m_idx"] = .int(Int64(altp2mIndex)) }
            if let fastSinglestep { arguments["fast_singlestep"] = .int(Int64(fastSinglestep)) }
            let session = try Session(options)
            try session.run("monitor.respond", arguments) { r in "vcpu \(vcpu) now on view \(renderScalar(r["view"] ?? .null))" }
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable the monitor ring (xc_monitor_disable): pending events are dropped, vCPUs waiting for a response stay paused, and from now on access_required decides what a violation does.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        func run() throws {
            try Session(options).run("monitor.disable", ["domain": domainArgument(domain)]) { _ in "monitor disabled on \(domain)" }
        }
    }
}
