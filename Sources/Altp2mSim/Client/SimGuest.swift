import Altp2m
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A guest vCPU of a simulated domain, run by this process.
///
/// Attach with the domain's name (its token is read from the state
/// directory) to a running simulator daemon, or wrap an in-process
/// ``Altp2mEngine`` for tests with no daemon. Then:
///
/// - ``vmfunc(_:eax:)`` is `VMFUNC` leaf 0 (EPTP switching). Attached, it runs
///   **locally**: it checks the visible-view list and the vCPU's VMFUNC
///   control in the read-only control region and stores the new view in the
///   vCPU's page, with no round trip (about as cheap as a function call). The
///   daemon reads that page the next time it acts on the domain, as Xen
///   re-reads `EPTP_INDEX` at the next VM exit.
/// - ``read(gfn:offset:into:)`` and ``write(gfn:offset:from:)`` are guest
///   memory accesses through the current view: a permitted access copies
///   directly to or from shared machine memory with no system call; anything
///   else (no entry yet, a violation) asks the daemon, which runs Xen's fault
///   handling (lazy copy, #VE, vm_event, relaxation, crash).
/// - With ``Enforcement/mprotect`` the process also gets a guest-physical
///   ``window`` whose pages carry the current view's protections, so a raw
///   access to a page the view forbids faults in the kernel, and
///   ``probe(gfn:offset:kind:)`` asks the kernel whether it would.
/// - ``events`` are the simulator's event-channel words (futex based).
///
/// Threads: a process attaches for one or more of the domain's vCPUs
/// (`vcpus:`) and runs ``GuestThread``s on them; each operation acts on the
/// vCPU its thread is on at that moment, with that vCPU's view. The
/// methods of `SimGuest` itself are those of its ``mainThread``. A
/// ``scheduler`` may migrate or preempt threads at every guest operation
/// (tests: deterministic scripts; soak tests: seeded random moves); with
/// none, a thread stays where it was put and the data path pays one branch.
/// Use each thread from one OS thread at a time. When the process goes
/// (``detach()``, exit or `kill -9`), the daemon sees the connection close
/// and releases what the process held; the domain keeps running.
public final class SimGuest {
    /// How guest memory accesses are checked.
    public enum Enforcement: String, Sendable, CaseIterable {
        /// The accessors check the current view's table; raw pointers are not policed.
        case software
        /// Also a guest-physical window with real page protections.
        case mprotect
    }

    /// The domain this process runs in.
    public let domain: DomainID
    /// The domain's name.
    public let name: String
    /// The vCPU the main thread started on.
    public let vcpu: VCPUID
    /// The vCPUs this process's threads may run on (those it attached for).
    public let vcpus: [VCPUID]
    /// Decides migrations and preemptions at each schedule point; nil: none.
    /// Read on every VMFUNC: no dynamic exclusivity check (set it while no
    /// thread of the process runs an operation).
    @exclusivity(unchecked) public var scheduler: (any GuestScheduler)?
    private var main: GuestThread?
    private var threadCount = 0
    /// The number of vCPUs of the domain.
    public let vcpuCount: Int
    /// How accesses are checked.
    public let enforcement: Enforcement
    /// Event-channel words (shared by every guest of the simulator).
    public let events: SimEventWords

    let engine: Altp2mEngine?
    let shared: SharedState?
    private var closed = false

    // MARK: Attaching

    /// Attaches to the running simulator as domain `name`, reading its token
    /// from `STATE/domains/NAME.token`.
    /// - Parameters:
    ///   - vcpu: the vCPU this process runs as.
    ///   - enforcement: how memory accesses are checked.
    ///   - vcpus: the vCPUs the process's threads may run on (default: `vcpu` only).
    public static func attach(domain name: String, stateDirectory: StateDirectory = .resolve(),
                              vcpu: VCPUID = 0, vcpus: [VCPUID]? = nil,
                              enforcement: Enforcement = .software) throws(SimGuestError) -> SimGuest {
        let path = stateDirectory.tokenPath(domain: name)
        guard let token = Self.readToken(path) else { throw .noToken(domain: name, path: path) }
        return try SimGuest(token: token, stateDirectory: stateDirectory, vcpu: vcpu, vcpus: vcpus, enforcement: enforcement)
    }

