import Altp2m
import CPlatform
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A lock shared by the in-process ``SimGuestPlatform``s of one engine that
/// run on different threads (the engine has a single owner). Taken only on
/// the slow path (mapping a window, reading descriptors, ``SimGuestPlatform/refresh()``),
/// never by ``SimGuestPlatform/enterView(_:)``, `notify` or `wait`.
public final class SimEngineLock: @unchecked Sendable {
    // @unchecked: a pthread mutex, used only through lock/unlock.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` holding the lock.
    public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// ``GuestPlatform`` for a simulated guest: one vCPU of a ``SimGuest``.
///
/// Two ways to get one:
///
/// - ``attach(domain:stateDirectory:vcpu:)``: a guest process of a running
///   simulator daemon. VMFUNC is the guest's local VMFUNC (the control
///   region's visible-view bitmap and the vCPU's VMFUNC flag, then a store to
///   the vCPU page; no system call). The window is reserved address space
///   with each page's backing frame mapped `MAP_SHARED | MAP_FIXED` from the
///   machine-memory file at its mfn's offset, after the daemon resolved the
///   window's gfns in the channel view (`guest.window`). Descriptors come
///   from the daemon's store (`guest.descriptor-names`, `guest.descriptor`),
///   which answers only with the calling domain's own entries.
/// - ``init(guest:descriptors:lock:)`` over an in-process guest
///   (`SimGuest(engine:domain:vcpu:events:)`): the window is resolved with
///   the engine, mapped the same way when the engine's memory is a
///   ``FileMachineMemory``, else pointed straight into the engine's memory
///   when the frames are consecutive (they are for a channel made on a fresh
///   engine: frames are handed out lowest first). Descriptors are read from
///   the ``EngineChannelHost`` the grant module published into. Because the
///   engine has one owner, in-process VMFUNC is checked against a snapshot of
///   the vCPU's VMFUNC control and the domain's visible views (taken at
///   creation, at each ``mapWindow(view:firstGFN:pageCount:)`` and at
///   ``refresh()``) and moves only this platform's view; the engine's vCPU
///   stays where it was.
///
/// With `software` enforcement (the default, and the only one in process)
/// the window is plain shared memory in this process: nothing stops code
/// from touching it outside the channel view. Touching it only between
/// `enterView(view)` and the return to view 0 is the caller's contract, as
/// ``GuestPlatform`` states. With `mprotect` enforcement (attached only) each
/// window is readable and writable only while this vCPU is in the view it
/// was mapped for, and `PROT_NONE` otherwise, so a stray access outside the
/// channel view is a real SIGSEGV, at the price of an `mprotect` call per
/// window on every VMFUNC.
///
/// `notify` and `wait` are futex wake and wait on the word inside the
/// window. Every mapping of a frame is `MAP_SHARED` of one file (or, in
/// process, the same memory), so a wake from another guest process, or
/// from the daemon tearing a channel down, reaches the sleeper. Under
/// `mprotect` the futex calls go through a second, always-mapped alias of
/// the window's frames: they stand for the event channel, which on Xen
/// needs no access to the window either.
///
/// One platform is one guest thread (``thread``, the guest's main thread
/// unless given): use it from one OS thread at a time. Its VMFUNC acts on
/// the vCPU that thread is on, and `enterView`, `notify` and `wait` are
/// schedule points of the guest's ``SimGuest/scheduler``. Raw accesses to
/// the window are not: they happen on the vCPU of the thread's last
/// schedule point (docs/SIMULATOR.md, "Guest threads and vCPUs").
public final class SimGuestPlatform: GuestPlatform {
    /// The guest process underneath.
    public let guest: SimGuest
    /// The guest thread this platform runs as.
    public let thread: GuestThread
    public let domain: DomainID

    private let store: EngineChannelHost?
    private let lock: SimEngineLock?

    /// In-process snapshot for VMFUNC (unused when attached).
    private var visible = VisibleViewBits()
    private var vmfuncEnabled = false
    private var runnable = false
    private var active = false
    /// The in-process vCPU's current view, as this platform's VMFUNCs set it.
    public private(set) var inProcessView: ViewID = .hostOrView0

    /// Windows this platform handed out: page count, and whether it is its
    /// own mapping (unmapped on release) or a pointer into engine memory.
    private var windows: [UnsafeMutableRawPointer: (pages: Int, owned: Bool)] = [:]
    /// How windows are protected outside their view.
    public let enforcement: SimGuest.Enforcement
    /// The attached guest's shared state, unretained (the guest holds it for
    /// this platform's lifetime): VMFUNC on the data path costs no reference
    /// counting.
    private let attached: Unmanaged<SimGuest.SharedState>?
    /// `mprotect` enforcement: each window's range, its view, whether it is
    /// open now, and the always-mapped alias of its frames the futex calls use.
    private var protectedWindows: [(start: UInt, end: UInt, view: ViewID, open: Bool, alias: UnsafeMutableRawPointer)] = []

