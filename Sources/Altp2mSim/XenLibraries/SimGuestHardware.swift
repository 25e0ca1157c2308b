#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import Synchronization
import XenInterface

/// ``XenGuestHardware`` on the simulator: `VMFUNC` is the simulated vCPU's
/// (a refused switch is observed and returns `false` instead of raising
/// #UD), and "`/dev/mem`" maps the frames the named view holds at those
/// gfns, with the simulator's enforcement (software or `mprotect`), through
/// the same ``SimGuestPlatform`` the `sim` backend uses.
///
/// Each OS thread that uses it is a ``GuestThread`` of its own, on the
/// vCPU the platform's thread started on: its `VMFUNC`, pinning and
/// accesses act on the vCPU that guest thread is on. With a
/// ``SimGuest/scheduler`` installed, each visit to a view whose window
/// this process mapped also makes a guest access to the window's first
/// page right after its `VMFUNC` and right before its return to view 0
/// (each a schedule point), standing for the ring accesses in between: a
/// thread moved off its vCPU, or whose vCPU another thread switched, makes
/// that access in the wrong view, and with `access_required` the domain
/// crashes, as on Xen.
public final class SimGuestHardware: XenGuestHardware {
    public let platform: SimGuestPlatform
    /// Where this domain's view claim table lives.
    private let claimsPath: String
    private let threads: ThreadTable
    /// The first gfn of the window mapped for each view.
    private let windows = Mutex<[UInt16: UInt64]>([:])
    /// Visit accesses that did not complete (the domain crashed or the
    /// vCPU was paused).
    private let faults = Atomic<Int>(0)

    /// - Parameters:
    ///   - platform: the guest process underneath.
    ///   - claimsPath: the view claim table of this domain, shared by its
    ///     processes (`ViewClaimTable`).
    public init(platform: SimGuestPlatform, claimsPath: String) {
        self.platform = platform
        self.claimsPath = claimsPath
        threads = ThreadTable(guest: platform.guest, start: platform.thread.vcpu)
    }

    /// Visit accesses that faulted so far (see the type's description).
    public var visitFaults: Int { faults.load(ordering: .relaxed) }

    /// The guest thread the calling OS thread runs as.
    public var currentThread: GuestThread { threads.current.thread }

    /// Runs `body` with the calling OS thread acting as `thread`: a
    /// scheduler's preemption runs another guest thread's operations in the
    /// preempted thread's place.
    public func acting<R>(as thread: GuestThread, _ body: () throws -> R) rethrows -> R {
        try threads.acting(as: thread, body)
    }

    public func vmfunc(_ view: UInt16) -> Bool {
        let current = threads.current
        let probing = platform.guest.scheduler != nil
        if view == 0, probing, current.visiting != 0 { visitAccess(current) }
        guard platform.enterView(ViewID(view), as: current.thread) else { return false }
        current.visiting = view
        if view != 0, probing { visitAccess(current) }
        return true
    }

    /// A guest access to the first page of the window of the view the
    /// thread entered, through its vCPU's current view. While the vCPU is
    /// in that view the access is the channel's own, through the window's
    /// mapping of that view, and needs nothing more; in any other view the
    /// engine makes it (`SimGuest.read`), with its EPT-violation path.
    private func visitAccess(_ current: ThreadTable.Entry) {
        guard let gfn = windows.withLock({ $0[current.visiting] }) else { return }
        let vcpu = platform.guest.schedule(current.thread, .read)
        if platform.guest.currentView(vcpu: vcpu) == ViewID(current.visiting) { return }
        var byte: UInt8 = 0
        let completed = withUnsafeMutableBytes(of: &byte) { buffer in
            (try? platform.guest.read(gfn: GFN(gfn), offset: 0, into: buffer, vcpu: vcpu)) != nil
        }
        if !completed { faults.add(1, ordering: .relaxed) }
    }

    public func mapPhysical(firstGFN: UInt64, pageCount: Int, view: UInt16) throws(XenErrno) -> UnsafeMutableRawPointer {
        let base: UnsafeMutableRawPointer
        do {
            base = try platform.mapWindow(view: ViewID(view), firstGFN: GFN(firstGFN), pageCount: pageCount)
        } catch {
            if case .hypervisor(let errno, _) = error { throw errno }
            throw .invalid
        }
        windows.withLock { $0[view] = firstGFN }
        return base
    }

    public func unmapPhysical(_ base: UnsafeMutableRawPointer, pageCount: Int) {
        platform.unmapWindow(base, pageCount: pageCount)
    }

    /// The gfn the simulated grant drivers recorded for the page
    /// (``SimGuestMappings``); `ESRCH` for memory they did not map.
    public func guestFrame(of address: UnsafeRawPointer) throws(XenErrno) -> UInt64 {
        guard let gfn = SimGuestMappings.shared.gfn(of: address) else { throw .notFound }
        return gfn
    }

