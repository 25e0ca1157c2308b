import Altp2m

/// `VM_EVENT_FLAG_*`: the flags of a vm_event request or response (spec §7).
public struct VMEventFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `VM_EVENT_FLAG_VCPU_PAUSED` (1<<0): in a request, the vCPU waits for
    /// the response; in a response, unpause it.
    public static let vcpuPaused = VMEventFlags(rawValue: 1 << 0)
    /// `VM_EVENT_FLAG_EMULATE` (1<<2): emulate the faulting instruction.
    /// Accepted and ignored by the simulator, which has no instruction emulator.
    public static let emulate = VMEventFlags(rawValue: 1 << 2)
    /// `VM_EVENT_FLAG_TOGGLE_SINGLESTEP` (1<<4): flip the vCPU's single-stepping.
    public static let toggleSinglestep = VMEventFlags(rawValue: 1 << 4)
    /// `VM_EVENT_FLAG_ALTERNATE_P2M` (1<<7): the request carries the vCPU's
    /// view; in a response, switch the vCPU to `altp2mIndex`.
    public static let alternateP2M = VMEventFlags(rawValue: 1 << 7)
    /// `VM_EVENT_FLAG_FAST_SINGLESTEP` (1<<11): step one instruction, then
    /// switch to `fastSinglestepView` without an event.
    public static let fastSinglestep = VMEventFlags(rawValue: 1 << 11)
}

/// `VM_EVENT_REASON_*`: why a request was sent.
public struct VMEventReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `VM_EVENT_REASON_MEM_ACCESS` (1): an access violated a p2m access type.
    public static let memAccess = VMEventReason(rawValue: 1)
    /// `VM_EVENT_REASON_SINGLESTEP` (7): a single-step (MTF) trap.
    public static let singlestep = VMEventReason(rawValue: 7)

    public var description: String {
        switch self {
        case .memAccess: "MEM_ACCESS"
        case .singlestep: "SINGLESTEP"
        default: "reason \(rawValue)"
        }
    }
}

/// `MEM_ACCESS_*`: the flags of a mem_access request.
public struct MemAccessEventFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `MEM_ACCESS_R` (1): the access was a read.
    public static let read = MemAccessEventFlags(rawValue: 1 << 0)
    /// `MEM_ACCESS_W` (2): the access was a write (which Xen reports with
    /// `MEM_ACCESS_R` as well).
    public static let write = MemAccessEventFlags(rawValue: 1 << 1)
    /// `MEM_ACCESS_X` (4): the access was an instruction fetch.
    public static let execute = MemAccessEventFlags(rawValue: 1 << 2)
    /// `MEM_ACCESS_GLA_VALID` (1<<3): `gla` holds the linear address.
    public static let glaValid = MemAccessEventFlags(rawValue: 1 << 3)
    /// `MEM_ACCESS_FAULT_WITH_GLA` (1<<4): the fault was on the translated address.
    public static let faultWithGLA = MemAccessEventFlags(rawValue: 1 << 4)
    /// `MEM_ACCESS_FAULT_IN_GPT` (1<<5): the fault was during a guest page walk.
    public static let faultInGPT = MemAccessEventFlags(rawValue: 1 << 5)

    /// The `R`/`W`/`X` flag of an access kind.
    public init(_ kind: AccessKind) { self.init(rawValue: kind.bit) }
}

/// The `u.mem_access` part of a mem_access request.
public struct MemAccessEventData: Hashable, Sendable {
    /// The gfn accessed.
    public var gfn: GFN
    /// The offset in the page (`gpa & 0xfff`).
    public var offset: UInt64
    /// The guest linear address, if ``flags`` has `glaValid`; else 0.
    public var gla: UInt64
    /// The attempted access and where the fault happened.
    public var flags: MemAccessEventFlags

    public init(gfn: GFN, offset: UInt64, gla: UInt64, flags: MemAccessEventFlags) {
        self.gfn = gfn
        self.offset = offset
        self.gla = gla
        self.flags = flags
    }
}

