/// How a domain is virtualized. altp2m exists only for HVM (and PVH) guests.
public enum DomainKind: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// A hardware-virtualized guest (HVM or PVH): has a p2m and may use altp2m.
    case hvm
    /// A paravirtualized guest: altp2m operations on it fail with `EOPNOTSUPP`.
    case pv

    public var description: String { rawValue }
}

/// What dom0 can learn about a domain without altp2m calls (`xc_domain_getinfo`
/// plus the name from the store).
public struct DomainInfo: Hashable, Sendable {
    /// The domain's id.
    public var id: DomainID
    /// The domain's name; empty if it has none.
    public var name: String
    /// HVM or PV.
    public var kind: DomainKind
    /// The number of vCPUs (`max_vcpu_id + 1`).
    public var vcpuCount: UInt32
    /// The number of pages the domain currently owns (`tot_pages`).
    public var pageCount: UInt64
    /// Whether the domain is paused by the toolstack.
    public var isPaused: Bool
    /// Whether the domain has crashed.
    public var isCrashed: Bool

    /// Creates a domain description.
    public init(id: DomainID, name: String, kind: DomainKind, vcpuCount: UInt32,
                pageCount: UInt64, isPaused: Bool = false, isCrashed: Bool = false) {
        self.id = id
        self.name = name
        self.kind = kind
        self.vcpuCount = vcpuCount
        self.pageCount = pageCount
        self.isPaused = isPaused
        self.isCrashed = isCrashed
    }
}
