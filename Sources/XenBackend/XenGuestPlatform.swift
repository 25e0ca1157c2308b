#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
internal import CPlatform
internal import CXen

/// ``GuestPlatform`` for an agent inside a Xen HVM guest.
///
/// - `enterView`: the `VMFUNC` instruction (leaf 0). Xen enabled it on every
///   vCPU when the grant module made the channel; a view that is not active
///   and visible raises #UD, which Linux delivers as `SIGILL`, so this never
///   returns `false`: enter only the view the descriptor names.
/// - `mapWindow`: the window is a hole in the guest's memory map, so the
///   kernel lets root map it through `/dev/mem` even with `STRICT_DEVMEM`
///   (which guards only RAM).
/// - `notify` / `wait`: event channels (`/dev/xen/evtchn`). The initiator
///   binds an unbound port for its peer during the grant flow
///   (``bindUnboundPort(remote:)``); the responder binds to it
///   (``bindInterdomain(remote:remotePort:)``).
/// - descriptors: read from xenstore at
///   `/local/domain/<own id>/data/secure-channel/<name>`, hex-decoded.
public final class XenGuestPlatform: GuestPlatform {
    /// This guest's domain id (xenstore's `domid`).
    public let domain: DomainID
    private let xsh: OpaquePointer
    private let events: OpaquePointer
    private let memory: Int32
    /// Descriptor port (as in the descriptor) → the port bound here.
    private var localPorts: [UInt32: UInt32] = [:]

    /// Opens xenstore, the event-channel device and `/dev/mem`.
    /// - Throws: ``XenBackendError/unavailable(_:)`` outside a Xen guest.
    public init() throws(XenBackendError) {
        guard access("/dev/xen/xenbus", F_OK) == 0 || access("/dev/xen/privcmd", F_OK) == 0 else {
            throw .unavailable("Xen guest interface not available: /dev/xen/xenbus missing; run the agent inside a Xen HVM guest or use the simulator backend")
        }
        guard let xsh = xs_open(0) else { throw .hypervisor(currentXenErrno(), "connecting to xenstore (xs_open)") }
        var length: UInt32 = 0
        guard let raw = xs_read(xsh, 0, "domid", &length) else {
            xs_close(xsh)
            throw .hypervisor(currentXenErrno(), "reading this guest's domid from xenstore")
        }
        let text = String(decoding: UnsafeRawBufferPointer(start: raw, count: Int(length)), as: UTF8.self)
        free(raw)
        guard let id = UInt16(text) else {
            xs_close(xsh)
            throw .hypervisor(.invalid, "xenstore's domid '\(text)' is not a domain id")
        }
        guard let events = xenevtchn_open(nil, 0) else {
            xs_close(xsh)
            throw .hypervisor(currentXenErrno(), "opening the event-channel device (xenevtchn_open)")
        }
        let memory = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC)
        guard memory >= 0 else {
            let errno = currentXenErrno()
            xenevtchn_close(events)
            xs_close(xsh)
            throw .hypervisor(errno, "opening /dev/mem (the agent must run as root)")
        }
        self.domain = DomainID(rawValue: id)
        self.xsh = xsh
        self.events = events
        self.memory = memory
    }

    deinit {
        close(memory)
        xenevtchn_close(events)
        xs_close(xsh)
    }

    // MARK: Views and the window

    public func enterView(_ view: ViewID) -> Bool {
        cplatform_vmfunc_switch_view(UInt32(view.rawValue))
        return true
    }

    public func mapWindow(view: ViewID, firstGFN: GFN, pageCount: Int) throws(GuestPlatformError) -> UnsafeMutableRawPointer {
        guard pageCount > 0, firstGFN.rawValue < (UInt64(1) << 52) else {
            throw .windowOutOfRange(firstGFN: firstGFN, pageCount: pageCount)
        }
        let mapping = mmap(nil, pageCount * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memory, off_t(firstGFN.address()))
        guard let mapping, mapping != MAP_FAILED else {
            throw .hypervisor(currentXenErrno(), "mapping the window \(firstGFN)+\(pageCount) through /dev/mem")
        }
        return mapping
    }

    public func unmapWindow(_ base: UnsafeMutableRawPointer, pageCount: Int) {
        munmap(base, pageCount * 4096)
    }

    // MARK: Event channels

    /// Binds an unbound port for `remote` to bind to (the initiator, during
    /// the grant flow); the agent reports it in its set-up directory.
    public func bindUnboundPort(remote: DomainID) throws(GuestPlatformError) -> UInt32 {
        let port = xenevtchn_bind_unbound_port(events, UInt32(remote.rawValue))
        guard port >= 0 else { throw .hypervisor(currentXenErrno(), "binding an unbound port for \(remote)") }
        localPorts[UInt32(port)] = UInt32(port)
        return UInt32(port)
    }

    /// Binds to the peer's port (the responder): afterwards `notify` and
    /// `wait` with the descriptor's port use the local end.
    public func bindInterdomain(remote: DomainID, remotePort: UInt32) throws(GuestPlatformError) {
        let port = xenevtchn_bind_interdomain(events, UInt32(remote.rawValue), remotePort)
        guard port >= 0 else {
            throw .hypervisor(currentXenErrno(), "binding to port \(remotePort) of \(remote)")
        }
        localPorts[remotePort] = UInt32(port)
    }

    public func notify(_ wake: WakeTarget) {
        guard let port = localPorts[wake.port] else { return }
        _ = xenevtchn_notify(events, port)
    }

    public func wait(_ wake: WakeTarget, expected: UInt32, timeoutNanoseconds: UInt64?) {
        guard UnsafeMutableRawPointer(wake.word).load(as: UInt32.self) == expected else { return }
        var poller = pollfd(fd: xenevtchn_fd(events), events: Int16(POLLIN), revents: 0)
        let timeout = timeoutNanoseconds.map { Int32(min($0 / 1_000_000, UInt64(Int32.max))) } ?? -1
        guard poll(&poller, 1, timeout) > 0 else { return }
        let pending = xenevtchn_pending(events)
        if pending >= 0 { _ = xenevtchn_unmask(events, UInt32(pending)) }
    }

    // MARK: Descriptors

    public func descriptorNames() throws(GuestPlatformError) -> [String] {
        var count: UInt32 = 0
        let path = XenStoreLayout.descriptorDirectory(domain)
        guard let list = xs_directory(xsh, 0, path, &count) else {
            if errnoValue() == ENOENT { return [] }
            throw .hypervisor(currentXenErrno(), "listing \(path)")
        }
        defer { free(list) }
        return (0..<Int(count)).compactMap { list[$0].map { String(cString: $0) } }.sorted()
    }

    public func readDescriptor(named name: String) throws(GuestPlatformError) -> [UInt8] {
        // Nothing is published under a name outside the rule (and such a
        // name could point outside the descriptor directory).
        guard ChannelDescriptor.isValidName(name) else { throw .noDescriptor(name) }
        let path = "\(XenStoreLayout.descriptorDirectory(domain))/\(name)"
        var length: UInt32 = 0
        guard let raw = xs_read(xsh, 0, path, &length) else {
            if errnoValue() == ENOENT { throw .noDescriptor(name) }
            throw .hypervisor(currentXenErrno(), "reading \(path)")
        }
        defer { free(raw) }
        let digits = UnsafeRawBufferPointer(start: raw, count: Int(length))
        guard digits.count % 2 == 0 else { throw .hypervisor(.invalid, "\(path) is not hex") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = Self.nibble(digits[index]), let low = Self.nibble(digits[index + 1]) else {
                throw .hypervisor(.invalid, "\(path) is not hex")
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
