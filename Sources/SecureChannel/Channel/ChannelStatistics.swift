/// What one end of a channel has done since it opened: a snapshot of plain
/// counters that the data path bumps in place (no allocation, no lock, no
/// system call), read with ``SecureChannel/statistics``.
///
/// The counters belong to one ``ChannelEndpoint`` and, like it, to one
/// thread at a time: read them on the thread that uses the channel (or
/// after it stopped). A channel opened again (after `peerRestarted` or a
/// re-issue) is a new endpoint whose counters start at zero.
public struct ChannelStatistics: Sendable, Equatable {
    /// Data messages this end sent (control frames not included).
    public var messagesSent: UInt64 = 0
    /// Their payload bytes (the plaintext, without frame headers or tags).
    public var bytesSent: UInt64 = 0
    /// Data messages this end received and delivered.
    public var messagesReceived: UInt64 = 0
    /// Their payload bytes.
    public var bytesReceived: UInt64 = 0
    /// Handshakes completed: 1 after the open, one more for each fresh
    /// in-band handshake (new ephemeral keys).
    public var handshakes: UInt64 = 0
    /// Key switches without a handshake (Noise `Rekey()`), sending and
    /// receiving directions together.
    public var rekeys: UInt64 = 0
    /// Protocol violations detected in what the peer wrote (each ends the session).
    public var protocolViolations: UInt64 = 0
    /// Frames that failed authentication (each ends the session).
    public var authenticationFailures: UInt64 = 0
    /// Times this end had to wait for its peer (an empty ring, or a full one).
    public var waits: UInt64 = 0
    /// Times it went to sleep in such a wait (a futex wait, or the event
    /// channel on Xen): never in spin mode.
    public var sleeps: UInt64 = 0
    /// Times it woke its sleeping peer (a notification to the peer).
    public var wakeupsSent: UInt64 = 0
    /// Nanoseconds since the last completed handshake (the age of the
    /// session keys), from a coarse monotonic clock; filled in when read.
    public var nanosecondsSinceHandshake: UInt64 = 0

    public init() {}
}