    /// The vCPU list a process attaches for, and where its main thread starts.
    static func placement(vcpu: VCPUID, vcpus: [VCPUID]?) throws(SimGuestError) -> (main: VCPUID, all: [VCPUID]) {
        var all: [VCPUID] = []
        for item in vcpus ?? [vcpu] where !all.contains(item) { all.append(item) }
        guard let first = all.first else { throw .simulator(.badArgument("vcpus is empty: name at least one vCPU")) }
        return (all.contains(vcpu) ? vcpu : first, all)
    }

    /// Attaches to the running simulator with a domain token.
    public init(token: String, stateDirectory: StateDirectory = .resolve(), vcpu: VCPUID = 0, vcpus: [VCPUID]? = nil,
                enforcement: Enforcement = .software) throws(SimGuestError) {
        let (start, all) = try Self.placement(vcpu: vcpu, vcpus: vcpus)
        let client: SimClient
        let response: JSONValue
        let fds: [Int32]
        do {
            client = try SimClient(stateDirectory: stateDirectory, token: token)
            (response, fds) = try client.exchange("guest.attach", ["vcpus": .array(all.map { .int(Int64($0.rawValue)) })])
        } catch {
            throw .simulator(error)
        }
        guard fds.count == 4, let id = response["domid"]?.int64, let count = response["vcpus"]?.int64 else {
            WireFrame.closeAll(fds)
            throw .protocolMismatch("guest.attach should give a domain id and 4 descriptors, got \(fds.count)")
        }
        guard let highest = all.map(\.rawValue).max(), highest < UInt32(count) else {
            WireFrame.closeAll(fds)
            throw .simulator(.badArgument("domain \(response["name"]?.string ?? "") has \(count) vCPUs; there is no vCPU \(all.map(\.rawValue).max() ?? 0)"))
        }
        var adopted: [SharedFileMapping] = []
        do {
            adopted.append(try SharedFileMapping(adopting: fds[0], writable: true, what: "machine memory"))
            adopted.append(try SharedFileMapping(adopting: fds[1], writable: false, what: "control region"))
            adopted.append(try SharedFileMapping(adopting: fds[2], writable: true, what: "vCPU pages"))
            adopted.append(try SharedFileMapping(adopting: fds[3], writable: true, what: "event words"))
        } catch {
            WireFrame.closeAll(Array(fds[(adopted.count + 1)...]))
            throw .system(error)
        }
        let state = try SharedState(client: client, memory: adopted[0], control: adopted[1], vcpuPages: adopted[2],
                                    vcpus: all.map { Int($0.rawValue) }, window: enforcement == .mprotect)
        domain = DomainID(rawValue: UInt16(truncatingIfNeeded: id))
        name = response["name"]?.string ?? ""
        self.vcpu = start
        self.vcpus = all
        vcpuCount = Int(count)
        self.enforcement = enforcement
        events = SimEventWords(mapping: adopted[3])
        engine = nil
        shared = state
        main = GuestThread(name: "main", guest: self, vcpu: start)
        state.refresh()
        state.syncWindow(vcpu: Int(start.rawValue))
    }

