#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import Synchronization
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
/// - `notify` / `wait`: event channels (`/dev/xen/evtchn`), one handle per
///   open channel. The initiator's frame-flow agent binds an unbound port for
///   the peer while it shares the pages; the channel opened in that process
///   uses it, and the responder's process binds to it when it opens the
///   channel (``openNotifications(port:peer:isInitiator:)``).
/// - descriptors: read from xenstore at
///   `/local/domain/<own id>/data/secure-channel/<name>`, hex-decoded.
public final class XenGuestPlatform: GuestPlatform {
    /// This guest's domain id (xenstore's `domid`).
    public let domain: DomainID
    private let store: any XenStoreLibrary
    private let events: any XenEventChannelLibrary
    private let hardware: any XenGuestHardware
    /// Each open channel's port (the one its wake targets carry) and the
    /// event-channel handle that owns it.
    private let channels = Mutex<[UInt32: ChannelPort]>([:])

    final class ChannelPort: @unchecked Sendable {
        // @unchecked: the handle is used by its channel's threads only.
        let events: any XenEventChannelLibrary
        /// Whether this platform bound the port (and unbinds it at close).
        let bindsHere: Bool
        init(_ events: any XenEventChannelLibrary, bindsHere: Bool) {
            self.events = events
            self.bindsHere = bindsHere
        }
    }

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
        do { switching = try ViewSwitching(hardware: libraries.hardware) } catch {
            throw .hypervisor(error, "mapping the guest's view claim table")
        }
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

    /// Through ``ViewSwitching``: the calling thread is pinned to its vCPU
    /// at its first switch and holds its vCPU's claim from the switch into
    /// a view to the return to view 0, so no migration or other thread's
    /// switch can put its window accesses in another view.
    public func enterView(_ view: ViewID) -> Bool {
        if view == .hostOrView0 { return switching.leave() }
        do { try switching.enter(view.rawValue) } catch { return false }
        return true
    }

    /// The view-switching rule of this process's threads.
    public let switching: ViewSwitching

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

    /// The granting side's port (the initiator's) was bound by this
    /// process's frame-flow agent in a handle of its own
    /// (``XenNotificationPorts``): the channel uses that handle. The
    /// responder binds to it (`xenevtchn_bind_interdomain`) in a new handle,
    /// so each channel's waits see only its own events, and a process that
    /// exits leaves the initiator's port unbound for the next (Xen's
    /// `evtchn_close`).
    public func openNotifications(port: UInt32, peer: DomainID, isInitiator: Bool) throws(GuestPlatformError) -> UInt32 {
        if isInitiator {
            guard let events = XenNotificationPorts.shared.handle(domain: domain, port: port) else {
                throw .hypervisor(.noEntry, "port \(port) of \(domain) was bound by another process: open the channel in the process whose frame-flow agent shared its pages (the guest-agent that was running when the channel was created)")
            }
            channels.withLock { $0[port] = ChannelPort(events, bindsHere: false) }
            return port
        }
        let events: any XenEventChannelLibrary
        do { events = try libraries.openEventChannel() } catch {
            throw .hypervisor(error, "opening an event-channel handle (xenevtchn_open)")
        }
        let local: UInt32
        do { local = try events.bindInterdomain(remote: peer, remotePort: port) } catch {
            throw .hypervisor(error, "binding to port \(port) of \(peer) (it must be unbound and waiting for \(domain): is another process of this domain holding the channel?)")
        }
        channels.withLock { $0[local] = ChannelPort(events, bindsHere: true) }
        return local
    }

    public func closeNotifications(port: UInt32) {
        guard let entry = channels.withLock({ $0.removeValue(forKey: port) }) else { return }
        if entry.bindsHere { try? entry.events.unbind(port) }
    }

    /// Only when the peer announced it sleeps (never per message in spin mode).
    public func notify(_ wake: WakeTarget) {
        guard let entry = channels.withLock({ $0[wake.port] }) else { return }
        try? entry.events.notify(wake.port)
    }

    /// Sleeps until the channel's port fires, the descriptor directory
    /// changes (the host revoked a channel), or the timeout passes.
    ///
    /// It does not read `wake.word`: the word is in the window, which only
    /// the channel view maps (a read from view 0 is an access violation,
    /// and with `access_required` Xen crashes the domain). The caller checked
    /// it inside the view after announcing itself; a notify sent since then
    /// left the port pending, so the poll returns at once (the event channel
    /// latches what a futex compare would have seen).
    public func wait(_ wake: WakeTarget, expected: UInt32, timeoutNanoseconds: UInt64?) {
        let timeout = timeoutNanoseconds.map { Int32(min($0 / 1_000_000, UInt64(Int32.max))) } ?? -1
        guard let entry = channels.withLock({ $0[wake.port] }) else {
            // No port (a channel opened without notifications): re-check
            // after the timeout, or at a revocation.
            var poller = pollfd(fd: store.fileDescriptor, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, timeout) > 0 { while (try? store.checkWatch()) != nil {} }
            return
        }
        var pollers = [pollfd(fd: entry.events.fileDescriptor, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: store.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        guard poll(&pollers, 2, timeout) > 0 else { return }
        if pollers[0].revents != 0, let pending = try? entry.events.pending() { try? entry.events.unmask(pending) }
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
        return XenGuestLibraries(store: store, events: events, hardware: hardware, grantShare: share, grantTable: table,
                                 openEventChannel: { () throws(XenErrno) in try CXenEventChannelLibrary() })
    }
}
