import Altp2m

/// The layout of a domain's shared control files (docs/SIMULATOR-DAEMON.md,
/// "Control region").
///
/// **Control region** (`domains/dN.control`, written by the daemon, mapped
/// read-only by guest processes). All fields little-endian, naturally aligned:
///
/// | Offset | Size | Field |
/// |---|---|---|
/// | 0 | 4 | magic `0x434D3241` ("A2MC") |
/// | 4 | 4 | layout version (1) |
/// | 8 | 8 | generation: bumped (release) after every change below |
/// | 16 | 2 | domain id |
/// | 18 | 2 | number of tables (views + 1) |
/// | 20 | 4 | number of vCPUs |
/// | 24 | 8 | gfns covered by each table (gfn 0 up to this) |
/// | 32 | 4 | domain flags: bit 0 altp2m active, bit 1 crashed, bit 2 destroyed |
/// | 36 | 4 | number of views (`nr`) |
/// | 40 | 8 | offset of table 0 in the file |
/// | 48 | 8 | bytes per table |
/// | 1024 | 64 | visible views (`visible_eptp`): a 512-bit bitmap, view 0 in bit 0 of word 0 |
/// | 1088 | 64 | active views (`eptp`), same format |
/// | 2048 | 16 × vCPUs | per vCPU: u32 flags (bit 0 VMFUNC enabled, bit 1 runnable, bit 2 #VE enabled), u32 view the daemon last set, u64 #VE info gfn |
///
/// Then the tables, one per p2m: table 0 is the host p2m, table 1 + *v* is
/// view *v*'s own table. Each is an array of u64 entries indexed by gfn:
/// bit 63 present; bits 12–59 the mfn; bits 8–11 the p2m type; bit 7 sve;
/// bits 4–6 the effective EPT permissions (access ∩ type, r=1 w=2 x=4);
/// bits 0–3 the access type. 0 means no entry.
///
/// **vCPU pages** (`domains/dN.vcpu`, guest-writable): 64 bytes per vCPU;
/// offset 0 holds the u32 view the vCPU is on as the guest last set it with
/// a local VMFUNC (0xFFFF while altp2m is inactive). The daemon reads it
/// before acting on the domain, as Xen re-reads `EPTP_INDEX` at a VM exit.
public enum ControlRegionLayout {
    public static let magic: UInt32 = 0x434D_3241
    public static let version: UInt32 = 1
    public static let headerSize = 4096
    public static let maxVCPUs = 128

    public static let generationOffset = 8
    public static let domainOffset = 16
    public static let tableCountOffset = 18
    public static let vcpuCountOffset = 20
    public static let gfnCountOffset = 24
    public static let flagsOffset = 32
    public static let viewCountOffset = 36
    public static let tableOffsetOffset = 40
    public static let tableStrideOffset = 48
    public static let visibleBitmapOffset = 1024
    public static let activeBitmapOffset = 1088
    public static let vcpuInfoOffset = 2048
    public static let vcpuInfoStride = 16

    public static let flagActive: UInt32 = 1 << 0
    public static let flagCrashed: UInt32 = 1 << 1
    public static let flagDestroyed: UInt32 = 1 << 2

    public static let vcpuFlagVMFUNC: UInt32 = 1 << 0
    public static let vcpuFlagRunnable: UInt32 = 1 << 1
    public static let vcpuFlagVE: UInt32 = 1 << 2

    /// The size of one vCPU's slot in the vCPU page file.
    public static let vcpuPageStride = 64
    /// The size of the vCPU page file.
    public static let vcpuPageFileSize = maxVCPUs * vcpuPageStride

    /// Bytes per table for `gfnCount` gfns.
    public static func tableStride(gfnCount: Int) -> Int { gfnCount * 8 }

    /// The size of the control file.
    public static func fileSize(viewCount: Int, gfnCount: Int) -> Int {
        headerSize + (viewCount + 1) * tableStride(gfnCount: gfnCount)
    }

    /// The table index of a p2m: 0 for the host, 1 + v for view v.
    @inlinable
    public static func tableIndex(view: ViewID?) -> Int { view.map { Int($0.rawValue) + 1 } ?? 0 }

    // MARK: Entries

    public static let entryPresent: UInt64 = 1 << 63
    public static let entryMFNShift: UInt64 = 12
    public static let entryMFNMask: UInt64 = (1 << 48) - 1

    /// Encodes a table entry.
    public static func encode(_ entry: P2MEntry) -> UInt64 {
        entryPresent
            | ((entry.mfn.rawValue & entryMFNMask) << entryMFNShift)
            | (UInt64(entry.type.rawValue & 0xF) << 8)
            | (entry.suppressVE ? 1 << 7 : 0)
            | (UInt64(entry.permissionBits & 7) << 4)
            | UInt64(entry.access.rawValue & 0xF)
    }

    /// Decodes a table entry; nil for an empty slot.
    public static func decode(_ raw: UInt64) -> P2MEntry? {
        guard raw & entryPresent != 0,
              let access = MemAccess(rawValue: UInt8(raw & 0xF)),
              let type = P2MType(rawValue: UInt8((raw >> 8) & 0xF))
        else { return nil }
        return P2MEntry(mfn: MFN((raw >> entryMFNShift) & entryMFNMask), type: type, access: access,
                        suppressVE: raw & (1 << 7) != 0)
    }

    /// Whether an encoded entry allows an access of `kind` with no violation.
    @inlinable
    public static func permits(_ raw: UInt64, _ kind: AccessKind) -> Bool {
        raw & entryPresent != 0 && (raw >> 4) & UInt64(kind.bit) != 0
    }

    /// The mfn of an encoded entry.
    @inlinable
    public static func mfn(_ raw: UInt64) -> UInt64 { (raw >> entryMFNShift) & entryMFNMask }
}

/// The layout of the shared event-word file (`events`): one 256-byte block
/// per domain id, 64 u32 words each. Word 0 is the domain's state (0 no
/// domain, 1 running, 2 crashed, 3 destroyed); words 1–63 are event ports,
/// counters that a notifier increments before a futex wake.
public enum EventWordLayout {
    public static let blockSize = 256
    public static let portsPerDomain: UInt32 = 63
    /// Domain ids below this have a block (the file is sparse).
    public static let domainLimit = 0x7FF0
    public static var fileSize: Int { domainLimit * blockSize }

    public static let stateNone: UInt32 = 0
    public static let stateRunning: UInt32 = 1
    public static let stateCrashed: UInt32 = 2
    public static let stateDestroyed: UInt32 = 3

    /// The byte offset of word `index` (0 = state) of domain `domain`.
    @inlinable
    public static func offset(domain: DomainID, word index: UInt32) -> Int {
        Int(domain.rawValue) * blockSize + Int(index) * 4
    }
}
