#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import XenGuest
import XenInterface

/// The host's half of the agents' frame flow (docs/XEN.md): ask, wait for
/// the agents' reports in xenstore, hand the grant references over.
extension XenControl {
    public func obtainSharedFrames(between first: DomainID, and second: DomainID,
                                   count: Int) throws(XenErrno) -> SharedFrames {
        try obtainSharedFrames(between: first, and: second, count: count, views: nil)
    }

    public func obtainSharedFrames(between first: DomainID, and second: DomainID, count: Int,
                                   views: (first: ViewID, second: ViewID)) throws(XenErrno) -> SharedFrames {
        try obtainSharedFrames(between: first, and: second, count: count, views: Optional(views))
    }

    private func obtainSharedFrames(between first: DomainID, and second: DomainID, count: Int,
                                    views: (first: ViewID, second: ViewID)?) throws(XenErrno) -> SharedFrames {
        // A set-up directory of its own on each side: the frames of the
        // pair's other channels stay as they are.
        let setup = try newSetupName(first, second)
        let granting = XenStoreLayout.setupDirectory(first, peer: second, setup: setup)
        let mapping = XenStoreLayout.setupDirectory(second, peer: first, setup: setup)
        do throws(XenErrno) {
            if let views {
                // Each agent's channel view (the mapping agent primes its own).
                try store.write("\(granting)/view", Array(String(views.first.rawValue).utf8), transaction: 0)
                try store.write("\(mapping)/view", Array(String(views.second.rawValue).utf8), transaction: 0)
            }
            try store.write("\(granting)/request", Array(String(count).utf8), transaction: 0)
            let deadline = monotonicMilliseconds() + UInt64(frameReportTimeoutMilliseconds)
            // 1. The granting agent grants `count` of its pages to the peer and
            //    reports its gfns, the grant references and its unbound port.
            let (firstGFNs, grants) = try waitForReport(granting, of: first, count: count, deadline: deadline,
                                                        withGrants: true)
            // 2. The host hands the references to the mapping side, whose agent
            //    maps them and reports where.
            try store.write("\(mapping)/grefs", Array(grants.map { String($0, radix: 16) }.joined(separator: " ").utf8),
                            transaction: 0)
            try store.write("\(mapping)/request", Array(String(count).utf8), transaction: 0)
            let (secondGFNs, _) = try waitForReport(mapping, of: second, count: count, deadline: deadline,
                                                    withGrants: false)
            lastSetup = (first, second, setup)
            return SharedFrames(first: first, second: second, firstGFNs: firstGFNs.map { GFN($0) },
                                secondGFNs: secondGFNs.map { GFN($0) })
        } catch {
            // The agents, watching, undo what they did for this set-up.
            try? store.removeIfPresent(granting)
            try? store.removeIfPresent(mapping)
            throw error
        }
    }

    /// A set-up name not in use for the pair: eight hex digits.
    private func newSetupName(_ first: DomainID, _ second: DomainID) throws(XenErrno) -> String {
        let taken = try Set(store.directoryIfPresent(XenStoreLayout.peerSetupDirectory(first, peer: second)))
            .union(store.directoryIfPresent(XenStoreLayout.peerSetupDirectory(second, peer: first)))
        while true {
            let name = String(UInt32.random(in: 1...UInt32.max), radix: 16)
            if !taken.contains(name) { return name }
        }
    }

    /// The set-up name under which `first` reported `gfns` for `second`.
    func setupName(_ first: DomainID, _ second: DomainID, gfns: [GFN]) throws(XenErrno) -> String? {
        let peerDirectory = XenStoreLayout.peerSetupDirectory(first, peer: second)
        for name in try store.directoryIfPresent(peerDirectory) {
            let reported = try store.readIfPresent("\(peerDirectory)/\(name)/gfns").flatMap(XenStoreLayout.parseNumbers)
            if reported == gfns.map(\.rawValue) { return name }
        }
        return nil
    }

    /// Waits for `agent`'s report in `directory`, woken by a xenstore watch
    /// on it (no polling), telling ``frameFlowProgress`` every two seconds
    /// whom it waits for, and naming the agent that did not answer if the
    /// deadline passes.
    private func waitForReport(_ directory: String, of agent: DomainID, count: Int, deadline: UInt64,
                               withGrants: Bool) throws(XenErrno) -> ([UInt64], [UInt64]) {
        let token = "secure-channel-frame-flow-\(getpid())"
        try store.watch(directory, token: token)
        defer { try? store.unwatch(directory, token: token) }
        let started = monotonicMilliseconds()
        var nextProgress = started + 2_000
        let ms = frameReportTimeoutMilliseconds
        let limit = ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
        let what = withGrants ? "share \(count) pages" : "map \(count) granted pages"
        while true {
            if let gfns = try store.readIfPresent("\(directory)/gfns").flatMap(XenStoreLayout.parseNumbers) {
                guard gfns.count == count else { throw .invalid }
                guard withGrants else { return (gfns, []) }
                if let grants = try store.readIfPresent("\(directory)/grefs").flatMap(XenStoreLayout.parseNumbers) {
                    guard grants.count == count else { throw .invalid }
                    return (gfns, grants)
                }
            }
            let now = monotonicMilliseconds()
            guard now < deadline else {
                frameFlowProgress?("the agent of \(describe(agent)) did not \(what) within \(limit): start guest-agent in that guest with the Xen backend (it answers the frame flow at \(directory)) and create the channel again")
                throw .tryAgain
            }
            if now >= nextProgress {
                frameFlowProgress?("waiting for the agent of \(describe(agent)) to \(what) (\((now - started) / 1000) s of \(limit))")
                nextProgress = now + 2_000
            }
            var poller = pollfd(fd: store.fileDescriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, Int32(clamping: min(deadline, nextProgress) - now))
            while try store.checkWatch() != nil {}
        }
    }

    /// A domain as `name (id)` for messages (its id alone if it is gone).
    private func describe(_ domain: DomainID) -> String {
        guard let name = (try? listDomains())?.first(where: { $0.id == domain })?.name else { return "\(domain)" }
        return "\(name) (\(domain))"
    }

    /// The mapping side (`second`) unmaps its grant mappings, a drop that
    /// resets a view whose remapped range holds them, for good: `change_gfn`
    /// cannot reach a `p2m_grant_map_rw` entry the view lacks
    /// (`altp2m_get_effective_entry`). The granting side's pages stay its RAM
    /// when the grant ends (`gnttab_end_foreign_access`).
    public func releaseEffect(on domain: DomainID, of frames: SharedFrames) -> FrameReleaseEffect {
        domain == frames.second ? .unrepairableReset : .none
    }

    public func releaseSharedFrames(_ frames: SharedFrames) throws(XenErrno) {
        let zeros = [UInt8](repeating: 0, count: 4096)
        let live = Set(try listDomains().map(\.id))
        let (domain, gfns) = live.contains(frames.first) ? (frames.first, frames.firstGFNs) : (frames.second, frames.secondGFNs)
        if live.contains(domain) {
            for gfn in gfns { try writeGuestMemory(domain, gfn: gfn, offset: 0, bytes: zeros) }
        }
        // Removing the channel's set-up directories tells the agents
        // (through their watches) to unmap the grants and end the grant
        // access; the pair's other set-ups stay.
        guard let setup = try setupName(frames.first, frames.second, gfns: frames.firstGFNs) else { return }
        try store.removeIfPresent(XenStoreLayout.setupDirectory(frames.first, peer: frames.second, setup: setup))
        try store.removeIfPresent(XenStoreLayout.setupDirectory(frames.second, peer: frames.first, setup: setup))
    }
}
