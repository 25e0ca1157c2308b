/// The layout of a channel window: which bytes are the control page and where
/// each data ring lives.
///
/// Geometry is computed once from the descriptor (page count, one-way flag)
/// and kept in private memory. It is never re-read from shared memory, so a
/// peer that scribbles over the control page's header cannot move the rings.
public struct RingGeometry: Sendable, Equatable, CustomStringConvertible {
    /// Bytes per page of the window.
    public static let pageSize = 4096
    /// Smallest and largest window the wire format allows.
    public static let pageCountRange = 2...512

    /// Pages in the window, control page included.
    public let pageCount: Int
    /// A one-way channel has a single ring, from the initiator to the responder.
    public let isOneWay: Bool
    /// Bytes in each data ring (a power of two).
    public let ringSize: Int
    /// Byte offsets of the data rings from the start of the window: ring 0
    /// carries initiator-to-responder frames, ring 1 (absent when one-way)
    /// responder-to-initiator frames.
    public let ringOffsets: [Int]

    /// Computes the layout of a window of `pageCount` pages.
    /// - Throws: ``GeometryError/pageCountOutOfRange(_:)`` outside 2...512.
    public init(pageCount: Int, oneWay: Bool) throws(GeometryError) {
        guard Self.pageCountRange.contains(pageCount) else {
            throw .pageCountOutOfRange(pageCount)
        }
        self.pageCount = pageCount
        self.isOneWay = oneWay
        let dataBytes = (pageCount - 1) * Self.pageSize
        let perRing = oneWay ? dataBytes : dataBytes / 2
        // Largest power of two that fits: ring positions are index & (size-1).
        var size = 1
        while size * 2 <= perRing { size *= 2 }
        ringSize = size
        ringOffsets = oneWay ? [Self.pageSize] : [Self.pageSize, Self.pageSize + size]
    }

    /// Number of data rings (1 or 2).
    public var ringCount: Int { ringOffsets.count }

    /// Total bytes of the window.
    public var windowBytes: Int { pageCount * Self.pageSize }

    /// The largest frame (header plus padded payload) one ring accepts.
    ///
    /// Half the ring: a frame never straddles the end of the ring (a padding
    /// frame fills the tail instead), and with frames of at most half the ring
    /// a writer never waits for more than one frame's worth of room.
    public var maximumFrameBytes: Int { ringSize / 2 }

    /// Bytes of the header in front of every frame (see docs/PROTOCOL.md).
    public static let frameHeaderBytes = 16

    /// The largest payload (ciphertext and tag included) one frame carries.
    public var maximumPayloadBytes: Int { maximumFrameBytes - Self.frameHeaderBytes }

    public var description: String {
        "\(pageCount) pages, \(ringCount) ring(s) of \(ringSize) bytes"
    }

    /// Why a geometry cannot be built.
    public enum GeometryError: Error, Equatable, Sendable, CustomStringConvertible {
        case pageCountOutOfRange(Int)

        public var description: String {
            switch self {
            case let .pageCountOutOfRange(n):
                return "a channel window must have \(RingGeometry.pageCountRange.lowerBound) to \(RingGeometry.pageCountRange.upperBound) pages, not \(n)"
            }
        }
    }
}
