#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import XenGuest
import XenInterface

/// ``HypervisorControl`` and ``ChannelHost`` as the control domain, over the
/// Xen libraries: libxenctrl for altp2m, domains and memory, libxenstore for
/// names, descriptors and the agents' frame reports, libxenforeignmemory to
/// write the control page.
///
/// The libraries come in through ``XenHostLibraries``: the C libraries on a
/// Xen host (``init()``), or the simulator's implementation of the same
/// calls (`--backend xen-sim`), so every line here runs in the tests.
/// Errors keep Xen's error number (`errno` after a failed call). Off Xen,
/// ``init()`` fails with one clear message and the libraries are never
/// touched (so libxencall prints nothing).
///
/// Built against Xen 4.17's headers (Debian bookworm): the public ABI
/// numbers of access types are those of 4.17 to 4.19
/// (`XENMEM_access_default` = 10), so the backend refuses to run on a
/// release that numbers them otherwise rather than send wrong numbers.
///
/// One owner at a time; not thread-safe.
public final class XenControl: ChannelHost {
    /// The device libxencall needs; its absence means "not a Xen dom0".
    public static let privcmdPath = "/dev/xen/privcmd"
    /// The message when Xen is not available.
    public static let unavailableMessage =
        "Xen control interface not available: /dev/xen/privcmd missing; use the simulator backend"
    /// `HVM_PARAM_ALTP2M` (xen/include/public/hvm/params.h).
    static let hvmParamAltp2m: UInt32 = 35
    /// The number of views on Xen before 4.21 (`MAX_ALTP2M`).
    static let viewSlots: UInt16 = 10

    let xc: any XenControlLibrary
    /// The libxenctrl handle, for tools that pass raw ABI values through
    /// (`chanctl altp2m` on the Xen backends).
    package var controlLibrary: any XenControlLibrary { xc }
    let store: any XenStoreLibrary
    let foreign: any XenForeignMemoryLibrary

    /// The Xen release (from `xc_version`).
    public let xenVersion: XenVersion

    /// Where windows are reserved by default (64 GiB to 68 GiB of
    /// guest-physical space). A domain whose RAM may reach it gets both
    /// regions moved above that RAM (``regions(for:)``).
    public var windowRegion = GFN(0x100_0000)..<GFN(0x110_0000)
    /// Where #VE info pages are reserved by default.
    public var veInfoRegion = GFN(0x110_0000)..<GFN(0x110_1000)
    /// How long ``obtainSharedFrames(between:and:count:)`` waits for the
    /// agents' reports, in milliseconds.
    public var frameReportTimeoutMilliseconds = 30_000
    /// Told, while ``obtainSharedFrames(between:and:count:)`` waits, which
    /// agent it waits for (every two seconds), and, when the wait runs out,
    /// which agent did not answer and what to do. `chanctl` prints these on
    /// standard error.
    public var frameFlowProgress: ((String) -> Void)?
    /// The granting domain, its peer and the set-up name of the last
    /// ``obtainSharedFrames(between:and:count:)``: where
    /// ``allocateNotificationPort(_:remote:)`` finds the port reported with
    /// those frames.
    var lastSetup: (granting: DomainID, peer: DomainID, name: String)?

    /// Xen cannot tell dom0 whether the CPU has #VE; `vcpu_enable_notify`
    /// fails with `EOPNOTSUPP` where it is missing, and the grant module says so.
    public var supportsVirtualizationExceptions: Bool { true }

    /// Opens the C libraries on a Xen host.
    /// - Throws: ``XenBackendError/unavailable(_:)`` with
    ///   ``unavailableMessage`` when `/dev/xen/privcmd` does not exist (checked
    ///   before any Xen library runs); ``XenBackendError/hypervisor(_:_:)``
    ///   when a handle cannot be opened, or the release's ABI is not 4.17's.
    public convenience init() throws(XenBackendError) {
        guard access(Self.privcmdPath, F_OK) == 0 else { throw .unavailable(Self.unavailableMessage) }
        let control: CXenControlLibrary
        let store: any XenStoreLibrary
        let foreign: CXenForeignMemoryLibrary
        do { control = try CXenControlLibrary() } catch {
            throw .hypervisor(error, "opening the Xen control interface (xc_interface_open)")
        }
        do { store = try openCXenStore() } catch {
            throw .hypervisor(error, "connecting to xenstore (xs_open); is xenstored running?")
        }
        do { foreign = try CXenForeignMemoryLibrary() } catch {
            throw .hypervisor(error, "opening foreign memory mapping (xenforeignmemory_open)")
        }
        try self.init(libraries: XenHostLibraries(control: control, store: store, foreignMemory: foreign))
    }

    /// Uses the given libraries.
    /// - Throws: ``XenBackendError/hypervisor(_:_:)`` when the release's
    ///   ABI is not one this build speaks (or the release cannot be read).
    public init(libraries: XenHostLibraries) throws(XenBackendError) {
        let release: (major: Int, minor: Int)
        do { release = try libraries.control.version() } catch {
            throw .hypervisor(error, "reading the Xen release (xc_version)")
        }
        guard let version = Self.profile(major: release.major, minor: release.minor) else {
            throw .hypervisor(.notSupported, "Xen \(release.major).\(release.minor) is not supported: this build knows Xen 4.17 to 4.20 (from 4.21 a domain's view count is set at its creation, and the lock-out must find every view); run it on 4.17 to 4.20")
        }
        xc = libraries.control
        store = libraries.store
        foreign = libraries.foreignMemory
        xenVersion = version
    }

    /// The behaviour profile for a release. The `xenmem_access_t` numbers
    /// follow the running release, not the headers (`XENMEM_access_default`
    /// is 10 until 4.20 adds `r_pw` before it, then 11: ``MemAccess``'s ABI
    /// values per profile), and libxenctrl's altp2m calls take the same
    /// arguments from 4.17 to 4.20. 4.18 behaves as 4.17 for altp2m (the
    /// mode became fixed at creation and the lazy copy started using the
    /// view's default in 4.19). 4.21 is refused: its view count is set per
    /// domain (up to 512), which ``activeViews(_:)`` cannot read back.
    static func profile(major: Int, minor: Int) -> XenVersion? {
        guard major == 4 else { return nil }
        switch minor {
        case 17, 18: return .v4_17
        case 19: return .v4_19
        case 20: return .v4_20
        default: return nil
        }
    }

    // MARK: Helpers

    func abi(_ access: MemAccess) throws(XenErrno) -> UInt16 {
        guard let value = access.abiValue(for: xenVersion) else { throw .invalid }
        return value
    }

    func info(_ domain: DomainID) throws(XenErrno) -> XenDomainRecord {
        guard let entry = try xc.domainGetInfoList(first: domain, maximum: 1).first, entry.domain == domain else {
            throw .notFound
        }
        return entry
    }
}

/// CLOCK_MONOTONIC in milliseconds.
func monotonicMilliseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
}