    // MARK: Making one

    /// Attaches to the running simulator daemon as a process of `domain`
    /// (its token is read from `STATE/domains/NAME.token`) whose main
    /// thread starts on `vcpu`.
    /// - Parameters:
    ///   - vcpus: the vCPUs the process's threads may run on (default `vcpu`).
    ///   - enforcement: `software` (windows are plain shared memory) or
    ///     `mprotect` (each window readable and writable only in its view).
    public static func attach(domain name: String, stateDirectory: String? = nil,
                              vcpu: UInt32 = 0, vcpus: [UInt32]? = nil,
                              enforcement: SimGuest.Enforcement = .software) throws(SimGuestError) -> SimGuestPlatform {
        let directory = StateDirectory.resolve(explicit: stateDirectory)
        // The guest's own guest-physical window (SimGuest's mprotect mode)
        // covers only its RAM gfns, not the grant frames above it where
        // channel windows live: the platform protects its windows itself.
        let guest = try SimGuest.attach(domain: name, stateDirectory: directory, vcpu: VCPUID(vcpu),
                                        vcpus: vcpus.map { $0.map { VCPUID($0) } },
                                        enforcement: .software)
        return SimGuestPlatform(guest: guest, enforcement: enforcement)
    }

    /// Wraps a guest vCPU.
    /// - Parameters:
    ///   - guest: an attached guest (daemon) or an in-process one.
    ///   - descriptors: in process, the host the grant module publishes
    ///     descriptors into (ignored when attached: the daemon keeps them).
    ///   - lock: in process, a lock shared by every platform of the engine
    ///     that runs on another thread; nil when one thread owns the engine.
    ///   - enforcement: `mprotect` only for an attached guest (in process,
    ///     windows may point straight into engine memory).
    ///   - thread: the guest thread it runs as (default: the guest's main thread).
    public init(guest: SimGuest, descriptors: EngineChannelHost? = nil, lock: SimEngineLock? = nil,
                enforcement: SimGuest.Enforcement = .software, thread: GuestThread? = nil) {
        self.guest = guest
        self.thread = thread ?? guest.mainThread
        self.enforcement = guest.shared == nil ? .software : enforcement
        self.attached = guest.shared.map { Unmanaged.passUnretained($0) }
        self.domain = guest.domain
        self.store = descriptors
        self.lock = lock
        if guest.shared == nil { refresh() }
    }

    deinit {
        for (base, window) in windows where window.owned { munmap(base, window.pages * MachineFrame.size) }
        for window in protectedWindows { munmap(window.alias, Int(window.end - window.start)) }
    }

    /// In process: takes a new snapshot of the vCPU's VMFUNC control and the
    /// domain's visible views (attached guests read the control region on
    /// every VMFUNC and need no refresh).
    public func refresh() {
        guard guest.shared == nil, let engine = guest.engine else { return }
        withEngine {
            let vcpuInfo = try? engine.vcpuInfo(guest.domain, vcpu: guest.vcpu)
            vmfuncEnabled = engine.host.cpu.hasVMFUNC && (vcpuInfo?.vmfuncEnabled ?? false)
            let status = try? engine.domainStatus(guest.domain)
            active = status?.isActive ?? false
            runnable = !(status?.isCrashed ?? true) && !(vcpuInfo?.pausedByVMEvent ?? false)
            var words = [UInt64](repeating: 0, count: 8)
            if let status {
                for index in 0..<min(status.viewCount, 512) {
                    if let info = try? engine.viewInfo(guest.domain, view: ViewID(UInt16(index))),
                       info.isActive, info.isVisible {
                        words[index >> 6] |= 1 << UInt64(index & 63)
                    }
                }
            }
            visible = VisibleViewBits(words)
        }
    }

    private func withEngine<R>(_ body: () -> R) -> R {
        if let lock { return lock.withLock(body) }
        return body()
    }

    // MARK: GuestPlatform

    @inline(__always)
    public func enterView(_ view: ViewID) -> Bool {
        enterView(view, as: thread)
    }

