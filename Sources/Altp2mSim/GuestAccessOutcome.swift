import Altp2m

/// What happened to one guest memory access (spec §4).
///
/// The access *completed* (data moved) for ``ok(mfn:view:)``,
/// ``lazyCopyThenOK(mfn:view:)``, ``relaxed(mfn:view:from:to:)``,
/// ``emulated(mfn:view:)`` and an asynchronous ``vmEvent(_:completedAt:)``;
/// ``completedMFN`` gives the frame then. A `view` of `nil` means the host p2m
/// translated the access (altp2m inactive).
public enum GuestAccessOutcome: Hashable, Sendable {
    /// The entry allowed the access.
    case ok(mfn: MFN, view: ViewID?)
    /// The view had no entry: Xen copied the host entry in (no event), the
    /// guest retried, and the copy allowed the access (spec §4.1).
    case lazyCopyThenOK(mfn: MFN, view: ViewID)
    /// The access violated the entry, Xen relaxed the entry with no event
    /// (`rx2rw` on a write, or no monitor ring and `access_required` off),
    /// and the retried access completed.
    case relaxed(mfn: MFN, view: ViewID?, from: MemAccess, to: MemAccess)
    /// The CPU delivered a virtualization exception (vector 20) to the guest,
    /// with no VM exit and no vm_event; the info page holds this (spec §4.4).
    /// The access did not complete.
    case virtualizationException(VEInfo)
    /// A vm_event was sent. Synchronous (``VMEventRequest/isSynchronous``):
    /// the vCPU is paused until the response and `completedAt` is `nil`.
    /// Asynchronous (`n2rwx`): the entry became `rwx` and the access completed
    /// at `completedAt`.
    case vmEvent(VMEventRequest, completedAt: MFN?)
    /// The fault happened during a guest page walk with in-guest pagefault
    /// suppression on: Xen emulated the access with no event.
    case emulated(mfn: MFN, view: ViewID?)
    /// A write to read-only memory (`p2m_ram_ro`, read-only grant): Xen
    /// discarded it and the instruction completed.
    case writeDiscarded(mfn: MFN, view: ViewID?)
    /// On a CPU without #VE, a violation of an entry with sve 0 is taken as
    /// handled by Xen's emulated-#VE path although nothing is injected: the
    /// guest re-executes and faults again (spec §11.1).
    case faultSwallowed(view: ViewID)
    /// No frame backs the gfn (a hole or emulated MMIO): normal fault
    /// handling, which the simulator does not model.
    case noMapping
    /// The access crashed the domain (a violation with no monitor ring and
    /// `access_required`, or a fault no handler accepts). Also returned for
    /// any access to an already crashed domain.
    case domainCrashed
    /// The vCPU cannot run: paused by the toolstack or waiting for a vm_event
    /// response. Nothing happened.
    case vcpuPaused

    /// The frame accessed, if the access completed.
    public var completedMFN: MFN? {
        switch self {
        case .ok(let mfn, _), .lazyCopyThenOK(let mfn, _), .relaxed(let mfn, _, _, _), .emulated(let mfn, _):
            mfn
        case .vmEvent(_, let completedAt):
            completedAt
        default:
            nil
        }
    }
}

/// The outcome of a guest read through ``Altp2mEngine/guestRead(_:vcpu:gfn:offset:count:)``.
public struct GuestReadResult: Hashable, Sendable {
    /// What happened to the access.
    public var outcome: GuestAccessOutcome
    /// The bytes read, if the access completed.
    public var bytes: [UInt8]?
}

/// Why a VMFUNC raised #UD.
public enum InvalidOpcodeCause: Hashable, Sendable {
    /// The vCPU's VM-functions control is off (it never had
    /// `vcpu_enable_notify`): the CPU raises #UD with no VM exit.
    case vmfuncDisabled
    /// A VM exit (reason 59: EAX ≠ 0, ECX ≥ 512, or the view is not in the
    /// visible list); Xen's handler always injects #UD.
    case vmExit
    /// The emulated path refused (the CPU has VMFUNC, altp2m is inactive,
    /// EAX ≠ 0, or the view is not active).
    case emulationRefused
}

/// The outcome of a guest `VMFUNC` (spec §6).
public enum VMFUNCOutcome: Hashable, Sendable {
    /// The vCPU now runs on `to` (possibly the view it was already on).
    case switched(from: ViewID, to: ViewID)
    /// The guest got #UD; its view and RIP are unchanged.
    case invalidOpcode(InvalidOpcodeCause)
    /// The vCPU cannot run (paused or crashed); nothing happened.
    case vcpuNotRunning
}
