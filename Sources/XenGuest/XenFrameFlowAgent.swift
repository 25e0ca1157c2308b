#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import XenInterface

/// The agent's half of the frame flow (docs/XEN.md, "The frame flow"): it
/// watches its domain's set-up directories and answers the host.
///
/// - The granting side (a directory with `request` and no `grefs`) shares
///   `N` pages with the peer (`xengntshr_share_pages`), binds an unbound
///   event channel for it in an event-channel handle of its own (which a
///   channel opened in this process then uses: ``XenNotificationPorts``),
///   and reports `grefs`, `port` and, last, `gfns`
///   (from `/proc/self/pagemap`) in one xenstore transaction.
/// - The mapping side (`grefs` and `request`) maps the peer's grants
///   (`xengnttab_map_domain_grant_refs`), enters its channel view (`view`),
///   touches each page so the view gets an entry for it (on Xen 4.17
///   `change_gfn` accepts, for a gfn the view lacks, only a `p2m_ram_rw`
///   host entry, and grant mappings are `p2m_grant_map_rw`; a guest access
///   copies any type), returns to view 0 and reports `gfns`.
/// - A directory that disappears (the host released the frames, or tore the
///   channel down) is undone: the mapping side unmaps, the granting side
///   unbinds its port and ends the grants.
///
/// Driven by a xenstore watch on the set-up root, never by polling. One
/// thread calls it.
public final class XenFrameFlowAgent {
    /// This guest's domain.
    public let domain: DomainID
    private let libraries: XenGuestLibraries
    private let watchToken: String
    /// What this agent did per set-up directory, so it can be undone.
    private var served: [SetupKey: Served] = [:]

    /// A set-up directory: `<setup root>/<peer>/<name>`.
    private struct SetupKey: Hashable, Comparable {
        let peer: UInt16
        let name: String
        static func < (a: SetupKey, b: SetupKey) -> Bool { (a.peer, a.name) < (b.peer, b.name) }
    }

    private enum Served {
        case shared(base: UnsafeMutableRawPointer, count: Int, port: UInt32, events: any XenEventChannelLibrary)
        case mapped(base: UnsafeMutableRawPointer, count: Int)
    }

    /// What happened to one set-up request.
    public enum Event: Equatable, Sendable {
        case shared(peer: DomainID, count: Int)
        case mapped(peer: DomainID, count: Int)
        case released(peer: DomainID)
        case failed(peer: DomainID, String)
    }

    /// Starts watching `domain`'s set-up root.
    /// The view-switching rule (the priming read visits the channel view).
    private let switching: ViewSwitching

    public init(domain: DomainID, libraries: XenGuestLibraries) throws(XenErrno) {
        self.domain = domain
        self.libraries = libraries
        switching = try ViewSwitching(hardware: libraries.hardware)
        watchToken = "secure-channel-setup-\(getpid())"
        try libraries.store.watch(XenStoreLayout.setupRoot(domain), token: watchToken)
    }

    deinit {
        try? libraries.store.unwatch(XenStoreLayout.setupRoot(domain), token: watchToken)
        for key in served.keys { release(key) }
    }

    /// Waits at most `timeoutMilliseconds` for the watch to fire, then
    /// brings every set-up directory up to date.
    /// - Returns: what it did (empty when nothing was asked).
    public func serve(timeoutMilliseconds: Int32) throws(XenErrno) -> [Event] {
        var poller = pollfd(fd: libraries.store.fileDescriptor, events: Int16(POLLIN), revents: 0)
        _ = poll(&poller, 1, timeoutMilliseconds)
        var fired = false
        while let event = try libraries.store.checkWatch() {
            if event.token == watchToken { fired = true }
        }
        // A watch fires once when it is set, so the first call reconciles too.
        return fired ? try reconcile() : []
    }

