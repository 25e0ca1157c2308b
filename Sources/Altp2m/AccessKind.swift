/// The kind of a guest memory access, as an EPT violation reports it.
public enum AccessKind: Int, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// A data read.
    case read
    /// A data write.
    case write
    /// An instruction fetch.
    case execute

    /// The `MEM_ACCESS_R`/`_W`/`_X` flag (1, 2, 4) of a vm_event request; the
    /// same bit order as bits 0–2 of an EPT exit qualification.
    @inlinable
    public var bit: UInt32 { 1 << UInt32(rawValue) }

    public var description: String {
        switch self {
        case .read: "read"
        case .write: "write"
        case .execute: "execute"
        }
    }
}