/// A vm_event request (`vm_event_request_t`) on a domain's monitor ring.
public struct VMEventRequest: Hashable, Sendable {
    /// `VM_EVENT_INTERFACE_VERSION`: 7 on every modelled Xen release.
    public static let interfaceVersion: UInt32 = 7

    /// The interface version.
    public var version: UInt32
    /// `vcpuPaused` for synchronous events; `alternateP2M` when altp2m was
    /// active as the event was built.
    public var flags: VMEventFlags
    /// Why the event was sent.
    public var reason: VMEventReason
    /// The vCPU concerned.
    public var vcpu: VCPUID
    /// The vCPU's view when the event was built (0, flag clear, if altp2m was inactive).
    public var altp2mIndex: ViewID
    /// The mem_access details, for ``VMEventReason/memAccess``.
    public var memAccess: MemAccessEventData?

    public init(version: UInt32 = VMEventRequest.interfaceVersion, flags: VMEventFlags,
                reason: VMEventReason, vcpu: VCPUID, altp2mIndex: ViewID,
                memAccess: MemAccessEventData? = nil) {
        self.version = version
        self.flags = flags
        self.reason = reason
        self.vcpu = vcpu
        self.altp2mIndex = altp2mIndex
        self.memAccess = memAccess
    }

    /// Whether the vCPU waits for a response.
    public var isSynchronous: Bool { flags.contains(.vcpuPaused) }
}

/// A vm_event response (`vm_event_response_t`), what the monitor sends back.
public struct VMEventResponse: Hashable, Sendable {
    /// Must be ``VMEventRequest/interfaceVersion``, or the response is dropped.
    public var version: UInt32
    /// What to do (see ``VMEventFlags``).
    public var flags: VMEventFlags
    /// Usually the request's reason; not interpreted.
    public var reason: VMEventReason
    /// The vCPU to act on.
    public var vcpu: VCPUID
    /// With ``VMEventFlags/alternateP2M``: the view to switch the vCPU to.
    public var altp2mIndex: ViewID
    /// With ``VMEventFlags/fastSinglestep``: `u.fast_singlestep.p2midx`.
    public var fastSinglestepView: ViewID

    public init(version: UInt32 = VMEventRequest.interfaceVersion, flags: VMEventFlags,
                reason: VMEventReason = .memAccess, vcpu: VCPUID,
                altp2mIndex: ViewID = 0, fastSinglestepView: ViewID = 0) {
        self.version = version
        self.flags = flags
        self.reason = reason
        self.vcpu = vcpu
        self.altp2mIndex = altp2mIndex
        self.fastSinglestepView = fastSinglestepView
    }

    /// A response to `request` with `flags`, for the same vCPU and reason.
    public init(answering request: VMEventRequest, flags: VMEventFlags,
                altp2mIndex: ViewID = 0, fastSinglestepView: ViewID = 0) {
        self.init(flags: flags, reason: request.reason, vcpu: request.vcpu,
                  altp2mIndex: altp2mIndex, fastSinglestepView: fastSinglestepView)
    }
}

/// How a domain's monitor ring is set up (`xc_monitor_*`).
public struct MonitorOptions: Hashable, Sendable {
    /// Send a `SINGLESTEP` event on every single-step trap (`xc_monitor_singlestep`).
    public var singlestepEvents: Bool
    /// In-guest pagefault suppression (`xc_monitor_inguest_pagefault`
    /// disabled): violations during a guest page walk are emulated with no event.
    public var inguestPagefaultSuppressed: Bool

    public init(singlestepEvents: Bool = false, inguestPagefaultSuppressed: Bool = false) {
        self.singlestepEvents = singlestepEvents
        self.inguestPagefaultSuppressed = inguestPagefaultSuppressed
    }
}

/// A domain's monitor ring: its options and the requests not yet taken.
struct MonitorRing {
    var options: MonitorOptions
    var pending: [VMEventRequest] = []
}