    /// A guest read of the page's gfn through the calling thread's vCPU's
    /// current view (`SimGuest.read`: the view's table, and the engine's
    /// fault path when the view has no entry, which copies the host's as
    /// Xen's lazy copy does).
    public func touch(_ address: UnsafeRawPointer) {
        guard let gfn = SimGuestMappings.shared.gfn(of: address) else { return }
        let offset = Int(UInt(bitPattern: address) % 4096)
        var byte: UInt8 = 0
        withUnsafeMutableBytes(of: &byte) { buffer in
            _ = try? platform.guest.read(gfn: GFN(gfn), offset: offset, into: buffer, thread: threads.current.thread)
        }
    }

    // MARK: Threads and vCPUs

    public func pinnedVCPU() -> Int? {
        threads.current.thread.pinnedVCPU.map { Int($0.rawValue) }
    }

    /// `sched_setaffinity` of the guest thread: pinned where it is now.
    public func pinCallingThread() throws(XenErrno) -> Int {
        let thread = threads.current.thread
        do { try thread.pin(to: thread.vcpu) } catch { throw .invalid }
        return Int(thread.vcpu.rawValue)
    }

    public func threadIdentity() -> UInt64 {
        threads.current.thread.identity
    }

    public func threadMayLive(_ identity: UInt64) -> Bool {
        ViewClaimTable.ownerMayLive(identity)
    }

    public func viewClaims() throws(XenErrno) -> ViewClaimTable {
        try ViewClaimTable.map(path: claimsPath)
    }
}

/// The guest thread each OS thread runs as, kept in a thread-specific slot
/// (no lock on the data path).
final class ThreadTable: @unchecked Sendable {
    // @unchecked: each entry is used by the OS thread it belongs to; the
    // creation of guest threads is behind the lock.
    final class Entry {
        var thread: GuestThread
        /// The view the thread entered last (0 outside a visit).
        var visiting: UInt16 = 0
        init(_ thread: GuestThread) { self.thread = thread }
    }

    private var key = pthread_key_t()
    private unowned let guest: SimGuest
    private let start: VCPUID
    private let creating = Mutex<Int>(0)

    init(guest: SimGuest, start: VCPUID) {
        self.guest = guest
        self.start = start
        pthread_key_create(&key) { entry in
            if let entry { Unmanaged<Entry>.fromOpaque(entry).release() }
        }
    }

    deinit {
        if let entry = pthread_getspecific(key) { Unmanaged<Entry>.fromOpaque(entry).release() }
        pthread_key_delete(key)
    }

    /// The calling OS thread's entry, made at its first use.
    var current: Entry {
        if let entry = pthread_getspecific(key) { return Unmanaged<Entry>.fromOpaque(entry).takeUnretainedValue() }
        let thread = creating.withLock { count -> GuestThread in
            count += 1
            return (try? guest.thread(named: "os-thread-\(count)", on: start)) ?? guest.mainThread
        }
        let entry = Entry(thread)
        pthread_setspecific(key, Unmanaged.passRetained(entry).toOpaque())
        return entry
    }

    func acting<R>(as thread: GuestThread, _ body: () throws -> R) rethrows -> R {
        let entry = current
        let (saved, savedView) = (entry.thread, entry.visiting)
        entry.thread = thread
        entry.visiting = 0
        defer { (entry.thread, entry.visiting) = (saved, savedView) }
        return try body()
    }
}

extension XenGuestLibraries {
    /// A guest process's Xen libraries on the simulator: xenstore, an
    /// event-channel handle and the two grant drivers as `domain` (with its
    /// token), and its vCPUs as the hardware: threads start on `vcpu` and
    /// may run on `vcpus` (default: `vcpu` only).
    public static func simulator(domain name: String, stateDirectory: String? = nil, vcpu: UInt32 = 0,
                                 vcpus: [UInt32]? = nil,
                                 enforcement: SimGuest.Enforcement = .software) throws(SimGuestError) -> XenGuestLibraries {
        let directory = StateDirectory.resolve(explicit: stateDirectory)
        let platform = try SimGuestPlatform.attach(domain: name, stateDirectory: stateDirectory, vcpu: vcpu,
                                                   vcpus: vcpus, enforcement: enforcement)
        let path = directory.tokenPath(domain: name)
        guard let token = SimGuest.readToken(path) else { throw .noToken(domain: name, path: path) }
        do {
            return XenGuestLibraries(store: try SimXenStoreLibrary(stateDirectory: directory, token: token),
                                     events: try SimXenEventChannelLibrary(stateDirectory: directory, token: token),
                                     hardware: SimGuestHardware(platform: platform, claimsPath: directory.viewClaimsPath(domain: name)),
                                     grantShare: try SimGrantShareLibrary(stateDirectory: directory, token: token),
                                     grantTable: try SimGrantTableLibrary(stateDirectory: directory, token: token),
                                     openEventChannel: { () throws(XenErrno) in
                                         try asErrno { () throws(SimClientError) in
                                             try SimXenEventChannelLibrary(stateDirectory: directory, token: token)
                                         }
                                     })
        } catch {
            throw .simulator(error)
        }
    }
}