    /// `VMFUNC` as `thread`, another thread of this platform's process: it
    /// acts on the vCPU that thread is on after its schedule point.
    @inline(__always)
    public func enterView(_ view: ViewID, as thread: GuestThread) -> Bool {
        if let attached {
            let vcpu = guest.schedule(thread, .vmfunc)
            guard case .switched = attached._withUnsafeGuaranteedRef({ $0.vmfunc(UInt32(view.rawValue), eax: 0, vcpu: vcpu) })
            else { return false }
            if !protectedWindows.isEmpty { applyProtection(view) }
            return true
        }
        let index = UInt32(view.rawValue)
        guard runnable, vmfuncEnabled, active, index < 512 else { return false }
        guard visible.contains(index) else { return false }
        inProcessView = view
        return true
    }

    public func mapWindow(view: ViewID, firstGFN: GFN, pageCount: Int) throws(GuestPlatformError) -> UnsafeMutableRawPointer {
        guard pageCount >= 1, pageCount <= 1 << 20 else { throw .windowOutOfRange(firstGFN: firstGFN, pageCount: pageCount) }
        let mfns: [UInt64]
        let memoryFD: Int32?
        if let s = guest.shared {
            let response: JSONValue
            do {
                response = try s.client.call("guest.window", [
                    "view": .int(Int64(view.rawValue)), "first_gfn": .uint(firstGFN.rawValue),
                    "pages": .int(Int64(pageCount)),
                ])
            } catch {
                throw Self.platformError(error, window: (firstGFN, pageCount))
            }
            guard case .array(let list)? = response["mfns"], list.count == pageCount else {
                throw .unavailable("the simulator answered guest.window without \(pageCount) frames")
            }
            var found: [UInt64] = []
            for item in list {
                guard let text = item.string, text.hasPrefix("0x"), let mfn = UInt64(text.dropFirst(2), radix: 16) else {
                    throw .windowOutOfRange(firstGFN: firstGFN, pageCount: pageCount)
                }
                found.append(mfn)
            }
            mfns = found
            memoryFD = s.memory.fd
        } else {
            guard let engine = guest.engine else { throw .unavailable("the guest has no simulator") }
            refresh()
            let resolved: [UInt64]? = withEngine {
                var out: [UInt64] = []
                for offset in 0..<pageCount {
                    guard let entry = try? engine.translate(guest.domain, view: view, gfn: firstGFN.advanced(by: offset)),
                          !entry.mfn.isInvalid else { return nil }
                    out.append(entry.mfn.rawValue)
                }
                return out
            }
            guard let resolved else { throw .windowOutOfRange(firstGFN: firstGFN, pageCount: pageCount) }
            mfns = resolved
            if let file = engine.memory as? FileMachineMemory {
                memoryFD = file.fileDescriptor
            } else {
                // Anonymous private memory cannot be mapped twice: point into
                // it when the frames are consecutive.
                guard mfns.indices.allSatisfy({ mfns[$0] == mfns[0] + UInt64($0) }) else {
                    throw .unavailable("the window's frames are not consecutive in in-process memory; run the engine on a FileMachineMemory")
                }
                let base = engine.memory.base + Int(mfns[0]) * MachineFrame.size
                windows[base] = (pageCount, false)
                return base
            }
        }
        guard let fd = memoryFD else { throw .unavailable("no machine memory") }
        let base = try Self.mapFrames(fd: fd, mfns: mfns)
        windows[base] = (pageCount, true)
        if enforcement == .mprotect {
            let alias: UnsafeMutableRawPointer
            do { alias = try Self.mapFrames(fd: fd, mfns: mfns) } catch {
                unmapWindow(base, pageCount: pageCount)
                throw error
            }
            let start = UInt(bitPattern: base)
            protectedWindows.append((start, start + UInt(pageCount * MachineFrame.size), view, true, alias))
            applyProtection(guest.currentView(vcpu: thread.vcpuIndex) ?? .hostOrView0)
        }
        return base
    }

    /// `mprotect`: opens the windows of `view`, closes every other one.
    private func applyProtection(_ view: ViewID) {
        for index in protectedWindows.indices {
            let open = protectedWindows[index].view == view
            guard open != protectedWindows[index].open else { continue }
            let window = protectedWindows[index]
            mprotect(UnsafeMutableRawPointer(bitPattern: window.start), Int(window.end - window.start),
                     open ? PROT_READ | PROT_WRITE : PROT_NONE)
            protectedWindows[index].open = open
        }
    }

