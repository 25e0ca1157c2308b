import Altp2m
import Synchronization

/// The simulator's `/proc/self/pagemap`: which gfn of this process's domain
/// backs each page the simulated grant drivers mapped here. The kernel
/// knows this for every mapping; the simulator records it for the mappings
/// it makes (grant shares and grant mappings), which are the ones the frame
/// flow asks about.
final class SimGuestMappings: Sendable {
    static let shared = SimGuestMappings()

    private struct Range {
        var base: UInt
        var gfns: [UInt64]
    }

    private let ranges = Mutex<[Range]>([])

    func record(_ base: UnsafeMutableRawPointer, gfns: [UInt64]) {
        ranges.withLock { $0.append(Range(base: UInt(bitPattern: base), gfns: gfns)) }
    }

    func forget(_ base: UnsafeMutableRawPointer) {
        let address = UInt(bitPattern: base)
        ranges.withLock { $0.removeAll { $0.base == address } }
    }

    /// The gfn behind the page holding `address`, nil when the simulator
    /// did not map it.
    func gfn(of address: UnsafeRawPointer) -> UInt64? {
        let value = UInt(bitPattern: address)
        return ranges.withLock { list in
            for range in list where value >= range.base && value < range.base + UInt(range.gfns.count) * 4096 {
                return range.gfns[Int((value - range.base) / 4096)]
            }
            return nil
        }
    }
}