    /// A guest vCPU over an in-process engine (no daemon): the same accessors,
    /// each a direct engine call. There is no window, so enforcement is software.
    public init(engine: Altp2mEngine, domain: DomainID, vcpu: VCPUID = 0, vcpus: [VCPUID]? = nil,
                events: SimEventWords? = nil) throws(SimGuestError) {
        let (start, all) = try Self.placement(vcpu: vcpu, vcpus: vcpus)
        let status: DomainStatus
        do { status = try engine.domainStatus(domain) } catch { throw .simulator(.hypervisor(error, message: "no domain \(domain)")) }
        let list = engine.domainList().first { $0.id == domain }
        guard let list, let highest = all.map(\.rawValue).max(), highest < list.vcpuCount else {
            throw .simulator(.badArgument("\(domain) has no vCPU \(all.map(\.rawValue).max() ?? 0)"))
        }
        if let events {
            self.events = events
        } else {
            do { self.events = try SimEventWords() } catch { throw .system(error) }
        }
        self.engine = engine
        self.domain = domain
        self.name = status.name
        self.vcpu = start
        self.vcpus = all
        self.vcpuCount = Int(list.vcpuCount)
        self.enforcement = .software
        shared = nil
        main = GuestThread(name: "main", guest: self, vcpu: start)
    }

    // MARK: Threads

    /// The thread the `SimGuest` methods act as.
    public var mainThread: GuestThread { main! }

    /// A new thread of this process, on `vcpu` (one it attached for).
    /// - Throws: ``SimGuestError/simulator(_:)`` for a vCPU not attached for.
    public func thread(named name: String? = nil, on vcpu: VCPUID) throws(SimGuestError) -> GuestThread {
        threadCount += 1
        let thread = GuestThread(name: name ?? "thread-\(threadCount)", guest: self, vcpu: vcpus.first ?? 0)
        try thread.migrate(to: vcpu)
        return thread
    }

    /// A schedule point: the scheduler may move `thread` before `operation`.
    /// Returns the vCPU the thread is on then. One branch when there is no
    /// scheduler.
    @inline(__always)
    func schedule(_ thread: GuestThread, _ operation: GuestOperation) -> Int {
        if let scheduler { scheduler.schedulePoint(thread, operation) }
        return thread.vcpuIndex
    }

    deinit { detach() }

    /// Leaves the domain: the domain keeps running without this process, as
    /// when the process exits or is killed (the daemon then releases what
    /// it held: docs/SIMULATOR-DAEMON.md, "Guest processes and crashes").
    public func detach() {
        guard !closed else { return }
        closed = true
        if let shared {
            _ = try? shared.client.call("guest.detach")
            shared.client.close()
        }
    }

    // MARK: VMFUNC

    /// `VMFUNC` with `EAX = eax` and `ECX = index` on the main thread's vCPU (spec §6.2).
    ///
    /// Switches to view `index` if EAX is 0, the vCPU's VMFUNC control is on
    /// (it had `vcpu_enable_notify`) and the view is active and visible;
    /// otherwise the guest gets #UD and stays where it was. Attached, this
    /// runs locally with no system call.
    public func vmfunc(_ index: UInt32, eax: UInt32 = 0) -> VMFUNCOutcome {
        vmfunc(index, eax: eax, thread: mainThread)
    }

    func vmfunc(_ index: UInt32, eax: UInt32, thread: GuestThread) -> VMFUNCOutcome {
        let vcpu = schedule(thread, .vmfunc)
        guard let s = shared else {
            guard let engine else { return .vcpuNotRunning }
            return (try? engine.vmfunc(domain, vcpu: VCPUID(UInt32(vcpu)), eax: eax, ecx: index)) ?? .vcpuNotRunning
        }
        return s.vmfunc(index, eax: eax, vcpu: vcpu)
    }

    /// The view of the main thread's vCPU; nil while altp2m is inactive.
    public var currentView: ViewID? { currentView(vcpu: mainThread.vcpuIndex) }

    func currentView(vcpu: Int) -> ViewID? {
        guard let s = shared else {
            guard let engine, let info = try? engine.vcpuInfo(domain, vcpu: VCPUID(UInt32(vcpu))), !info.view.isInvalid else {
                return nil
            }
            return info.view
        }
        s.refresh()
        guard s.active else { return nil }
        let view = s.viewWord(vcpu).pointee.load(ordering: .relaxed)
        return view <= 0xFFFF && view != 0xFFFF ? ViewID(UInt16(view)) : nil
    }

