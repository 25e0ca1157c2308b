import Synchronization

/// Page 0 of the window: the ring header written by the host at creation, the
/// ring indices and each side's state, every field on its own cache line and
/// written by exactly one party (see docs/PROTOCOL.md for the diagram).
///
/// Only offsets live here; the page holds no pointers. Atomics are reached
/// through `UnsafeMutablePointer<Atomic<…>>` into the shared mapping, which
/// compiles to plain loads/stores (acquire/release) or locked instructions
/// (sequentially consistent) and works across processes.
public struct ControlPage: @unchecked Sendable {
    // @unchecked: a view of shared memory; every field is an atomic and has a
    // single writer by protocol, which is what makes concurrent use sound.

    /// "SCHANRNG" little-endian: identifies an initialised window.
    public static let magic: UInt64 = 0x474E_524E_4148_4353
    /// Wire-format version this code speaks.
    public static let version: UInt32 = 1

    /// Byte offsets of the fields; one 64-byte cache line each.
    public enum Offset {
        public static let header = 0x000
        public static let ring0Producer = 0x040
        public static let ring0Consumer = 0x080
        public static let ring1Producer = 0x0C0
        public static let ring1Consumer = 0x100
        public static let initiatorState = 0x140
        public static let responderState = 0x180
        public static let hostState = 0x1C0
    }

    /// Layout of the header line (host-written, read for a consistency check only).
    public enum HeaderField {
        public static let magic = 0       // u64
        public static let version = 8     // u32
        public static let flags = 12      // u32: bit 0 one-way
        public static let pageCount = 16  // u32
        public static let ringSize = 20   // u32
        public static let ringCount = 24  // u32
        /// 16 bytes: the channel id the host created the window for. An
        /// agent compares it with its descriptor's at open, so a descriptor
        /// of a destroyed channel never opens a window first fit gave to
        /// another channel.
        public static let channelID = 32
    }

    /// Layout of a side's state line (written only by that side).
    public enum SideField {
        /// u32: bit 0 "waiting for data", bit 1 "waiting for space".
        public static let waiting = 0
        /// u32: ``ClosedBits`` of this side.
        public static let closed = 4
        /// u64: incremented periodically while the side is alive.
        public static let liveness = 8
        /// u32: this side's incarnation, incremented by every open (0: never
        /// opened). Published last, after ``start`` and the cleared
        /// `closed`/`waiting` words, with a sequentially consistent store.
        public static let incarnation = 16
        /// u64: this side's producer index when the incarnation opened: its
        /// session's first frame. The peer's consumer starts there.
        public static let start = 24
    }

    /// The bits of a side's `closed` word.
    public enum ClosedBits {
        /// The side sent its `close` frame: it sends nothing more.
        public static let sendingClosed: UInt32 = 1
        /// The side closed its end: it reads nothing more either, so a peer
        /// waiting for room in the ring will never get it.
        public static let stoppedReading: UInt32 = 2
    }

    /// Layout of the host's line (written only by the grant module / hypervisor side).
    public enum HostField {
        /// u32: non-zero when the host tore the channel down or a domain died.
        public static let closed = 0
        /// u32: which side died (1 initiator, 2 responder) or 0 for a revocation.
        public static let reason = 4
        /// u32: how many times an agent process of the initiator's domain
        /// that had the window mapped went away (exited or was killed) while
        /// the channel stayed up. Only ever incremented, so an endpoint
        /// compares it with the value it read at open: no clearing, and a
        /// session opened after the restart starts from the new value.
        public static let initiatorProcessExits = 8
        /// u32: the same count for the responder's domain.
        public static let responderProcessExits = 12
        /// u64: the generation of the channel's newest descriptors, written
        /// at creation and by every re-issue. A session opened with an older
        /// descriptor ends on both sides (the agents open the new ones).
        public static let generation = 16

        /// The process-exit count of `side`.
        public static func processExits(of side: ChannelSide) -> Int {
            side == .initiator ? initiatorProcessExits : responderProcessExits
        }
    }

    public let base: UnsafeMutableRawPointer

    public init(base: UnsafeMutableRawPointer) {
        self.base = base
    }

