import Altp2m

/// A guest domain's memory as its kernel sees it: the memory map the
/// domain was built with (an E820-like list of RAM, reserved ranges and
/// holes), the kernel's choice of pages for gntalloc, and the balloon driver
/// (Linux `drivers/xen/balloon.c`) that follows `memory/target`.
///
/// A pure value: the daemon keeps one per guest domain, and the engine does
/// the hypercalls (`XENMEM_populate_physmap`, `XENMEM_decrease_reservation`).
///
/// Which pages the simulated kernel picks, since no real kernel runs:
/// - gntalloc's `alloc_page(GFP_KERNEL | __GFP_ZERO)` and the balloon
///   driver's `alloc_page(GFP_BALLOON)` take the **highest** populated
///   `p2m_ram_rw` gfn of the domain's RAM that holds no grant share and no
///   vCPU's #VE page. Linux's zone fallback prefers `ZONE_NORMAL` (above
///   4 GiB) to `ZONE_DMA32` and `ZONE_DMA`, so both come from high memory
///   first; which page within a zone depends on the buddy allocator's
///   history, and the simulator fixes that to the highest free page (a
///   deterministic choice, so a replayed journal picks the same pages).
///   Nothing tracks what a guest process wrote there: a test that keeps
///   data in RAM should use low gfns, and a shared page is zeroed.
/// - `balloon_retrieve` gives back the page ballooned out **last** first
///   (the ballooned list is LIFO for the pages the simulator takes).
/// - The balloon driver never gives back a page holding a grant share.
public struct GuestMemory: Sendable, Equatable {
    /// A memory-map range's type (`E820_RAM`, `E820_RESERVED`, or nothing).
    public enum Kind: String, Sendable {
        case ram
        case reserved
        case hole
    }

    /// The RAM the domain was built with (`0..<pages`).
    public let ram: Range<GFN>
    /// Ranges claimed by the simulator itself (the grant module's #VE,
    /// window and backing regions), shown as reserved.
    public let reserved: [Range<GFN>]
    /// `memory/static-max` in KiB: the most `mem-set` may ask for.
    public let staticMaxKiB: UInt64
    /// `memory/target` in KiB: what the balloon driver aims for.
    public var targetKiB: UInt64
    /// Gfns the balloon driver gave back, the most recent last.
    public private(set) var ballooned: [GFN] = []

    public init(ram: Range<GFN>, reserved: [Range<GFN>], staticMaxKiB: UInt64) {
        self.ram = ram
        self.reserved = reserved
        self.staticMaxKiB = staticMaxKiB
        self.targetKiB = staticMaxKiB
    }

    /// The memory map: RAM, reserved ranges and the holes between them, up
    /// to the end of the last reserved range.
    public func memoryMap() -> [(range: Range<GFN>, kind: Kind)] {
        var ranges: [(Range<GFN>, Kind)] = [(ram, .ram)]
        ranges += reserved.map { ($0, Kind.reserved) }
        ranges.sort { $0.0.lowerBound < $1.0.lowerBound }
        var map: [(Range<GFN>, Kind)] = []
        var cursor = GFN(0)
        for (range, kind) in ranges {
            if cursor < range.lowerBound { map.append((cursor..<range.lowerBound, .hole)) }
            map.append((range, kind))
            cursor = max(cursor, range.upperBound)
        }
        return map
    }

    /// Where gntdev's unpopulated pool may claim sections.
    public var placement: UnpopulatedPool.Placement {
        UnpopulatedPool.Placement(ramEnd: ram.upperBound, reserved: reserved)
    }

    /// The kernel's pages in use by its balloon accounting: RAM less what
    /// was ballooned out (`balloon_stats.current_pages`).
    public var currentPages: UInt64 { UInt64(ram.count) - UInt64(ballooned.count) }

    /// `count` pages the kernel allocates, highest first: populated
    /// `p2m_ram_rw` gfns of its RAM not in `excluded`.
    /// - Throws: ``XenErrno/noMemory`` if there are not enough.
    public func allocateKernelPages(_ count: Int, engine: Altp2mEngine, domain: DomainID,
                                    excluded: Set<GFN>) throws(XenErrno) -> [GFN] {
        var picked: [GFN] = []
        var gfn = ram.upperBound
        while picked.count < count && gfn > ram.lowerBound {
            gfn = gfn.advanced(by: -1)
            guard !excluded.contains(gfn), let entry = try engine.entry(domain, .host, gfn: gfn),
                  entry.type == .ramRW, entry.entry.hasValidFrame else { continue }
            picked.append(gfn)
        }
        guard picked.count == count else { throw .noMemory }
        return picked
    }

    /// Records pages the balloon driver gave back.
    mutating func noteBallooned(_ gfns: [GFN]) { ballooned += gfns }

    /// The pages `balloon_increase_reservation` asks for next (the last
    /// ballooned first), and forgets those it got.
    func retrievalOrder(_ count: Int) -> [GFN] { Array(ballooned.suffix(count).reversed()) }

    mutating func noteRetrieved(_ gfns: [GFN]) { ballooned.removeAll { gfns.contains($0) } }
}
