/// A sc_channel*: a pointer to a small record of ours that says whether
/// the channel is open and holds it.
///
/// sc_close releases the channel and everything it holds but keeps the
/// 16-byte record, marked closed, for the life of the process: a later call
/// with the same pointer then reads our own record and returns SC_EINVAL,
/// instead of reading freed memory (use after close is detected, not
/// undefined). A pointer that never came from sc_open cannot be told apart.
struct ChannelHandle {
    private struct Record {
        var magic: UInt64
        var channel: Unmanaged<OpenChannel>?
    }

    private static let openMagic: UInt64 = 0x5343_4348_4f50_454e    // "SCCHOPEN"
    private static let closedMagic: UInt64 = 0x5343_4348_434c_4f53  // "SCCHCLOS"

    private let record: UnsafeMutablePointer<Record>

    /// A new handle that owns `channel`.
    static func make(_ channel: OpenChannel) -> OpaquePointer {
        let record = UnsafeMutablePointer<Record>.allocate(capacity: 1)
        record.initialize(to: Record(magic: openMagic, channel: .passRetained(channel)))
        return OpaquePointer(record)
    }

    /// The handle behind `pointer`, or nil (with sc_last_error set) when it
    /// is NULL or closed.
    init?(_ pointer: OpaquePointer?, call: String) {
        guard let pointer else {
            _ = ABIError.invalid("\(call): the channel is NULL; pass what sc_open returned").report()
            return nil
        }
        let record = UnsafeMutablePointer<Record>(pointer)
        guard record.pointee.magic == Self.openMagic, record.pointee.channel != nil else {
            let why = record.pointee.magic == Self.closedMagic
                ? "the channel was closed (sc_close); open it again with sc_open"
                : "this is not a channel sc_open returned"
            _ = ABIError.invalid("\(call): \(why)").report()
            return nil
        }
        self.record = record
    }

    /// Runs `body` on the open channel without reference counting.
    @inline(__always)
    func withChannel<R>(_ body: (OpenChannel) -> R) -> R {
        record.pointee.channel!._withUnsafeGuaranteedRef(body)
    }

    /// Closes and releases the channel; the record stays, marked closed.
    func close() -> Int32 {
        let channel = record.pointee.channel!
        record.pointee.magic = Self.closedMagic
        record.pointee.channel = nil
        let result = channel.takeUnretainedValue().close()
        channel.release()
        return result
    }
}
