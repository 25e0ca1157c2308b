#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import XenInterface

/// ``GuestPlatform`` for an agent inside a Xen HVM guest, over the guest's
/// Xen libraries (``XenGuestLibraries``): the C libraries and the hardware
/// inside a guest (``init()``), or the simulator's implementation of the
/// same calls (`--backend xen-sim`).
///
/// - `enterView`: the `VMFUNC` instruction (leaf 0). Xen enabled it on every
///   vCPU when the grant module made the channel; a view that is not active
///   and visible raises #UD, which Linux delivers as `SIGILL`: the hardware
///   layer catches that fault at its own instruction and this returns
///   `false`, as the contract says, instead of the process dying.
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
    private let store: any XenStoreLibrary
    private let events: any XenEventChannelLibrary
    private let hardware: any XenGuestHardware
    /// Descriptor port (as in the descriptor) → the port bound here.
    private var localPorts: [UInt32: UInt32] = [:]

    /// Opens xenstore, the event-channel device and `/dev/mem` inside a Xen guest.
    /// - Throws: ``XenBackendError/unavailable(_:)`` outside a Xen guest.
    public convenience init() throws(XenBackendError) {
        guard access("/dev/xen/xenbus", F_OK) == 0 || access("/dev/xen/privcmd", F_OK) == 0 else {
            throw .unavailable("Xen guest interface not available: /dev/xen/xenbus missing; run the agent inside a Xen HVM guest or use the simulator backend")
        }
        try self.init(libraries: try XenGuestLibraries.openInGuest())
    }

    /// Uses the given libraries; reads this guest's domain id from xenstore.
    public init(libraries: XenGuestLibraries) throws(XenBackendError) {
        let raw: [UInt8]
        do { raw = try libraries.store.read("domid", transaction: 0) } catch {
            throw .hypervisor(error, "reading this guest's domid from xenstore")
        }
        let text = String(decoding: raw, as: UTF8.self)
        guard let id = UInt16(text) else { throw .hypervisor(.invalid, "xenstore's domid '\(text)' is not a domain id") }
        domain = DomainID(rawValue: id)
        self.libraries = libraries
        store = libraries.store
        events = libraries.events
        hardware = libraries.hardware
        // The host's wake-up when it revokes a descriptor (docs/XEN.md): a
        // watch on this guest's descriptor directory ends every wait.
        do { try store.watch(XenStoreLayout.descriptorDirectory(domain), token: Self.descriptorWatchToken) } catch {
            throw .hypervisor(error, "watching \(XenStoreLayout.descriptorDirectory(domain)) in xenstore")
        }
    }

    deinit {
        try? store.unwatch(XenStoreLayout.descriptorDirectory(domain), token: Self.descriptorWatchToken)
    }

    static let descriptorWatchToken = "secure-channel-descriptors"

    /// The libraries this platform was made with (the frame-flow agent of
    /// the same process shares them).
    public let libraries: XenGuestLibraries

    // MARK: Views and the window

    public func enterView(_ view: ViewID) -> Bool {
        hardware.vmfunc(view.rawValue)
    }

    public func mapWindow(view: ViewID, firstGFN: GFN, pageCount: Int) throws(GuestPlatformError) -> UnsafeMutableRawPointer {
        guard pageCount > 0, firstGFN.rawValue < (UInt64(1) << 52) else {
            throw .windowOutOfRange(firstGFN: firstGFN, pageCount: pageCount)
        }
        do {
            return try hardware.mapPhysical(firstGFN: firstGFN.rawValue, pageCount: pageCount, view: view.rawValue)
        } catch {
            throw .hypervisor(error, "mapping the window \(firstGFN)+\(pageCount) through /dev/mem")
        }
    }

    public func unmapWindow(_ base: UnsafeMutableRawPointer, pageCount: Int) {
        hardware.unmapPhysical(base, pageCount: pageCount)
    }

    // MARK: Event channels

    /// Binds an unbound port for `remote` to bind to (the initiator, during
    /// the grant flow); the agent reports it in its set-up directory.
    public func bindUnboundPort(remote: DomainID) throws(GuestPlatformError) -> UInt32 {
        let port: UInt32
        do { port = try events.bindUnboundPort(remote: remote) } catch {
            throw .hypervisor(error, "binding an unbound port for \(remote)")
        }
        localPorts[port] = port
        return port
    }

    /// Binds to the peer's port (the responder): afterwards `notify` and
    /// `wait` with the descriptor's port use the local end.
    public func bindInterdomain(remote: DomainID, remotePort: UInt32) throws(GuestPlatformError) {
        do { localPorts[remotePort] = try events.bindInterdomain(remote: remote, remotePort: remotePort) } catch {
            throw .hypervisor(error, "binding to port \(remotePort) of \(remote)")
        }
    }

    public func notify(_ wake: WakeTarget) {
        guard let port = localPorts[wake.port] else { return }
        try? events.notify(port)
    }

    /// Sleeps until a port of this handle fires, the descriptor directory
    /// changes (the host revoked a channel), or the timeout passes.
    public func wait(_ wake: WakeTarget, expected: UInt32, timeoutNanoseconds: UInt64?) {
        guard UnsafeMutableRawPointer(wake.word).load(as: UInt32.self) == expected else { return }
        var pollers = [pollfd(fd: events.fileDescriptor, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: store.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        let timeout = timeoutNanoseconds.map { Int32(min($0 / 1_000_000, UInt64(Int32.max))) } ?? -1
        guard poll(&pollers, 2, timeout) > 0 else { return }
        if pollers[0].revents != 0, let pending = try? events.pending() { try? events.unmask(pending) }
        if pollers[1].revents != 0 { while (try? store.checkWatch()) != nil {} }
    }

    // MARK: Descriptors

    public func descriptorNames() throws(GuestPlatformError) -> [String] {
        let path = XenStoreLayout.descriptorDirectory(domain)
        do { return try store.directory(path, transaction: 0).sorted() } catch {
            if error == .noEntry { return [] }
            throw .hypervisor(error, "listing \(path)")
        }
    }

    public func readDescriptor(named name: String) throws(GuestPlatformError) -> [UInt8] {
        // Nothing is published under a name outside the rule (and such a
        // name could point outside the descriptor directory).
        guard ChannelDescriptor.isValidName(name) else { throw .noDescriptor(name) }
        let path = "\(XenStoreLayout.descriptorDirectory(domain))/\(name)"
        let digits: [UInt8]
        do { digits = try store.read(path, transaction: 0) } catch {
            if error == .noEntry { throw .noDescriptor(name) }
            throw .hypervisor(error, "reading \(path)")
        }
        guard let bytes = HexDigits.decode(digits, upperCase: false) else {
            throw .hypervisor(.invalid, "\(path) is not lower-case hex")
        }
        return bytes
    }
}

extension XenGuestLibraries {
    /// Opens the C libraries and the hardware inside a Xen HVM guest.
    public static func openInGuest() throws(XenBackendError) -> XenGuestLibraries {
        let store: CXenStoreLibrary
        let events: CXenEventChannelLibrary
        let hardware: DevMemGuestHardware
        let share: CXenGrantShareLibrary
        let table: CXenGrantTableLibrary
        do { store = try CXenStoreLibrary() } catch { throw .hypervisor(error, "connecting to xenstore (xs_open)") }
        do { events = try CXenEventChannelLibrary() } catch {
            throw .hypervisor(error, "opening the event-channel device (xenevtchn_open)")
        }
        do { hardware = try DevMemGuestHardware() } catch {
            throw .hypervisor(error, "opening /dev/mem (the agent must run as root)")
        }
        do { share = try CXenGrantShareLibrary() } catch {
            throw .hypervisor(error, "opening the grant-sharing device (xengntshr_open: is the gntalloc module loaded?)")
        }
        do { table = try CXenGrantTableLibrary() } catch {
            throw .hypervisor(error, "opening the grant-mapping device (xengnttab_open: is the gntdev module loaded?)")
        }
        return XenGuestLibraries(store: store, events: events, hardware: hardware, grantShare: share, grantTable: table)
    }
}
