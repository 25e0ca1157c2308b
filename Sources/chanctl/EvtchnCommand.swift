import Altp2m
import Altp2mSim
import ArgumentParser

/// `chanctl evtchn ...`: Xen event channels of the simulator. Ports belong
/// to the handle (process) that bound them, so a one-shot command can only
/// look: `list` shows a domain's port table.
struct EvtchnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evtchn",
        abstract: "Xen event channels of the simulator: inspect a domain's ports.",
        subcommands: [List.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A domain's ports: state (reserved, unbound, interdomain), remote end, pending and mask bits, handle.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id; 0 for dom0).") var domain: String
        func run() throws {
            let session = try Session(options)
            try session.run("evtchn.list", ["domain": domainArgument(domain)]) { r in
                let ports = r["ports"]?.array ?? []
                return ports.map { port in
                    var line = "port \(port["port"]?.int64 ?? 0): \(port["state"]?.string ?? "?")"
                    if let remote = port["remote"]?.int64 { line += " remote \(remote)" }
                    if let remotePort = port["remote_port"]?.int64 { line += " port \(remotePort)" }
                    if port["pending"]?.bool == true { line += " pending" }
                    if port["masked"]?.bool == true { line += " masked" }
                    if let handle = port["handle"]?.int64 { line += " handle \(handle)" }
                    return line
                }.joined(separator: "\n")
            }
        }
    }
}
