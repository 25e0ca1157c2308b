import Altp2m

/// The 16-byte header in front of every frame in a data ring.
///
/// ```
///  0       4    5     6        8                16
///  +-------+----+-----+--------+----------------+
///  | length|type|flags|reserved|    sequence    |
///  +-------+----+-----+--------+----------------+
/// ```
/// `length` counts the payload bytes that follow (ciphertext and tag in
/// encrypted mode); the frame occupies `16 + length` rounded up to 16. All
/// fields are little-endian. In encrypted mode the header is the AEAD's
/// associated data, so a peer cannot change type, flags or sequence unnoticed.
public struct FrameHeader: Sendable, Equatable {
    public static let byteCount = RingGeometry.frameHeaderBytes
    /// Frames start at 16-byte boundaries.
    public static let alignment = 16

    public var length: UInt32
    public var type: FrameType
    public var flags: UInt8
    public var sequence: UInt64

    public init(length: UInt32, type: FrameType, flags: UInt8 = 0, sequence: UInt64) {
        self.length = length
        self.type = type
        self.flags = flags
        self.sequence = sequence
    }

    /// Bytes a frame with `payloadBytes` of payload occupies in the ring.
    @inline(__always)
    public static func frameBytes(payloadBytes: Int) -> Int {
        (byteCount + payloadBytes + alignment - 1) & ~(alignment - 1)
    }

    /// Writes the header at `p` (16 bytes).
    @inline(__always)
    public func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: length.littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: type.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: flags, toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// Parses a header from private memory; nil when the type is unknown or
    /// the reserved field is not zero (both protocol violations).
    @inline(__always)
    public static func load(from p: UnsafeRawPointer) -> FrameHeader? {
        guard let type = FrameType(rawValue: p.load(fromByteOffset: 4, as: UInt8.self)),
              p.loadUnaligned(fromByteOffset: 6, as: UInt16.self) == 0
        else { return nil }
        return FrameHeader(
            length: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
            type: type,
            flags: p.load(fromByteOffset: 5, as: UInt8.self),
            sequence: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }
}

/// What a frame carries.
public enum FrameType: UInt8, Sendable {
    /// Fills the tail of the ring so the next frame starts at offset 0; no payload.
    case padding = 0
    /// A Noise handshake message.
    case handshake = 1
    /// Application data.
    case data = 2
    /// The sender switched its sending key with Noise `Rekey()` after this frame.
    case rekey = 3
    /// The sender will send nothing more (half-close); every earlier frame was sent.
    case close = 4
}
