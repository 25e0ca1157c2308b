import Altp2m
import Synchronization
import XenInterface

/// The notification ports this process's frame-flow agents bound, by
/// domain and port, each with the event-channel handle that bound it.
///
/// On Xen a port belongs to the `/dev/xen/evtchn` handle that bound it
/// (Linux `evtchn_bind_to_user` records the handle; `evtchn_ioctl` refuses a
/// notify through a port another handle bound, and an event reaches only its
/// handle's ring). The granting agent binds the channel's unbound port
/// during the frame flow, before the channel exists, so a channel opened
/// later in the same process must wait and notify through that handle: it
/// finds it here. Touched only when a share is made or undone and when a
/// channel opens, never per message.
final class XenNotificationPorts: Sendable {
    static let shared = XenNotificationPorts()

    private struct Key: Hashable {
        let domain: UInt16
        let port: UInt32
    }

    /// @unchecked: the handle is used by one channel at a time; the box only
    /// carries it across the lock.
    final class Handle: @unchecked Sendable {
        let events: any XenEventChannelLibrary
        init(_ events: any XenEventChannelLibrary) { self.events = events }
    }

    private let entries = Mutex<[Key: Handle]>([:])

    /// Records that `events` bound `port` of `domain`.
    func register(_ events: any XenEventChannelLibrary, domain: DomainID, port: UInt32) {
        let handle = Handle(events)
        entries.withLock { $0[Key(domain: domain.rawValue, port: port)] = handle }
    }

    /// Forgets `port` of `domain` as `events` bound it (its agent unbound
    /// it). An entry another handle has made since (the port number given
    /// out again after the unbind) stays.
    func remove(_ events: any XenEventChannelLibrary, domain: DomainID, port: UInt32) {
        let key = Key(domain: domain.rawValue, port: port)
        entries.withLock { entries in
            if let entry = entries[key], entry.events === events { entries.removeValue(forKey: key) }
        }
    }

    /// The handle that bound `port` of `domain` in this process, if any.
    func handle(domain: DomainID, port: UInt32) -> (any XenEventChannelLibrary)? {
        entries.withLock { $0[Key(domain: domain.rawValue, port: port)] }?.events
    }
}
