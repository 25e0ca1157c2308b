import Altp2m

/// Why a guest memory access through ``SimGuest`` did not complete.
public enum GuestMemoryFault: Error, Equatable, CustomStringConvertible {
    /// The CPU delivered a #VE (vector 20) to the guest; the info page holds
    /// these fields (spec §4.4).
    case virtualizationException(VEInfo)
    /// A vm_event was sent. `paused`: the vCPU waits until dom0 responds
    /// (`chanctl monitor respond`); retry the access after that.
    case vmEvent(paused: Bool)
    /// No frame backs the gfn (a hole or emulated MMIO).
    case noMapping
    /// The domain has crashed (this access may have crashed it).
    case domainCrashed
    /// The vCPU cannot run (toolstack pause, or waiting for a vm_event response).
    case vcpuPaused
    /// On a CPU without #VE, a violation of an sve-0 entry is swallowed and
    /// the guest would fault forever (spec §11.1).
    case faultSwallowed
    /// The offset and length do not lie inside one 4-KiB page.
    case outsidePage
    /// The simulator could not be asked (the daemon went away).
    case simulatorUnavailable(String)

    public var description: String {
        switch self {
        case .virtualizationException(let info):
            "#VE: EPT violation at gpa 0x\(String(info.guestPhysicalAddress, radix: 16)) in view \(info.eptpIndex)"
        case .vmEvent(let paused): paused ? "vm_event sent; the vCPU is paused until dom0 responds" : "vm_event sent"
        case .noMapping: "no frame backs this gfn"
        case .domainCrashed: "the domain has crashed"
        case .vcpuPaused: "the vCPU is paused"
        case .faultSwallowed: "the fault was swallowed (CPU without #VE, sve 0): the guest would loop"
        case .outsidePage: "offset and length must lie inside one 4-KiB page"
        case .simulatorUnavailable(let why): "the simulator is unavailable: \(why)"
        }
    }
}

/// What ``SimGuest/probe(gfn:offset:kind:)`` found when the kernel itself
/// checked an access against the `mprotect` window.
public enum GuestProbeResult: Equatable, Sendable, CustomStringConvertible {
    /// The page's protection allows the access.
    case allowed
    /// The page's protection refuses it: the kernel returned `EFAULT`, as the
    /// CPU would have raised an EPT violation.
    case refused
    /// The gfn lies outside the window (above the control region's tables).
    case outsideWindow
    /// Probing needs `mprotect` enforcement.
    case notEnforced

    public var description: String {
        switch self {
        case .allowed: "allowed"
        case .refused: "refused"
        case .outsideWindow: "outside window"
        case .notEnforced: "not enforced"
        }
    }
}

/// Why a guest process could not attach.
public enum SimGuestError: Error, CustomStringConvertible {
    /// No token file for the domain.
    case noToken(domain: String, path: String)
    /// The simulator refused or could not be reached.
    case simulator(SimClientError)
    /// The daemon's answer or descriptors were not what this client expects.
    case protocolMismatch(String)
    /// A mapping failed.
    case system(SystemCallError)

    public var description: String {
        switch self {
        case .noToken(let domain, let path):
            "no token for domain \(domain) at \(path); create it with chanctl domain create \(domain)"
        case .simulator(let error): error.description
        case .protocolMismatch(let why): "unexpected answer from the simulator: \(why)"
        case .system(let error): error.description
        }
    }
}
