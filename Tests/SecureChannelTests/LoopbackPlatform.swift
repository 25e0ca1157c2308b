import Altp2m
import CPlatform
import Synchronization

/// A `GuestPlatform` for tests of the channel library alone: both ends live
/// in one process and share a window in private memory. It keeps the rules
/// that matter to the library: VMFUNC succeeds only into view 0 or the
/// channel view, and it counts calls so tests can check that every ring
/// operation is bracketed by a view switch.
final class LoopbackPlatform: GuestPlatform, @unchecked Sendable {
    let domain: DomainID
    let channelView: ViewID
    let window: TestWindow
    /// VMFUNC calls into the channel view (atomic: tests read it from another thread).
    let entries = Atomic<Int>(0)

    init(domain: DomainID, channelView: ViewID, window: TestWindow) {
        self.domain = domain
        self.channelView = channelView
        self.window = window
    }

    func enterView(_ view: ViewID) -> Bool {
        if view == channelView { entries.add(1, ordering: .relaxed); return true }
        return view == .hostOrView0
    }

    func mapWindow(view: ViewID, firstGFN: GFN, pageCount: Int) throws(GuestPlatformError) -> UnsafeMutableRawPointer {
        guard view == channelView, pageCount == window.geometry.pageCount else {
            throw .windowOutOfRange(firstGFN: firstGFN, pageCount: pageCount)
        }
        return window.base
    }

    func unmapWindow(_ base: UnsafeMutableRawPointer, pageCount: Int) {}

    func notify(_ wake: WakeTarget) {
        _ = cplatform_futex_wake(wake.word, Int32.max)
    }

    func wait(_ wake: WakeTarget, expected: UInt32, timeoutNanoseconds: UInt64?) {
        _ = cplatform_futex_wait(wake.word, expected, timeoutNanoseconds.map { Int64(min($0, UInt64(Int64.max))) } ?? -1)
    }

    func descriptorNames() throws(GuestPlatformError) -> [String] { [] }

    func readDescriptor(named name: String) throws(GuestPlatformError) -> [UInt8] {
        throw .noDescriptor(name)
    }
}
