/// What a guest agent asks of the platform it runs on: switching views with
/// VMFUNC, reaching the channel window, waking and waiting for its peer, and
/// reading the descriptors dom0 published for it.
///
/// Two implementations exist: a guest process of the simulator and a real
/// Xen HVM guest. The channel library is written against this protocol only,
/// so it never imports a backend.
///
/// `enterView(_:)` and `notify(_:)` sit on the data path of every message:
/// conformers must make them allocate nothing and take no locks, and
/// `enterView` must make no system call (VMFUNC itself causes no VM exit).
public protocol GuestPlatform: AnyObject {
    /// The domain this guest is.
    var domain: DomainID { get }

    /// Switches the calling vCPU to `view` (VMFUNC leaf 0, EPTP switching).
    ///
    /// - Returns: false when the processor refused (#UD): the view is not
    ///   active and visible, or VMFUNC was never enabled on this vCPU. The
    ///   current view is then unchanged.
    func enterView(_ view: ViewID) -> Bool

    /// Makes the channel window addressable and returns its first byte.
    ///
    /// The window's guest frames are backed by the channel's shared frames
    /// only in `view`; the memory may be touched only between
    /// `enterView(view)` and the return to view 0.
    /// - Throws: ``GuestPlatformError`` when the range cannot be mapped.
    func mapWindow(view: ViewID, firstGFN: GFN, pageCount: Int) throws(GuestPlatformError) -> UnsafeMutableRawPointer

    /// Releases a mapping made by ``mapWindow(view:firstGFN:pageCount:)``.
    func unmapWindow(_ base: UnsafeMutableRawPointer, pageCount: Int)

    /// Wakes the peer sleeping on `word` (a 32-bit word inside the window):
    /// a futex wake in the simulator, an event-channel notification on Xen.
    func notify(_ wake: WakeTarget)

    /// Sleeps until `wake.word` no longer holds `expected`, a notification
    /// arrives, or `timeoutNanoseconds` pass (nil waits indefinitely).
    /// Spurious returns are allowed; callers re-check their condition.
    func wait(_ wake: WakeTarget, expected: UInt32, timeoutNanoseconds: UInt64?)

    /// Makes this process an end of the channel's notification port, before
    /// the channel's first wait or notify; returns the port to put in its
    /// ``WakeTarget``s. `port` is the descriptor's; `isInitiator` says which
    /// end this is (``ChannelDescriptor/notificationPort``).
    ///
    /// The default returns `port` unchanged (the simulator's wake-ups need no
    /// binding). On Xen an event-channel port belongs to the process that
    /// bound it, so each process binds its own end when it opens a channel.
    /// - Throws: ``GuestPlatformError`` when the port cannot be bound.
    func openNotifications(port: UInt32, peer: DomainID, isInitiator: Bool) throws(GuestPlatformError) -> UInt32

    /// Releases what ``openNotifications(port:peer:isInitiator:)`` bound
    /// (the channel is gone from this process). The default does nothing.
    func closeNotifications(port: UInt32)

    /// The names of the channel descriptors published for this domain.
    func descriptorNames() throws(GuestPlatformError) -> [String]

    /// The sealed descriptor published for this domain under `name`.
    func readDescriptor(named name: String) throws(GuestPlatformError) -> [UInt8]
}

extension GuestPlatform {
    public func openNotifications(port: UInt32, peer: DomainID, isInitiator: Bool) throws(GuestPlatformError) -> UInt32 {
        port
    }

    public func closeNotifications(port: UInt32) {}
}

/// Where a wake-up goes: a word in the shared window (what the simulator's
/// futex uses) and the channel's notification port (what Xen's event channel
/// uses). Each platform uses the half it needs.
public struct WakeTarget: @unchecked Sendable {
    // @unchecked: a pointer into shared memory, used only for futex calls.
    public let word: UnsafeMutablePointer<UInt32>
    public let port: UInt32

    public init(word: UnsafeMutablePointer<UInt32>, port: UInt32) {
        self.word = word
        self.port = port
    }
}

/// Why a guest platform operation failed.
public enum GuestPlatformError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The window range is not valid guest memory of this domain.
    case windowOutOfRange(firstGFN: GFN, pageCount: Int)
    /// No descriptor of that name is published for this domain.
    case noDescriptor(String)
    /// The platform lost its hypervisor (simulator gone, domain destroyed).
    case unavailable(String)
    /// The hypervisor refused with an error number.
    case hypervisor(XenErrno, String)

    public var description: String {
        switch self {
        case let .windowOutOfRange(first, count):
            return "the window \(first)+\(count) pages is not mapped guest memory of this domain"
        case let .noDescriptor(name):
            return "no descriptor named '\(name)' is published for this domain"
        case let .unavailable(why):
            return "platform unavailable: \(why)"
        case let .hypervisor(errno, context):
            return "\(context): \(errno)"
        }
    }
}