    @inline(__always)
    public func u64(at offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (base + offset).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    @inline(__always)
    public func u32(at offset: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (base + offset).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// The producer index of `ring`.
    @inline(__always)
    public func producer(ring: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        u64(at: ring == 0 ? Offset.ring0Producer : Offset.ring1Producer)
    }

    /// The consumer index of `ring`.
    @inline(__always)
    public func consumer(ring: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        u64(at: ring == 0 ? Offset.ring0Consumer : Offset.ring1Consumer)
    }

    /// The state line of a side.
    @inline(__always)
    public func sideState(_ side: ChannelSide) -> UnsafeMutableRawPointer {
        base + (side == .initiator ? Offset.initiatorState : Offset.responderState)
    }

    /// Writes the header line and zeroes every index: the host does this once
    /// when it creates the channel, before either agent can reach the window.
    /// - Parameters:
    ///   - channelID: the 16-byte channel id of the descriptors (zero bytes
    ///     when the caller has none: tests of the ring alone).
    ///   - generation: the descriptors' generation.
    public func initialize(geometry: RingGeometry, channelID: [UInt8] = [UInt8](repeating: 0, count: 16),
                           generation: UInt64 = 0) {
        base.initializeMemory(as: UInt8.self, repeating: 0, count: RingGeometry.pageSize)
        base.storeBytes(of: Self.magic.littleEndian, toByteOffset: HeaderField.magic, as: UInt64.self)
        base.storeBytes(of: Self.version.littleEndian, toByteOffset: HeaderField.version, as: UInt32.self)
        base.storeBytes(of: UInt32(geometry.isOneWay ? 1 : 0).littleEndian, toByteOffset: HeaderField.flags, as: UInt32.self)
        base.storeBytes(of: UInt32(geometry.pageCount).littleEndian, toByteOffset: HeaderField.pageCount, as: UInt32.self)
        base.storeBytes(of: UInt32(geometry.ringSize).littleEndian, toByteOffset: HeaderField.ringSize, as: UInt32.self)
        base.storeBytes(of: UInt32(geometry.ringCount).littleEndian, toByteOffset: HeaderField.ringCount, as: UInt32.self)
        for (i, byte) in channelID.prefix(16).enumerated() { base.storeBytes(of: byte, toByteOffset: HeaderField.channelID + i, as: UInt8.self) }
        base.storeBytes(of: generation.littleEndian, toByteOffset: Offset.hostState + HostField.generation, as: UInt64.self)
    }

    /// Whether the header names `channelID` (see ``HeaderField/channelID``).
    public func headerNames(channelID: [UInt8]) -> Bool {
        var differs: UInt8 = 0
        for (i, byte) in channelID.prefix(16).enumerated() {
            differs |= base.load(fromByteOffset: HeaderField.channelID + i, as: UInt8.self) ^ byte
        }
        return channelID.count == 16 && differs == 0
    }

    /// Checks the header against the geometry the descriptor promised. A
    /// mismatch means the window is not the channel the descriptor describes
    /// (or was never initialised).
    public func validateHeader(against geometry: RingGeometry) -> String? {
        let magic = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: HeaderField.magic, as: UInt64.self))
        guard magic == Self.magic else { return "the window holds no channel header (bad magic)" }
        let version = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: HeaderField.version, as: UInt32.self))
        guard version == Self.version else { return "wire-format version \(version) is not \(Self.version)" }
        let pages = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: HeaderField.pageCount, as: UInt32.self))
        let ringSize = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: HeaderField.ringSize, as: UInt32.self))
        let flags = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: HeaderField.flags, as: UInt32.self))
        guard Int(pages) == geometry.pageCount, Int(ringSize) == geometry.ringSize,
              (flags & 1 == 1) == geometry.isOneWay
        else {
            return "the window header (\(pages) pages, ring \(ringSize) B) does not match the descriptor (\(geometry))"
        }
        return nil
    }
}

/// The two ends of a channel. The initiator is the domain with the lower id;
/// it produces into ring 0 and consumes ring 1.
public enum ChannelSide: Sendable, Equatable {
    case initiator
    case responder

    /// The other end.
    public var peer: ChannelSide { self == .initiator ? .responder : .initiator }
    /// The ring this side writes.
    public var sendRing: Int { self == .initiator ? 0 : 1 }
    /// The ring this side reads.
    public var receiveRing: Int { self == .initiator ? 1 : 0 }
}
