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
/// One `SimGuest` is one vCPU: use it from one thread at a time. When the
/// process goes (``detach()``, exit or `kill -9`), the daemon sees the
/// connection close and releases what the process held; the domain keeps
/// running.
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
    /// The vCPU this process is.
    public let vcpu: VCPUID
    /// The number of vCPUs of the domain.
    public let vcpuCount: Int
    /// How accesses are checked.
    public let enforcement: Enforcement
    /// Event-channel words (shared by every guest of the simulator).
    public let events: SimEventWords

    let engine: Altp2mEngine?
    let shared: SharedState?
    private var closed = false

    /// The daemon connection and the mapped shared files of an attached guest.
    final class SharedState {
        let client: SimClient
        let memory: SharedFileMapping
        let control: SharedFileMapping
        let vcpuPages: SharedFileMapping
        let viewWord: UnsafeMutablePointer<Atomic<UInt32>>
        let generation: UnsafePointer<Atomic<UInt64>>
        let tables: UnsafePointer<Atomic<UInt64>>
        let vcpuFlags: UnsafePointer<Atomic<UInt32>>
        let gfnCount: Int
        let viewCount: Int
        let window: GuestWindow?
        // A cache of the control region, valid for `cachedGeneration`.
        var cachedGeneration: UInt64 = ~0
        var flags: UInt32 = 0
        var active = false
        var visible = VisibleViewBits()
        /// The view word the window was last synced for.
        var windowView: UInt32 = ~0
        var windowGeneration: UInt64 = ~0

        init(client: SimClient, memory: SharedFileMapping, control: SharedFileMapping, vcpuPages: SharedFileMapping,
             vcpu: Int, window: Bool) throws(SimGuestError) {
            self.client = client
            self.memory = memory
            self.control = control
            self.vcpuPages = vcpuPages
            let base = UnsafeRawPointer(control.base)
            guard control.size >= ControlRegionLayout.headerSize,
                  base.load(as: UInt32.self) == ControlRegionLayout.magic,
                  base.load(fromByteOffset: 4, as: UInt32.self) == ControlRegionLayout.version
            else { throw .protocolMismatch("the control region has an unknown layout") }
            gfnCount = Int(base.load(fromByteOffset: ControlRegionLayout.gfnCountOffset, as: UInt64.self))
            viewCount = Int(base.load(fromByteOffset: ControlRegionLayout.viewCountOffset, as: UInt32.self))
            let vcpus = Int(base.load(fromByteOffset: ControlRegionLayout.vcpuCountOffset, as: UInt32.self))
            guard vcpu < vcpus, control.size >= ControlRegionLayout.fileSize(viewCount: viewCount, gfnCount: gfnCount),
                  vcpuPages.size >= ControlRegionLayout.vcpuPageFileSize
            else { throw .protocolMismatch("the control region is smaller than its header says") }
            viewWord = (vcpuPages.base + vcpu * ControlRegionLayout.vcpuPageStride).assumingMemoryBound(to: Atomic<UInt32>.self)
            generation = (base + ControlRegionLayout.generationOffset).assumingMemoryBound(to: Atomic<UInt64>.self)
            tables = (base + ControlRegionLayout.headerSize).assumingMemoryBound(to: Atomic<UInt64>.self)
            vcpuFlags = (base + ControlRegionLayout.vcpuInfoOffset + vcpu * ControlRegionLayout.vcpuInfoStride)
                .assumingMemoryBound(to: Atomic<UInt32>.self)
            do {
                self.window = window ? try GuestWindow(gfnCount: gfnCount, memoryFD: memory.fd) : nil
            } catch {
                throw .system(error)
            }
        }

        /// Re-reads the cached part of the control region if it changed.
        @inline(__always)
        func refresh() {
            let now = generation.pointee.load(ordering: .acquiring)
            if now != cachedGeneration { reload(now) }
        }

        func reload(_ now: UInt64) {
            let base = UnsafeRawPointer(control.base)
            flags = vcpuFlags.pointee.load(ordering: .acquiring)
            active = base.load(fromByteOffset: ControlRegionLayout.flagsOffset, as: UInt32.self)
                & ControlRegionLayout.flagActive != 0
            let v = ControlRegionLayout.visibleBitmapOffset
            visible = VisibleViewBits(loadingFrom: base + v)
            cachedGeneration = now
        }

        @inline(__always)
        func isVisible(_ index: UInt32) -> Bool {
            visible.contains(index)
        }

        /// The local VMFUNC of an attached guest (see ``SimGuest/vmfunc(_:eax:)``).
        @inline(__always)
        func vmfunc(_ index: UInt32, eax: UInt32) -> VMFUNCOutcome {
            refresh()
            guard flags & ControlRegionLayout.vcpuFlagRunnable != 0 else { return .vcpuNotRunning }
            guard flags & ControlRegionLayout.vcpuFlagVMFUNC != 0 else { return .invalidOpcode(.vmfuncDisabled) }
            guard eax == 0, index < 512, active, isVisible(index) else { return .invalidOpcode(.vmExit) }
            // One writer besides the daemon's compare-and-swap for dom0 switches;
            // if that lands between these two, this VMFUNC is the later event.
            let from = viewWord.pointee.load(ordering: .relaxed)
            viewWord.pointee.store(index, ordering: .releasing)
            if window != nil { syncWindow() }
            return .switched(from: ViewID(UInt16(truncatingIfNeeded: from)), to: ViewID(UInt16(truncatingIfNeeded: index)))
        }

        /// The table the vCPU uses now (0 host, 1 + v view v), or nil.
        @inline(__always)
        func currentTable() -> Int? {
            guard active else { return 0 }
            let view = viewWord.pointee.load(ordering: .relaxed)
            return Int(view) < viewCount ? Int(view) + 1 : nil
        }

        /// The encoded entry for `gfn` in the current table (0 if none).
        @inline(__always)
        func entry(_ gfn: GFN) -> UInt64 {
            guard gfn.rawValue < UInt64(gfnCount), let table = currentTable() else { return 0 }
            return tables[table * gfnCount + Int(gfn.rawValue)].load(ordering: .acquiring)
        }

        /// Brings the window in step with the current view and generation.
        func syncWindow() {
            guard let window else { return }
            refresh()
            let view = viewWord.pointee.load(ordering: .relaxed)
            guard view != windowView || cachedGeneration != windowGeneration else { return }
            let index = currentTable() ?? 0
            do {
                try window.sync(table: tables + index * gfnCount, index: index)
                windowView = view
                windowGeneration = cachedGeneration
            } catch {
                // The window keeps its old pages; the next sync tries again.
                windowGeneration = ~0
            }
        }
    }

    // MARK: Attaching

    /// Attaches to the running simulator as domain `name`, reading its token
    /// from `STATE/domains/NAME.token`.
    /// - Parameters:
    ///   - vcpu: the vCPU this process runs as.
    ///   - enforcement: how memory accesses are checked.
    public static func attach(domain name: String, stateDirectory: StateDirectory = .resolve(),
                              vcpu: VCPUID = 0, enforcement: Enforcement = .software) throws(SimGuestError) -> SimGuest {
        let path = stateDirectory.tokenPath(domain: name)
        guard let token = Self.readToken(path) else { throw .noToken(domain: name, path: path) }
        return try SimGuest(token: token, stateDirectory: stateDirectory, vcpu: vcpu, enforcement: enforcement)
    }

    /// Attaches to the running simulator with a domain token.
    public init(token: String, stateDirectory: StateDirectory = .resolve(), vcpu: VCPUID = 0,
                enforcement: Enforcement = .software) throws(SimGuestError) {
        let client: SimClient
        let response: JSONValue
        let fds: [Int32]
        do {
            client = try SimClient(stateDirectory: stateDirectory, token: token)
            (response, fds) = try client.exchange("guest.attach", ["vcpu": .int(Int64(vcpu.rawValue))])
        } catch {
            throw .simulator(error)
        }
        guard fds.count == 4, let id = response["domid"]?.int64, let vcpus = response["vcpus"]?.int64 else {
            WireFrame.closeAll(fds)
            throw .protocolMismatch("guest.attach should give a domain id and 4 descriptors, got \(fds.count)")
        }
        guard vcpu.rawValue < UInt32(vcpus) else {
            WireFrame.closeAll(fds)
            throw .simulator(.badArgument("domain \(response["name"]?.string ?? "") has \(vcpus) vCPUs; there is no vCPU \(vcpu.rawValue)"))
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
                                    vcpu: Int(vcpu.rawValue), window: enforcement == .mprotect)
        domain = DomainID(rawValue: UInt16(truncatingIfNeeded: id))
        name = response["name"]?.string ?? ""
        self.vcpu = vcpu
        vcpuCount = Int(vcpus)
        self.enforcement = enforcement
        events = SimEventWords(mapping: adopted[3])
        engine = nil
        shared = state
        state.refresh()
        state.syncWindow()
    }

    /// A guest vCPU over an in-process engine (no daemon): the same accessors,
    /// each a direct engine call. There is no window, so enforcement is software.
    public init(engine: Altp2mEngine, domain: DomainID, vcpu: VCPUID = 0,
                events: SimEventWords? = nil) throws(SimGuestError) {
        let status: DomainStatus
        do { status = try engine.domainStatus(domain) } catch { throw .simulator(.hypervisor(error, message: "no domain \(domain)")) }
        let list = engine.domainList().first { $0.id == domain }
        guard let list, vcpu.rawValue < list.vcpuCount else {
            throw .simulator(.badArgument("\(domain) has no vCPU \(vcpu.rawValue)"))
        }
        if let events {
            self.events = events
        } else {
            do { self.events = try SimEventWords() } catch { throw .system(error) }
        }
        self.engine = engine
        self.domain = domain
        self.name = status.name
        self.vcpu = vcpu
        self.vcpuCount = Int(list.vcpuCount)
        self.enforcement = .software
        shared = nil
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

    /// `VMFUNC` with `EAX = eax` and `ECX = index` on this vCPU (spec §6.2).
    ///
    /// Switches to view `index` if EAX is 0, the vCPU's VMFUNC control is on
    /// (it had `vcpu_enable_notify`) and the view is active and visible;
    /// otherwise the guest gets #UD and stays where it was. Attached, this
    /// runs locally with no system call.
    public func vmfunc(_ index: UInt32, eax: UInt32 = 0) -> VMFUNCOutcome {
        guard let s = shared else {
            guard let engine else { return .vcpuNotRunning }
            return (try? engine.vmfunc(domain, vcpu: vcpu, eax: eax, ecx: index)) ?? .vcpuNotRunning
        }
        return s.vmfunc(index, eax: eax)
    }

    /// The view this vCPU is on; nil while altp2m is inactive.
    public var currentView: ViewID? {
        guard let s = shared else {
            guard let engine, let info = try? engine.vcpuInfo(domain, vcpu: vcpu), !info.view.isInvalid else { return nil }
            return info.view
        }
        s.refresh()
        guard s.active else { return nil }
        let view = s.viewWord.pointee.load(ordering: .relaxed)
        return view <= 0xFFFF && view != 0xFFFF ? ViewID(UInt16(view)) : nil
    }

    /// Takes in changes dom0 made (as a VM exit would): refreshes the cached
    /// control region and, with `mprotect`, remaps the window.
    public func synchronize() {
        guard let s = shared else { return }
        s.refresh()
        s.syncWindow()
    }

    // MARK: Memory

    /// Reads `buffer.count` bytes at `offset` of `gfn`, as the guest on this
    /// vCPU would (through its current view).
    /// - Throws: ``GuestMemoryFault`` when the access does not complete.
    public func read(gfn: GFN, offset: Int = 0, into buffer: UnsafeMutableRawBufferPointer) throws(GuestMemoryFault) {
        guard offset >= 0, offset + buffer.count <= 4096 else { throw .outsidePage }
        guard let s = shared else { return try inProcessRead(gfn: gfn, offset: offset, into: buffer) }
        s.refresh()
        if let window = s.window {
            s.syncWindow()
            if s.flags & ControlRegionLayout.vcpuFlagRunnable != 0, ControlRegionLayout.permits(s.entry(gfn), .read),
               window.tableIndex == (s.currentTable() ?? -2) {
                buffer.copyMemory(from: UnsafeRawBufferPointer(start: window.base + Int(gfn.rawValue) * 4096 + offset,
                                                               count: buffer.count))
                return
            }
        } else {
            let raw = s.entry(gfn)
            if s.flags & ControlRegionLayout.vcpuFlagRunnable != 0, ControlRegionLayout.permits(raw, .read) {
                let source = s.memory.base + Int(ControlRegionLayout.mfn(raw)) * 4096 + offset
                buffer.copyMemory(from: UnsafeRawBufferPointer(start: source, count: buffer.count))
                return
            }
        }
        guard let mfn = try slowAccess(gfn: gfn, kind: .read, offset: offset) else { return }
        let source = s.memory.base + Int(mfn) * 4096 + offset
        buffer.copyMemory(from: UnsafeRawBufferPointer(start: source, count: buffer.count))
    }

    /// Writes `bytes` at `offset` of `gfn`, as the guest on this vCPU would.
    /// - Throws: ``GuestMemoryFault`` when the access does not complete.
    public func write(gfn: GFN, offset: Int = 0, from bytes: UnsafeRawBufferPointer) throws(GuestMemoryFault) {
        guard offset >= 0, offset + bytes.count <= 4096 else { throw .outsidePage }
        guard let s = shared else { return try inProcessWrite(gfn: gfn, offset: offset, from: bytes) }
        s.refresh()
        if let window = s.window {
            s.syncWindow()
            if s.flags & ControlRegionLayout.vcpuFlagRunnable != 0, ControlRegionLayout.permits(s.entry(gfn), .write),
               window.tableIndex == (s.currentTable() ?? -2) {
                (window.base + Int(gfn.rawValue) * 4096 + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                return
            }
        } else {
            let raw = s.entry(gfn)
            if s.flags & ControlRegionLayout.vcpuFlagRunnable != 0, ControlRegionLayout.permits(raw, .write) {
                if bytes.count > 0 {
                    (s.memory.base + Int(ControlRegionLayout.mfn(raw)) * 4096 + offset)
                        .copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                }
                return
            }
        }
        guard let mfn = try slowAccess(gfn: gfn, kind: .write, offset: offset), bytes.count > 0 else { return }
        (s.memory.base + Int(mfn) * 4096 + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    }

    /// Reads `count` bytes (convenience over ``read(gfn:offset:into:)``).
    public func read(gfn: GFN, offset: Int = 0, count: Int) throws(GuestMemoryFault) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var fault: GuestMemoryFault?
        bytes.withUnsafeMutableBytes { buffer in
            do throws(GuestMemoryFault) { try read(gfn: gfn, offset: offset, into: buffer) } catch { fault = error }
        }
        if let fault { throw fault }
        return bytes
    }

    /// Writes `bytes` (convenience over ``write(gfn:offset:from:)``).
    public func write(gfn: GFN, offset: Int = 0, bytes: [UInt8]) throws(GuestMemoryFault) {
        var fault: GuestMemoryFault?
        bytes.withUnsafeBytes { buffer in
            do throws(GuestMemoryFault) { try write(gfn: gfn, offset: offset, from: buffer) } catch { fault = error }
        }
        if let fault { throw fault }
    }

    /// Asks the daemon to run the fault path for an access the local tables
    /// do not allow. Returns the frame to access, or nil when the access
    /// completed without moving data (a discarded write).
    private func slowAccess(gfn: GFN, kind: AccessKind, offset: Int) throws(GuestMemoryFault) -> UInt64? {
        guard let s = shared else { return nil }
        let response: JSONValue
        do {
            response = try s.client.call("guest.access", [
                "vcpu": .int(Int64(vcpu.rawValue)), "gfn": .uint(gfn.rawValue),
                "kind": .string(kind == .read ? "r" : kind == .write ? "w" : "x"), "offset": .int(Int64(offset)),
            ])
        } catch {
            throw .simulatorUnavailable(error.description)
        }
        s.refresh()
        s.syncWindow()
        let mfn = response["mfn"]?.string.flatMap { UInt64($0.dropFirst(2), radix: 16) }
        switch response["outcome"]?.string ?? "" {
        case "ok", "lazy_copy_then_ok", "relaxed", "emulated":
            guard let mfn else { throw .simulatorUnavailable("the daemon answered without a frame") }
            return mfn
        case "write_discarded": return nil
        case "vm_event":
            if let mfn { return mfn }
            throw .vmEvent(paused: response["paused"]?.bool ?? true)
        case "ve": throw .virtualizationException(Self.veInfo(response["ve"]))
        case "no_mapping": throw .noMapping
        case "domain_crashed": throw .domainCrashed
        case "vcpu_paused": throw .vcpuPaused
        case "fault_swallowed": throw .faultSwallowed
        case let other: throw .simulatorUnavailable("unknown outcome '\(other)'")
        }
    }

    static func veInfo(_ json: JSONValue?) -> VEInfo {
        func hex(_ key: String) -> UInt64 { json?[key]?.string.flatMap { UInt64($0.dropFirst(2), radix: 16) } ?? 0 }
        return VEInfo(exitReason: UInt32(truncatingIfNeeded: json?["exit_reason"]?.int64 ?? 48),
                      semaphore: UInt32(truncatingIfNeeded: json?["semaphore"]?.uint64 ?? 0xFFFF_FFFF),
                      exitQualification: EPTViolationQualification(rawValue: hex("exit_qualification")),
                      guestLinearAddress: hex("gla"), guestPhysicalAddress: hex("gpa"),
                      eptpIndex: UInt16(truncatingIfNeeded: json?["eptp_index"]?.int64 ?? 0))
    }

    private func inProcessRead(gfn: GFN, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(GuestMemoryFault) {
        guard let engine else { throw .domainCrashed }
        let result: GuestReadResult
        do { result = try engine.guestRead(domain, vcpu: vcpu, gfn: gfn, offset: offset, count: buffer.count) } catch {
            throw .simulatorUnavailable(error.description)
        }
        if let bytes = result.bytes {
            bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
            return
        }
        throw Self.fault(result.outcome)
    }

    private func inProcessWrite(gfn: GFN, offset: Int, from bytes: UnsafeRawBufferPointer) throws(GuestMemoryFault) {
        guard let engine else { throw .domainCrashed }
        let outcome: GuestAccessOutcome
        do { outcome = try engine.guestWrite(domain, vcpu: vcpu, gfn: gfn, offset: offset, bytes: bytes) } catch {
            throw .simulatorUnavailable(error.description)
        }
        if outcome.completedMFN != nil { return }
        if case .writeDiscarded = outcome { return }
        throw Self.fault(outcome)
    }

    static func fault(_ outcome: GuestAccessOutcome) -> GuestMemoryFault {
        switch outcome {
        case .virtualizationException(let info): .virtualizationException(info)
        case .vmEvent(let request, _): .vmEvent(paused: request.isSynchronous)
        case .noMapping: .noMapping
        case .domainCrashed: .domainCrashed
        case .vcpuPaused: .vcpuPaused
        case .faultSwallowed: .faultSwallowed
        default: .simulatorUnavailable("unexpected outcome \(outcome)")
        }
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
        guard let s = shared else {
            guard let engine, let entry = try? engine.translate(domain, view: currentView, gfn: gfn),
                  entry.permissionBits & UInt8(kind.bit) != 0 else { return nil }
            return engine.memory.base + Int(entry.mfn.rawValue) * 4096
        }
        s.refresh()
        s.syncWindow()
        let raw = s.entry(gfn)
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
        s.syncWindow()
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
