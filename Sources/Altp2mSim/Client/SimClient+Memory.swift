import Altp2m

/// Domain memory through a ``SimClient``, named after the libxenctrl and
/// libxl calls they stand for (docs/SIMULATOR.md, "Domain memory"). From
/// dom0 `domain` is any domain; from a guest's connection (with its token)
/// it must be the guest itself, as `DOMID_SELF` is in the reservation
/// hypercalls. Hypervisor errors are ``SimClientError/hypervisor(_:message:)``.
extension SimClient {
    /// A domain's memory map and reservation (`domain.memory-map`).
    public struct DomainMemoryMap: Sendable, Equatable {
        /// One E820-like range.
        public struct Range: Sendable, Equatable {
            /// `ram`, `reserved` or `hole`.
            public var type: String
            public var first: GFN
            public var last: GFN
            /// For RAM, how many of its pages are populated now.
            public var populated: Int?
        }

        public var ranges: [Range]
        /// `domain_tot_pages` and `max_pages`.
        public var totPages: UInt64
        public var maxPages: UInt64
        /// `memory/target` and `memory/static-max` in KiB.
        public var targetKiB: UInt64
        public var staticMaxKiB: UInt64
        /// The gfns the balloon driver gave back.
        public var ballooned: [GFN]
    }

    /// What a memory target did (`domain.mem-set`): the balloon driver's
    /// pages out or in, and why it stopped short, if it did.
    public struct BalloonOutcome: Sendable, Equatable {
        public var out: [GFN]
        public var `in`: [GFN]
        public var totPages: UInt64
        public var maxPages: UInt64
        /// The errno the driver met (`E2BIG` past `max_pages`, `ENOMEM` out of pages).
        public var stoppedBy: String?
    }

    /// `xc_domain_setmaxmem(xch, domid, max_memkb)` (`XEN_DOMCTL_max_mem`,
    /// dom0 only): `max_pages` = `max_memkb` / 4.
    /// - Returns: the new `max_pages`.
    @discardableResult
    public func setMaxMem(domain: DomainID, maxKiB: UInt64) throws(SimClientError) -> UInt64 {
        let reply = try call("domain.set-max-mem", ["domain": domain.jsonArgument, "max_kb": .uint(maxKiB)])
        return reply["max_pages"]?.uint64 ?? 0
    }

    /// `xc_domain_populate_physmap_exact(xch, domid, nr, 0, 0, gfns)`:
    /// `XENMEM_populate_physmap` with order-0 extents. All or an error:
    /// `EBUSY` when Xen populated fewer (past `max_pages`; the pages done
    /// stay populated, as they do on Xen).
    /// - Returns: the new pages' machine frames, in order.
    @discardableResult
    public func populatePhysmapExact(domain: DomainID, gfns: [GFN]) throws(SimClientError) -> [MFN] {
        let reply = try call("memory.populate", ["domain": domain.jsonArgument, "gfns": Self.gfnArray(gfns)])
        return FrameMapping.frames(reply["mfns"]).map { MFN($0) }
    }

    /// `xc_domain_decrease_reservation_exact(xch, domid, nr, 0, gfns)`:
    /// `XENMEM_decrease_reservation` with order-0 extents; each page leaves
    /// the host p2m (a view whose remapped range holds it is reset). All or
    /// an error: `EINVAL` when Xen stopped early (a hole, MMIO, a grant
    /// mapping); the pages done stay removed.
    public func decreaseReservationExact(domain: DomainID, gfns: [GFN]) throws(SimClientError) {
        _ = try call("memory.decrease", ["domain": domain.jsonArgument, "gfns": Self.gfnArray(gfns)])
    }

    /// `libxl_set_memory_target(ctx, domid, target_memkb, 0, enforce=1)`,
    /// as `xl mem-set` (dom0 only): `memory/target` is written, `max_pages`
    /// set to the target + 1 MiB, and the guest's balloon driver follows.
    public func setMemoryTarget(domain: DomainID, targetMiB: UInt64) throws(SimClientError) -> BalloonOutcome {
        let r = try call("domain.mem-set", ["domain": domain.jsonArgument, "mib": .uint(targetMiB)])
        return BalloonOutcome(out: FrameMapping.frames(r["ballooned_out"]).map { GFN($0) },
                              in: FrameMapping.frames(r["ballooned_in"]).map { GFN($0) },
                              totPages: r["tot_pages"]?.uint64 ?? 0, maxPages: r["max_pages"]?.uint64 ?? 0,
                              stoppedBy: r["balloon_stopped"]?.string)
    }

    /// The domain's memory map (RAM, reserved ranges, holes) and reservation.
    public func memoryMap(domain: DomainID) throws(SimClientError) -> DomainMemoryMap {
        let r = try call("domain.memory-map", ["domain": domain.jsonArgument])
        let ranges = (r["map"]?.array ?? []).map { range in
            DomainMemoryMap.Range(type: range["type"]?.string ?? "",
                                  first: GFN(FrameMapping.frames(.array([range["first_gfn"] ?? .null])).first ?? 0),
                                  last: GFN(FrameMapping.frames(.array([range["last_gfn"] ?? .null])).first ?? 0),
                                  populated: range["populated"]?.int64.map { Int($0) })
        }
        return DomainMemoryMap(ranges: ranges, totPages: r["tot_pages"]?.uint64 ?? 0, maxPages: r["max_pages"]?.uint64 ?? 0,
                               targetKiB: r["target_kib"]?.uint64 ?? 0, staticMaxKiB: r["static_max_kib"]?.uint64 ?? 0,
                               ballooned: FrameMapping.frames(r["ballooned"]).map { GFN($0) })
    }

    static func gfnArray(_ gfns: [GFN]) -> JSONValue {
        .array(gfns.map { .string("0x" + String($0.rawValue, radix: 16)) })
    }
}

extension DomainID {
    /// The `domain` argument of a request.
    var jsonArgument: JSONValue { .int(Int64(rawValue)) }
}