    public func unmapWindow(_ base: UnsafeMutableRawPointer, pageCount: Int) {
        guard let window = windows.removeValue(forKey: base) else { return }
        if window.owned { munmap(base, window.pages * MachineFrame.size) }
        let start = UInt(bitPattern: base)
        if let index = protectedWindows.firstIndex(where: { $0.start == start }) {
            munmap(protectedWindows[index].alias, Int(protectedWindows[index].end - start))
            protectedWindows.remove(at: index)
        }
    }

    /// The address the futex calls use for `word`: itself, or under
    /// `mprotect` its place in the always-mapped alias.
    @inline(__always)
    private func futexWord(_ word: UnsafeMutablePointer<UInt32>) -> UnsafeMutablePointer<UInt32> {
        if protectedWindows.isEmpty { return word }
        let address = UInt(bitPattern: word)
        for window in protectedWindows where address >= window.start && address < window.end {
            return (window.alias + Int(address - window.start)).assumingMemoryBound(to: UInt32.self)
        }
        return word
    }

    @inline(__always)
    public func notify(_ wake: WakeTarget) {
        if let scheduler = guest.scheduler { scheduler.schedulePoint(thread, .notify) }
        _ = cplatform_futex_wake(futexWord(wake.word), Int32.max)
    }

    @inline(__always)
    public func wait(_ wake: WakeTarget, expected: UInt32, timeoutNanoseconds: UInt64?) {
        if let scheduler = guest.scheduler { scheduler.schedulePoint(thread, .wait) }
        let timeout = timeoutNanoseconds.map { Int64(min($0, UInt64(Int64.max))) } ?? -1
        _ = cplatform_futex_wait(futexWord(wake.word), expected, timeout)
    }

    public func descriptorNames() throws(GuestPlatformError) -> [String] {
        if let s = guest.shared {
            do {
                let response = try s.client.call("guest.descriptor-names")
                guard case .array(let names)? = response["names"] else { return [] }
                return names.compactMap(\.string)
            } catch {
                throw Self.platformError(error, window: nil)
            }
        }
        guard let store else { throw .unavailable("no descriptor store: pass the EngineChannelHost as descriptors:") }
        return withEngine { store.descriptorNames(for: domain) }
    }

    public func readDescriptor(named name: String) throws(GuestPlatformError) -> [UInt8] {
        if let s = guest.shared {
            let response: JSONValue
            do {
                response = try s.client.call("guest.descriptor", ["name": .string(name)])
            } catch {
                if case .hypervisor(.noEntry, _) = error { throw .noDescriptor(name) }
                throw Self.platformError(error, window: nil)
            }
            guard let hex = response["envelope"]?.string, let bytes = Self.bytes(hex: hex) else {
                throw .unavailable("the simulator answered guest.descriptor without an envelope")
            }
            return bytes
        }
        guard let store else { throw .unavailable("no descriptor store: pass the EngineChannelHost as descriptors:") }
        let result: Result<[UInt8], XenErrno> = withEngine {
            do throws(XenErrno) { return .success(try store.readDescriptor(for: domain, name: name, as: domain)) } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let bytes): return bytes
        case .failure(.noEntry): throw .noDescriptor(name)
        case .failure(let errno): throw .hypervisor(errno, "reading descriptor \(name)")
        }
    }

    // MARK: Helpers

    /// Reserves `mfns.count` pages of address space, then maps each frame of
    /// the memory file over its page.
    static func mapFrames(fd: Int32, mfns: [UInt64]) throws(GuestPlatformError) -> UnsafeMutableRawPointer {
        let size = mfns.count * MachineFrame.size
        #if os(Linux)
        let reserveFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        #else
        let reserveFlags = MAP_PRIVATE | MAP_ANON
        #endif
        guard let base = mmap(nil, size, PROT_NONE, reserveFlags, -1, 0), base != MAP_FAILED else {
            throw .unavailable("cannot reserve \(mfns.count) pages of address space (errno \(errno))")
        }
        for (index, mfn) in mfns.enumerated() {
            let page = mmap(base + index * MachineFrame.size, MachineFrame.size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_FIXED, fd, off_t(mfn) * off_t(MachineFrame.size))
            guard page != MAP_FAILED else {
                let code = errno
                munmap(base, size)
                throw .unavailable("cannot map machine frame 0x\(String(mfn, radix: 16)) (errno \(code))")
            }
        }
        return base
    }

    static func platformError(_ error: SimClientError, window: (GFN, Int)?) -> GuestPlatformError {
        switch error {
        case .hypervisor(let errno, let message):
            if let window, errno == .invalid || errno == .notFound { return .windowOutOfRange(firstGFN: window.0, pageCount: window.1) }
            return .hypervisor(errno, message)
        default:
            return .unavailable(error.description)
        }
    }

    package static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    package static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
