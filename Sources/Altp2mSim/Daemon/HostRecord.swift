import Altp2m

/// The first journal record: the simulated host's profile and memory size,
/// so a recovering daemon rebuilds the same host.
struct HostRecord {
    var host: HostProfile
    var machineFrames: Int

    static let cpuProfiles: [CPUProfile] = [.intel, .intelNoVE, .intelNoVMFUNC, .amd]

    var record: JSONValue {
        ["op": "host", "cpu": .string(host.cpu.name), "altp2m_boot": .bool(host.altp2mBootOption),
         "xen": .string(host.xen.description), "machine_frames": .int(Int64(machineFrames))]
    }

    init(host: HostProfile, machineFrames: Int) {
        self.host = host
        self.machineFrames = machineFrames
    }

    /// Decodes a `host` record; nil for anything else.
    init?(record: JSONValue) {
        guard record["op"]?.string == "host",
              let cpuName = record["cpu"]?.string,
              let cpu = Self.cpuProfiles.first(where: { $0.name == cpuName }),
              let boot = record["altp2m_boot"]?.bool,
              let xenName = record["xen"]?.string,
              let xen = XenVersion.allCases.first(where: { $0.description == xenName }),
              let frames = record["machine_frames"]?.int64, frames > 0
        else { return nil }
        host = HostProfile(cpu: cpu, altp2mBootOption: boot, xen: xen)
        machineFrames = Int(frames)
    }

    /// The host to run: the recorded one when recovering (explicit options
    /// that contradict it are refused), else the options over the defaults.
    static func resolve(_ configuration: SimDaemon.Configuration,
                        recorded: HostRecord?) throws(SimDaemonError) -> HostRecord {
        guard let recorded else {
            return HostRecord(host: HostProfile(cpu: configuration.cpu ?? .intel,
                                                altp2mBootOption: configuration.altp2mBootOption ?? true,
                                                xen: configuration.xen ?? .v4_17),
                              machineFrames: configuration.machineFrames ?? SimDaemon.defaultMachineFrames)
        }
        var conflicts: [String] = []
        if let cpu = configuration.cpu, cpu.name != recorded.host.cpu.name {
            conflicts.append("--cpu \(cpu.name) (recorded: \(recorded.host.cpu.name))")
        }
        if let boot = configuration.altp2mBootOption, boot != recorded.host.altp2mBootOption {
            conflicts.append("--no-altp2m-boot (recorded: altp2m=\(recorded.host.altp2mBootOption ? 1 : 0))")
        }
        if let xen = configuration.xen, xen != recorded.host.xen {
            conflicts.append("--xen \(xen) (recorded: \(recorded.host.xen))")
        }
        if let frames = configuration.machineFrames, frames != recorded.machineFrames {
            conflicts.append("--machine-mib \(frames / 256) (recorded: \(recorded.machineFrames / 256))")
        }
        guard conflicts.isEmpty else {
            throw .profileMismatch(
                "this state directory holds a crashed simulator of another host profile: \(conflicts.joined(separator: ", ")); "
                    + "start it without those options to recover it, or remove its journal, or use another --state-dir")
        }
        return recorded
    }
}
