import Altp2m
import CPlatform
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Event-channel words shared by every guest of one simulator: per domain,
/// a state word and 63 port counters in shared memory, waited on with a futex.
///
/// This is the simulator's stand-in for Xen event channels until the grant
/// module binds real ones: a notifier increments the target's port counter
/// and wakes its waiters; a waiter sleeps while the counter still holds the
/// value it last saw. When a domain crashes or is destroyed the daemon bumps
/// every port of every domain, so a peer blocked on a dead domain wakes up
/// and can check ``state(of:)``.
public final class SimEventWords: @unchecked Sendable {
    // @unchecked: the words are atomics in shared memory, meant to be used
    // from many threads and processes at once; the mapping is immutable.

    /// A domain's state as its state word says.
    public enum DomainState: UInt32, Sendable {
        case none = 0, running = 1, crashed = 2, destroyed = 3
    }

    private let base: UnsafeMutableRawPointer
    private let mapping: SharedFileMapping?

    /// Words in the simulator's shared `events` file (a guest process gets it at attach).
    init(mapping: SharedFileMapping) {
        self.mapping = mapping
        base = mapping.base
    }

    /// Private words for in-process use (tests and examples with no daemon):
    /// share one instance between the guests that should see each other.
    public init() throws(SystemCallError) {
        let size = EventWordLayout.fileSize
        let pointer = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let pointer, pointer != MAP_FAILED else { throw SystemCallError("mmap (event words)") }
        base = pointer
        mapping = nil
    }

    deinit {
        if mapping == nil { munmap(base, EventWordLayout.fileSize) }
    }

    private func word(_ domain: DomainID, _ index: UInt32) -> UnsafeMutablePointer<Atomic<UInt32>>? {
        guard Int(domain.rawValue) < EventWordLayout.domainLimit, index <= EventWordLayout.portsPerDomain else { return nil }
        return (base + EventWordLayout.offset(domain: domain, word: index)).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// The current counter of a port (1...63); 0 for a port that does not exist.
    public func counter(domain: DomainID, port: UInt32) -> UInt32 {
        guard port >= 1, let word = word(domain, port) else { return 0 }
        return word.pointee.load(ordering: .acquiring)
    }

    /// Signals a port of `domain`: increments its counter and wakes its waiters.
    /// - Returns: false for a port outside 1...63 or a domain id without a block.
    @discardableResult
    public func notify(domain: DomainID, port: UInt32) -> Bool {
        guard port >= 1, let word = word(domain, port) else { return false }
        _ = word.pointee.wrappingAdd(1, ordering: .releasing)
        _ = cplatform_futex_wake(UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self), Int32.max)
        return true
    }

    /// Sleeps while the port's counter equals `seen` (the value from
    /// ``counter(domain:port:)``), at most `timeoutNanoseconds` (nil: no limit).
    /// - Returns: the counter after waking; equal to `seen` on a timeout.
    public func wait(domain: DomainID, port: UInt32, seen: UInt32, timeoutNanoseconds: Int64?) -> UInt32 {
        guard port >= 1, let word = word(domain, port) else { return seen }
        let raw = UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self)
        var remaining = timeoutNanoseconds ?? -1
        while word.pointee.load(ordering: .acquiring) == seen {
            let start = cplatform_monotonic_ns()
            let rc = cplatform_futex_wait(raw, seen, remaining)
            if rc != 0 && errno == ETIMEDOUT { break }
            if remaining >= 0 {
                remaining -= Int64(cplatform_monotonic_ns() - start)
                if remaining <= 0 { break }
            }
        }
        return word.pointee.load(ordering: .acquiring)
    }

    /// A domain's state word (what the daemon last set).
    public func state(of domain: DomainID) -> DomainState {
        guard let word = word(domain, 0) else { return .none }
        return DomainState(rawValue: word.pointee.load(ordering: .acquiring)) ?? .none
    }
}
