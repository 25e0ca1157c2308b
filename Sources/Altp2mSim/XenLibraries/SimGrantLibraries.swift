import Altp2m
import XenInterface

/// ``XenGrantShareLibrary`` on the simulator's grant tables, through a
/// ``SimGrantShare`` handle (the gntalloc driver): what it shares ends when
/// the process does. Each share's gfns go to ``SimGuestMappings``, the
/// simulator's `/proc/self/pagemap`.
public final class SimGrantShareLibrary: XenGrantShareLibrary {
    public let handle: SimGrantShare
    private var shares: [UnsafeMutableRawPointer: SimGrantShare.Share] = [:]

    /// `xengntshr_open` as the guest whose `token` is given.
    public init(stateDirectory: StateDirectory, token: String) throws(SimClientError) {
        handle = try SimGrantShare(stateDirectory: stateDirectory, token: token)
    }

    public func sharePages(with domain: DomainID, count: Int, writable: Bool) throws(XenErrno)
        -> (refs: [UInt32], base: UnsafeMutableRawPointer) {
        let share = try asErrno { () throws(SimClientError) in
            try handle.sharePages(with: domain, count: count, writable: writable)
        }
        shares[share.pointer] = share
        SimGuestMappings.shared.record(share.pointer, gfns: share.gfns.map(\.rawValue))
        return (share.refs, share.pointer)
    }

    public func unshare(_ base: UnsafeMutableRawPointer, count: Int) throws(XenErrno) {
        guard let share = shares.removeValue(forKey: base), share.count == count else { throw .invalid }
        SimGuestMappings.shared.forget(base)
        _ = try asErrno { () throws(SimClientError) in try handle.unshare(share) }
    }
}

/// ``XenGrantTableLibrary`` on the simulator's grant tables, through a
/// ``SimGrantTable`` handle (the gntdev driver).
public final class SimGrantTableLibrary: XenGrantTableLibrary {
    public let handle: SimGrantTable
    private var mappings: [UnsafeMutableRawPointer: SimGrantTable.Mapping] = [:]

    /// `xengnttab_open` as the guest whose `token` is given.
    public init(stateDirectory: StateDirectory, token: String) throws(SimClientError) {
        handle = try SimGrantTable(stateDirectory: stateDirectory, token: token)
    }

    public func mapGrantRefs(domain: DomainID, refs: [UInt32], writable: Bool) throws(XenErrno) -> UnsafeMutableRawPointer {
        let mapping = try asErrno { () throws(SimClientError) in
            try handle.mapGrantRefs(domain: domain, refs: refs, writable: writable)
        }
        mappings[mapping.pointer] = mapping
        SimGuestMappings.shared.record(mapping.pointer, gfns: mapping.gfns.map(\.rawValue))
        return mapping.pointer
    }

    public func unmap(_ base: UnsafeMutableRawPointer, count: Int) throws(XenErrno) {
        guard let mapping = mappings.removeValue(forKey: base), mapping.count == count else { throw .invalid }
        SimGuestMappings.shared.forget(base)
        try asErrno { () throws(SimClientError) in try handle.unmap(mapping) }
    }
}