    /// Takes in changes dom0 made (as a VM exit would): refreshes the cached
    /// control region and, with `mprotect`, remaps the window.
    public func synchronize() {
        guard let s = shared else { return }
        s.refresh()
        s.syncWindow(vcpu: mainThread.vcpuIndex)
    }

    // MARK: Pointers and the window

    /// The guest-physical window (`mprotect` enforcement): byte `gfn * 4096 +
    /// offset` is that guest-physical address as the current view maps it.
    /// Accesses the view forbids fault (SIGSEGV). Call ``synchronize()`` after
    /// dom0 changed something, as a VM exit would take the change in.
    public var window: UnsafeMutableRawPointer? { shared?.window?.base }

    /// The number of gfns the window and the local tables cover.
    public var windowGFNCount: Int { shared?.gfnCount ?? 0 }

    /// The address of `gfn`'s page if the current view allows `kind` now:
    /// in the window with `mprotect`, else in machine memory. For zero-copy
    /// use between VMFUNCs; nothing polices a software-mode pointer.
    public func pointer(to gfn: GFN, for kind: AccessKind) -> UnsafeMutableRawPointer? {
        let vcpu = schedule(mainThread, .pointer)
        guard let s = shared else {
            guard let engine, let entry = try? engine.translate(domain, view: currentView(vcpu: vcpu), gfn: gfn),
                  entry.permissionBits & UInt8(kind.bit) != 0 else { return nil }
            return engine.memory.base + Int(entry.mfn.rawValue) * 4096
        }
        s.refresh()
        s.syncWindow(vcpu: vcpu)
        let raw = s.entry(gfn, vcpu: vcpu)
        guard ControlRegionLayout.permits(raw, kind) else { return nil }
        if let window = s.window { return window.base + Int(gfn.rawValue) * 4096 }
        return s.memory.base + Int(ControlRegionLayout.mfn(raw)) * 4096
    }

    /// Asks the kernel whether an access to the window would fault, without
    /// faulting: the byte is passed through a pipe, and a page the current
    /// view forbids makes that copy fail with `EFAULT`. A write probe writes
    /// the byte's current value back (do not probe bytes others are writing).
    public func probe(gfn: GFN, offset: Int = 0, kind: AccessKind) -> GuestProbeResult {
        guard let s = shared, let window = s.window else { return .notEnforced }
        guard gfn.rawValue < UInt64(s.gfnCount), offset >= 0, offset < 4096 else { return .outsideWindow }
        s.syncWindow(vcpu: mainThread.vcpuIndex)
        let address = window.base + Int(gfn.rawValue) * 4096 + offset
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return .notEnforced }
        defer { _ = close(fds[0]); _ = close(fds[1]) }
        switch kind {
        case .read, .execute:
            // Execution is never allowed through the window; report reads.
            if Glibc.write(fds[1], address, 1) != 1 { return .refused }
            return kind == .execute ? .refused : .allowed
        case .write:
            guard Glibc.write(fds[1], address, 1) == 1 else { return .refused }
            // The pipe now holds the byte's current value; copy it back in.
            if Glibc.read(fds[0], address, 1) == 1 { return .allowed }
            var drain: UInt8 = 0
            _ = Glibc.read(fds[0], &drain, 1)
            return .refused
        }
    }

    // MARK: Hypercalls

    /// Makes a simulator request as this guest (kernel mode): the `altp2m.*`
    /// operations are hypercalls from inside the domain, with the guest
    /// permission rules (docs/SIMULATOR-DAEMON.md lists the operations).
    public func call(_ op: String, _ arguments: [String: JSONValue] = [:]) throws(SimClientError) -> JSONValue {
        guard let s = shared else { throw .refused("hypercalls need a daemon; this guest runs in-process") }
        return try s.client.call(op, arguments)
    }

    package static func readToken(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let token = text.filter { $0.isHexDigit }
        return token.isEmpty ? nil : token
    }
}
