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
    /// What this agent did per peer, so it can be undone.
    private var served: [UInt16: Served] = [:]

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
    public init(domain: DomainID, libraries: XenGuestLibraries) throws(XenErrno) {
        self.domain = domain
        self.libraries = libraries
        watchToken = "secure-channel-setup-\(getpid())"
        try libraries.store.watch(XenStoreLayout.setupRoot(domain), token: watchToken)
    }

    deinit {
        try? libraries.store.unwatch(XenStoreLayout.setupRoot(domain), token: watchToken)
        for peer in served.keys { release(peer) }
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
        var names: [String] = []
        do { names = try store.directory(root, transaction: 0) } catch {
            guard error == .noEntry else { throw error }
        }
        let peers = Set(names.compactMap { UInt16($0) })
        var events: [Event] = []
        for peer in served.keys.sorted() where !peers.contains(peer) {
            release(peer)
            events.append(.released(peer: DomainID(rawValue: peer)))
        }
        for peer in peers.sorted() {
            let directory = "\(root)/\(peer)"
            guard let request = try store.readIfPresent("\(directory)/request"),
                  let count = Int(String(decoding: request, as: UTF8.self)), count > 0, count <= 4096 else { continue }
            // Answered already (by this agent, or by another of this guest's).
            if try store.readIfPresent("\(directory)/gfns") != nil { continue }
            // The host asked again: what was done for the old request goes first.
            if served[peer] != nil {
                release(peer)
                events.append(.released(peer: DomainID(rawValue: peer)))
            }
            let remote = DomainID(rawValue: peer)
            do {
                if let grefs = try store.readIfPresent("\(directory)/grefs") {
                    try map(remote, directory: directory, count: count, grefs: grefs)
                    events.append(.mapped(peer: remote, count: count))
                } else {
                    try share(remote, directory: directory, count: count)
                    events.append(.shared(peer: remote, count: count))
                }
            } catch {
                events.append(.failed(peer: remote, "\(error)"))
            }
        }
        return events
    }

    // MARK: The two sides

    private func share(_ peer: DomainID, directory: String, count: Int) throws(XenErrno) {
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
            served[peer.rawValue] = .shared(base: base, count: count, port: bound, events: events)
            XenNotificationPorts.shared.register(events, domain: domain, port: bound)
        } catch {
            if let port { try? events.unbind(port) }
            try? libraries.grantShare.unshare(base, count: count)
            throw error
        }
    }

    private func map(_ peer: DomainID, directory: String, count: Int, grefs: [UInt8]) throws(XenErrno) {
        guard let numbers = XenControl.parseNumbers(grefs), numbers.count == count,
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
                guard libraries.hardware.vmfunc(view) else { throw XenErrno.notPermitted }
                for page in 0..<count { libraries.hardware.touch(base + page * 4096) }
                _ = libraries.hardware.vmfunc(0)
            }
            let gfns = try frames(base, count: count)
            try libraries.store.write("\(directory)/gfns", Self.hex(gfns), transaction: 0)
            served[peer.rawValue] = .mapped(base: base, count: count)
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

    private func release(_ peer: UInt16) {
        switch served.removeValue(forKey: peer) {
        case .shared(let base, let count, let port, let events):
            XenNotificationPorts.shared.remove(domain: domain, port: port)
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
