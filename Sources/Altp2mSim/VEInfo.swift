import Altp2m

/// The bits of an EPT-violation exit qualification, as a #VE information page
/// reports them (spec §4.4).
public struct EPTViolationQualification: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 0: the access was a read.
    public static let read = EPTViolationQualification(rawValue: 1 << 0)
    /// Bit 1: the access was a write.
    public static let write = EPTViolationQualification(rawValue: 1 << 1)
    /// Bit 2: the access was an instruction fetch.
    public static let fetch = EPTViolationQualification(rawValue: 1 << 2)
    /// Bit 3: the entry allows reads.
    public static let readable = EPTViolationQualification(rawValue: 1 << 3)
    /// Bit 4: the entry allows writes.
    public static let writable = EPTViolationQualification(rawValue: 1 << 4)
    /// Bit 5: the entry allows execution.
    public static let executable = EPTViolationQualification(rawValue: 1 << 5)
    /// Bit 7: the guest linear address field is valid.
    public static let glaValid = EPTViolationQualification(rawValue: 1 << 7)
    /// Bit 8: the fault was on the translated address, not during a page walk.
    public static let translatedAccess = EPTViolationQualification(rawValue: 1 << 8)

    /// The qualification of an access of `kind` to an entry with EPT
    /// permission bits `permissions` (r=1, w=2, x=4).
    public init(kind: AccessKind, permissions: UInt8, glaValid: Bool, duringPageWalk: Bool) {
        var bits = UInt64(kind.bit) | (UInt64(permissions & 7) << 3)
        if glaValid {
            bits |= Self.glaValid.rawValue
            if !duringPageWalk { bits |= Self.translatedAccess.rawValue }
        }
        self.init(rawValue: bits)
    }
}

/// The #VE information page (Xen's `ve_info_t`), spec §4.4.
///
/// The CPU writes it into the machine frame registered with
/// `vcpu_enable_notify` when it delivers a #VE, and reads ``semaphore`` first:
/// it delivers only while the semaphore is 0, then sets it to `0xFFFFFFFF`;
/// the guest writes 0 to re-arm.
public struct VEInfo: Hashable, Sendable {
    /// The exit reason of an EPT violation (48).
    public static let eptViolationExitReason: UInt32 = 48
    /// The vector of a virtualization exception (20, `X86_EXC_VE`).
    public static let vector: UInt8 = 20

    /// Byte offsets of the fields in the page.
    public enum Offset {
        public static let exitReason = 0
        public static let semaphore = 4
        public static let exitQualification = 8
        public static let guestLinearAddress = 16
        public static let guestPhysicalAddress = 24
        public static let eptpIndex = 32
    }

    /// Offset 0: the exit reason (48).
    public var exitReason: UInt32
    /// Offset 4: the semaphore (0xFFFFFFFF once delivered).
    public var semaphore: UInt32
    /// Offset 8: the exit qualification.
    public var exitQualification: EPTViolationQualification
    /// Offset 16: the guest linear address (0 when not valid).
    public var guestLinearAddress: UInt64
    /// Offset 24: the guest-physical address.
    public var guestPhysicalAddress: UInt64
    /// Offset 32: the EPTP index, the view the vCPU was on.
    public var eptpIndex: UInt16

    public init(exitReason: UInt32 = VEInfo.eptViolationExitReason, semaphore: UInt32 = 0xFFFF_FFFF,
                exitQualification: EPTViolationQualification, guestLinearAddress: UInt64,
                guestPhysicalAddress: UInt64, eptpIndex: UInt16) {
        self.exitReason = exitReason
        self.semaphore = semaphore
        self.exitQualification = exitQualification
        self.guestLinearAddress = guestLinearAddress
        self.guestPhysicalAddress = guestPhysicalAddress
        self.eptpIndex = eptpIndex
    }

    /// Reads the page held in frame `mfn` of `memory`.
    public init(reading mfn: MFN, of memory: any MachineMemory) {
        self.init(exitReason: memory.load(UInt32.self, mfn: mfn, offset: Offset.exitReason),
                  semaphore: memory.load(UInt32.self, mfn: mfn, offset: Offset.semaphore),
                  exitQualification: EPTViolationQualification(
                      rawValue: memory.load(UInt64.self, mfn: mfn, offset: Offset.exitQualification)),
                  guestLinearAddress: memory.load(UInt64.self, mfn: mfn, offset: Offset.guestLinearAddress),
                  guestPhysicalAddress: memory.load(UInt64.self, mfn: mfn, offset: Offset.guestPhysicalAddress),
                  eptpIndex: memory.load(UInt16.self, mfn: mfn, offset: Offset.eptpIndex))
    }

    /// Writes the fields into frame `mfn` of `memory`, as the CPU does.
    public func write(to mfn: MFN, of memory: any MachineMemory) {
        memory.store(exitReason, mfn: mfn, offset: Offset.exitReason)
        memory.store(semaphore, mfn: mfn, offset: Offset.semaphore)
        memory.store(exitQualification.rawValue, mfn: mfn, offset: Offset.exitQualification)
        memory.store(guestLinearAddress, mfn: mfn, offset: Offset.guestLinearAddress)
        memory.store(guestPhysicalAddress, mfn: mfn, offset: Offset.guestPhysicalAddress)
        memory.store(eptpIndex, mfn: mfn, offset: Offset.eptpIndex)
    }
}
