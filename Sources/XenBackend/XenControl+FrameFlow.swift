#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
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
        let granting = XenStoreLayout.setupDirectory(first, peer: second)
        let mapping = XenStoreLayout.setupDirectory(second, peer: first)
        try store.removeIfPresent(granting)
        try store.removeIfPresent(mapping)
        if let views {
            // Each agent's channel view (the mapping agent primes its own).
            try store.write("\(granting)/view", Array(String(views.first.rawValue).utf8), transaction: 0)
            try store.write("\(mapping)/view", Array(String(views.second.rawValue).utf8), transaction: 0)
        }
        try store.write("\(granting)/request", Array(String(count).utf8), transaction: 0)
        let deadline = monotonicMilliseconds() + UInt64(frameReportTimeoutMilliseconds)
        // 1. The granting agent grants `count` of its pages to the peer and
        //    reports its gfns, the grant references and its unbound port.
        let (firstGFNs, grants) = try waitForReport(granting, count: count, deadline: deadline, withGrants: true)
        // 2. The host hands the references to the mapping side, whose agent
        //    maps them and reports where.
        try store.write("\(mapping)/grefs", Array(grants.map { String($0, radix: 16) }.joined(separator: " ").utf8),
                        transaction: 0)
        try store.write("\(mapping)/request", Array(String(count).utf8), transaction: 0)
        let (secondGFNs, _) = try waitForReport(mapping, count: count, deadline: deadline, withGrants: false)
        return SharedFrames(first: first, second: second, firstGFNs: firstGFNs.map { GFN($0) },
                            secondGFNs: secondGFNs.map { GFN($0) })
    }

    private func waitForReport(_ directory: String, count: Int, deadline: UInt64,
                               withGrants: Bool) throws(XenErrno) -> ([UInt64], [UInt64]) {
        while true {
            if let gfns = try store.readIfPresent("\(directory)/gfns").flatMap(Self.parseNumbers) {
                guard gfns.count == count else { throw .invalid }
                guard withGrants else { return (gfns, []) }
                if let grants = try store.readIfPresent("\(directory)/grefs").flatMap(Self.parseNumbers) {
                    guard grants.count == count else { throw .invalid }
                    return (gfns, grants)
                }
            }
            guard monotonicMilliseconds() < deadline else { throw .tryAgain }
            usleep(20_000)
        }
    }

    public func releaseSharedFrames(_ frames: SharedFrames) throws(XenErrno) {
        let zeros = [UInt8](repeating: 0, count: 4096)
        let live = Set(try listDomains().map(\.id))
        let (domain, gfns) = live.contains(frames.first) ? (frames.first, frames.firstGFNs) : (frames.second, frames.secondGFNs)
        if live.contains(domain) {
            for gfn in gfns { try writeGuestMemory(domain, gfn: gfn, offset: 0, bytes: zeros) }
        }
        // Removing the set-up directories tells the agents (through their
        // watches) to unmap the grants and end the grant access.
        try store.removeIfPresent(XenStoreLayout.setupDirectory(frames.first, peer: frames.second))
        try store.removeIfPresent(XenStoreLayout.setupDirectory(frames.second, peer: frames.first))
    }
}