    /// Answers every request not answered yet and undoes what belongs to
    /// directories that are gone.
    public func reconcile() throws(XenErrno) -> [Event] {
        let store = libraries.store
        let root = XenStoreLayout.setupRoot(domain)
        var present: Set<SetupKey> = []
        for peer in try store.directoryIfPresent(root).compactMap({ UInt16($0) }) {
            for name in try store.directoryIfPresent("\(root)/\(peer)") {
                present.insert(SetupKey(peer: peer, name: name))
            }
        }
        var events: [Event] = []
        for key in served.keys.sorted() where !present.contains(key) {
            release(key)
            events.append(.released(peer: DomainID(rawValue: key.peer)))
        }
        for key in present.sorted() {
            let directory = "\(root)/\(key.peer)/\(key.name)"
            guard let request = try store.readIfPresent("\(directory)/request"),
                  let count = Int(String(decoding: request, as: UTF8.self)), count > 0, count <= 4096 else { continue }
            // Answered already (by this agent, or by another of this guest's).
            if try store.readIfPresent("\(directory)/gfns") != nil { continue }
            // The host asked again: what was done for the old request goes first.
            if served[key] != nil {
                release(key)
                events.append(.released(peer: DomainID(rawValue: key.peer)))
            }
            let remote = DomainID(rawValue: key.peer)
            do {
                if let grefs = try store.readIfPresent("\(directory)/grefs") {
                    served[key] = try map(remote, directory: directory, count: count, grefs: grefs)
                    events.append(.mapped(peer: remote, count: count))
                } else {
                    served[key] = try share(remote, directory: directory, count: count)
                    events.append(.shared(peer: remote, count: count))
                }
            } catch {
                events.append(.failed(peer: remote, "\(error)"))
            }
        }
        return events
    }

    // MARK: The two sides

    private func share(_ peer: DomainID, directory: String, count: Int) throws(XenErrno) -> Served {
        let (refs, base) = try libraries.grantShare.sharePages(with: peer, count: count, writable: true)
        var port: UInt32?
        // A handle of its own for the channel's port: the channel opened in
        // this process waits on it alone (XenNotificationPorts).
        let events: any XenEventChannelLibrary
        do { events = try libraries.openEventChannel() } catch {
            try? libraries.grantShare.unshare(base, count: count)
            throw error
        }
        do throws(XenErrno) {
            let gfns = try frames(base, count: count)
            let bound = try events.bindUnboundPort(remote: peer)
            port = bound
            try libraries.store.withTransaction { (transaction) throws(XenErrno) in
                try libraries.store.write("\(directory)/grefs", Self.hex(refs.map(UInt64.init)), transaction: transaction)
                try libraries.store.write("\(directory)/port", Self.hex([UInt64(bound)]), transaction: transaction)
                try libraries.store.write("\(directory)/gfns", Self.hex(gfns), transaction: transaction)
            }
            XenNotificationPorts.shared.register(events, domain: domain, port: bound)
            return .shared(base: base, count: count, port: bound, events: events)
        } catch {
            if let port { try? events.unbind(port) }
            try? libraries.grantShare.unshare(base, count: count)
            throw error
        }
    }

    private func map(_ peer: DomainID, directory: String, count: Int, grefs: [UInt8]) throws(XenErrno) -> Served {
        guard let numbers = XenStoreLayout.parseNumbers(grefs), numbers.count == count,
              numbers.allSatisfy({ $0 <= UInt64(UInt32.max) }) else { throw .invalid }
        let view = try libraries.store.readIfPresent("\(directory)/view")
            .map { (bytes) throws(XenErrno) -> UInt16 in
                guard let view = UInt16(String(decoding: bytes, as: UTF8.self)) else { throw .invalid }
                return view
            }
        let base = try libraries.grantTable.mapGrantRefs(domain: peer, refs: numbers.map { UInt32($0) }, writable: true)
        do throws(XenErrno) {
            if let view, view != 0 {
                // Enter, touch every page, leave: nothing else runs on the
                // way, and no window exists yet (the view is empty).
                // Through ViewSwitching, as every view visit of the guest.
                do { try switching.enter(view) } catch { throw XenErrno.notPermitted }
                for page in 0..<count { libraries.hardware.touch(base + page * 4096) }
                switching.leave()
            }
            let gfns = try frames(base, count: count)
            try libraries.store.write("\(directory)/gfns", Self.hex(gfns), transaction: 0)
            return .mapped(base: base, count: count)
        } catch {
            try? libraries.grantTable.unmap(base, count: count)
            throw error
        }
    }

    private func frames(_ base: UnsafeMutableRawPointer, count: Int) throws(XenErrno) -> [UInt64] {
        var gfns: [UInt64] = []
        gfns.reserveCapacity(count)
        for page in 0..<count { gfns.append(try libraries.hardware.guestFrame(of: base + page * 4096)) }
        return gfns
    }

    private func release(_ key: SetupKey) {
        switch served.removeValue(forKey: key) {
        case .shared(let base, let count, let port, let events):
            XenNotificationPorts.shared.remove(events, domain: domain, port: port)
            try? events.unbind(port)
            try? libraries.grantShare.unshare(base, count: count)
        case .mapped(let base, let count):
            try? libraries.grantTable.unmap(base, count: count)
        case nil:
            break
        }
    }

    private static func hex(_ numbers: [UInt64]) -> [UInt8] {
        Array(numbers.map { String($0, radix: 16) }.joined(separator: " ").utf8)
    }
}
