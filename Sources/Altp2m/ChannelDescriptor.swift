/// The control metadata one guest agent receives for one channel: everything
/// it needs to find the window, enter the channel view, and authenticate its
/// peer.
///
/// The host (the grant module in dom0) makes one descriptor per side, encodes
/// it with ``encoded()``, seals it to that side's agent key and signs the
/// result (a ``DescriptorEnvelope``). The agent opens the envelope and decodes
/// the plaintext with ``init(decoding:)``, which checks every field.
///
/// ## Secrets
/// ``presharedKey`` is secret: it is mixed into the Noise `KKpsk2` handshake,
/// so anyone who learns it (and the peer's static key, which is public) can
/// take part in the handshake. This type wipes nothing: it lives in the
/// vocabulary module, which has no secure-memory type. The code that opens a
/// descriptor moves the key into `SecureBytes` at once and overwrites the
/// array (and the encoded plaintext) with zeros; the host does the same after
/// sealing.
///
/// ## Encoding (version 1)
/// Canonical: one byte string per value, all integers little-endian, no
/// optional fields, nothing after the last field.
///
/// | Field | Encoding |
/// |---|---|
/// | magic | 4 bytes `"SCDS"` |
/// | format version | u16 = 1 |
/// | channel id | 16 bytes |
/// | name | u8 length (1...64) + that many bytes of `[A-Za-z0-9_-]`, not starting with `-` (``ChannelDescriptor/isValidName(_:)``) |
/// | initiator, responder | u16 each; initiator < responder (the initiator is the lower id) |
/// | recipient | u16, one of the two |
/// | view | u16, the recipient's channel view, 1...511 |
/// | window first gfn | u64 |
/// | page count | u32, 2...512; the window must not wrap |
/// | flags | u8: bit 0 one-way; other bits zero |
/// | peer static key | 32 bytes (X25519 public key of the other agent) |
/// | pre-shared key | 32 bytes |
/// | cipher suite | u8: 0 ChaCha20-Poly1305, 1 AES-256-GCM |
/// | mode | u8: 0 encrypted, 1 isolated |
/// | notification port | u32 |
/// | #VE info pages | u16 count (1...128, one per vCPU) + count × u64 gfn (`INVALID_GFN` for a vCPU whose #VE someone else enabled) |
/// | created, expires | u64 Unix seconds each; expires > created |
/// | generation | u64 ≥ 1 |
public struct ChannelDescriptor: Equatable, Sendable, CustomStringConvertible {
    /// The encoding version this code writes and reads.
    public static let formatVersion: UInt16 = 1
    /// The first four bytes of every encoded descriptor.
    public static let magic: [UInt8] = Array("SCDS".utf8)
    /// Length of the channel name, in bytes.
    public static let nameLengthRange = 1...64
    /// Length of the peer's X25519 public key and of the pre-shared key.
    public static let keyByteCount = 32
    /// The number of #VE info pages (one per vCPU; Xen's `HVM_MAX_VCPUS`).
    public static let vcpuCountRange = 1...128

    /// The AEAD of the channel's session.
    public enum CipherSuite: UInt8, CaseIterable, Sendable, LosslessStringConvertible {
        /// ChaCha20-Poly1305 (the default).
        case chachapoly = 0
        /// AES-256-GCM, where the CPU has AES-NI.
        case aesgcm = 1

        /// `chachapoly` or `aesgcm`.
        public var description: String { self == .chachapoly ? "chachapoly" : "aesgcm" }

        /// Parses `chachapoly` or `aesgcm`.
        public init?(_ description: String) {
            guard let suite = Self.allCases.first(where: { $0.description == description }) else { return nil }
            self = suite
        }
    }

    /// Whether frames are encrypted.
    public enum Mode: UInt8, CaseIterable, Sendable, LosslessStringConvertible {
        /// Every frame is AEAD-protected (the default).
        case encrypted = 0
        /// Frames travel in plaintext; only view isolation protects them.
        case isolated = 1

        /// `encrypted` or `isolated`.
        public var description: String { self == .encrypted ? "encrypted" : "isolated" }

        /// Parses `encrypted` or `isolated`.
        public init?(_ description: String) {
            guard let mode = Self.allCases.first(where: { $0.description == description }) else { return nil }
            self = mode
        }
    }

    /// The encoding version (``formatVersion`` for descriptors this code makes).
    public var version: UInt16
    /// 16 random bytes naming this channel; bound into the handshake prologue.
    public var channelID: ChannelID
    /// The channel's name: the key under which the descriptor is published.
    public var name: String
    /// The domain with the lower id: it writes ring 0.
    public var initiator: DomainID
    /// The domain with the higher id: it writes ring 1 (nothing, if one-way).
    public var responder: DomainID
    /// The domain this descriptor is for.
    public var recipient: DomainID
    /// The recipient's channel view: the index its agent passes to VMFUNC.
    public var view: ViewID
    /// The first gfn of the recipient's window.
    public var windowFirstGFN: GFN
    /// The number of pages in the window, control page included (2...512).
    public var pageCount: UInt32
    /// A one-way channel carries data from the initiator to the responder only.
    public var isOneWay: Bool
    /// The other agent's static X25519 public key (32 raw bytes).
    public var peerPublicKey: [UInt8]
    /// The per-channel pre-shared key (32 bytes). **Secret**; see the type's
    /// documentation.
    public var presharedKey: [UInt8]
    /// The session's AEAD.
    public var suite: CipherSuite
    /// Encrypted or isolated.
    public var mode: Mode
    /// The notification port. Simulator: the channel's wake-up port. Xen: for
    /// the initiator, its own unbound event channel; for the responder, the
    /// initiator's port, to bind with `xenevtchn_bind_interdomain`.
    public var notificationPort: UInt32
    /// The #VE information page of each of the recipient's vCPUs, by vCPU
    /// number; ``GFN/invalid`` for a vCPU whose #VE was enabled by someone else.
    public var veInfoGFNs: [GFN]
    /// When the host made the descriptor (Unix seconds).
    public var createdAt: UInt64
    /// After this (Unix seconds) the agent must refuse the descriptor.
    public var expiresAt: UInt64
    /// Increases with every descriptor the host issues (re-issues included),
    /// so an agent can refuse an older one it is shown again.
    public var generation: UInt64

    /// Creates a descriptor; nothing is checked until it is encoded and decoded.
    public init(version: UInt16 = ChannelDescriptor.formatVersion, channelID: ChannelID, name: String,
                initiator: DomainID, responder: DomainID, recipient: DomainID, view: ViewID,
                windowFirstGFN: GFN, pageCount: UInt32, isOneWay: Bool, peerPublicKey: [UInt8],
                presharedKey: [UInt8], suite: CipherSuite, mode: Mode, notificationPort: UInt32,
                veInfoGFNs: [GFN], createdAt: UInt64, expiresAt: UInt64, generation: UInt64) {
        self.version = version
        self.channelID = channelID
        self.name = name
        self.initiator = initiator
        self.responder = responder
        self.recipient = recipient
        self.view = view
        self.windowFirstGFN = windowFirstGFN
        self.pageCount = pageCount
        self.isOneWay = isOneWay
        self.peerPublicKey = peerPublicKey
        self.presharedKey = presharedKey
        self.suite = suite
        self.mode = mode
        self.notificationPort = notificationPort
        self.veInfoGFNs = veInfoGFNs
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.generation = generation
    }

    /// Which end of the channel the recipient is.
    public var side: ChannelSide { recipient == initiator ? .initiator : .responder }

    /// The other domain.
    public var peer: DomainID { recipient == initiator ? responder : initiator }

    /// The window's layout, computed from the page count and the one-way flag.
    /// - Throws: when the page count is outside 2...512 (never for a decoded descriptor).
    public func geometry() throws(RingGeometry.GeometryError) -> RingGeometry {
        try RingGeometry(pageCount: Int(pageCount), oneWay: isOneWay)
    }

    /// Never prints the pre-shared key.
    public var description: String {
        "descriptor '\(name)' \(channelID) gen \(generation) for \(recipient) (\(initiator) <-> \(responder)), "
            + "\(view), window \(windowFirstGFN)+\(pageCount)\(isOneWay ? " one-way" : ""), \(suite), \(mode), "
            + "port \(notificationPort), valid \(createdAt)...\(expiresAt), psk redacted"
    }

    // MARK: Names

    /// Whether `name` is a valid channel name: 1...64 bytes of ASCII
    /// letters, digits, `_` and `-`, not starting with `-`.
    ///
    /// One rule for every backend, checked by the grant module, by each
    /// descriptor store (the simulator's and xenstore's) and by the decoder:
    /// the name is a xenstore path component, and xenstored accepts only
    /// letters, digits and `-/_@` (its `valid_chars`), so a `.` that the
    /// simulator took would fail on Xen. No `/` or `@` either: `/` would
    /// nest a path, `@` starts xenstore's special watch paths. A leading
    /// `-` would read as an option on a command line.
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard nameLengthRange.contains(bytes.count) else { return false }
        guard bytes[0] != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }

    // MARK: Encoding

    /// The canonical encoding (see the type's documentation).
    ///
    /// The result holds the pre-shared key: overwrite it with zeros once it
    /// is sealed.
    /// - Precondition: the fields are valid, as ``init(decoding:)`` would
    ///   accept them (the grant module builds descriptors only from checked
    ///   values; a violation is a programming error).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.reserve(160 + name.utf8.count + 8 * veInfoGFNs.count)
        writer.append(Self.magic)
        writer.append(version)
        writer.append(channelID.bytes)
        let nameBytes = Array(name.utf8)
        precondition(Self.nameLengthRange.contains(nameBytes.count), "channel name length checked by the caller")
        writer.append(UInt8(nameBytes.count))
        writer.append(nameBytes)
        writer.append(initiator.rawValue)
        writer.append(responder.rawValue)
        writer.append(recipient.rawValue)
        writer.append(view.rawValue)
        writer.append(windowFirstGFN.rawValue)
        writer.append(pageCount)
        writer.append(UInt8(isOneWay ? 1 : 0))
        precondition(peerPublicKey.count == Self.keyByteCount && presharedKey.count == Self.keyByteCount,
                     "key lengths checked by the caller")
        writer.append(peerPublicKey)
        writer.append(presharedKey)
        writer.append(suite.rawValue)
        writer.append(mode.rawValue)
        writer.append(notificationPort)
        precondition(Self.vcpuCountRange.contains(veInfoGFNs.count), "vCPU count checked by the caller")
        writer.append(UInt16(veInfoGFNs.count))
        for gfn in veInfoGFNs { writer.append(gfn.rawValue) }
        writer.append(createdAt)
        writer.append(expiresAt)
        writer.append(generation)
        return writer.bytes
    }

    /// Decodes and checks a canonical encoding: every length, every range,
    /// every relation between fields, and that nothing follows the last field.
    /// - Throws: ``DecodingError`` naming the first field that is wrong.
    ///
    /// Contiguous input (an array, a buffer pointer, guarded memory) is read
    /// in place, so the pre-shared key is copied only into ``presharedKey``.
    public init(decoding bytes: some Collection<UInt8>) throws(DecodingError) {
        self = try ByteReader.reading(bytes) { reader throws(DecodingError) in try Self.decode(&reader) }
    }

    private static func decode(_ reader: inout ByteReader) throws(DecodingError) -> ChannelDescriptor {
        let magic = try reader.bytes(4, field: "magic")
        guard magic == Self.magic else { throw .invalid(field: "magic", reason: "not a channel descriptor") }
        let version = try reader.u16(field: "version")
        guard version == Self.formatVersion else { throw .unsupportedVersion(version) }
        let id = ChannelID(unchecked: try reader.bytes(ChannelID.byteCount, field: "channelID"))
        let nameLength = Int(try reader.u8(field: "name.length"))
        guard Self.nameLengthRange.contains(nameLength) else {
            throw .invalid(field: "name.length", reason: "\(nameLength) is outside \(Self.nameLengthRange)")
        }
        let nameBytes = try reader.bytes(nameLength, field: "name")
        guard let name = String(validating: nameBytes, as: UTF8.self), Self.isValidName(name) else {
            throw .invalid(field: "name", reason: "only letters, digits, '.', '_' and '-' are allowed")
        }
        let initiator = DomainID(rawValue: try reader.u16(field: "initiator"))
        let responder = DomainID(rawValue: try reader.u16(field: "responder"))
        guard !initiator.isReserved else { throw .invalid(field: "initiator", reason: "\(initiator) is a reserved id") }
        guard !responder.isReserved else { throw .invalid(field: "responder", reason: "\(responder) is a reserved id") }
        guard initiator < responder else {
            throw .invalid(field: "responder", reason: "the initiator (\(initiator)) must have the lower domain id")
        }
        let recipient = DomainID(rawValue: try reader.u16(field: "recipient"))
        guard recipient == initiator || recipient == responder else {
            throw .invalid(field: "recipient", reason: "\(recipient) is neither end of the channel")
        }
        let view = ViewID(try reader.u16(field: "view"))
        guard view.rawValue >= 1 && view.rawValue < 512 else {
            throw .invalid(field: "view", reason: "\(view) cannot be a channel view (1...511)")
        }
        let first = GFN(try reader.u64(field: "window.firstGFN"))
        let pageCount = try reader.u32(field: "window.pageCount")
        guard RingGeometry.pageCountRange.contains(Int(pageCount)) else {
            throw .invalid(field: "window.pageCount", reason: "\(pageCount) is outside \(RingGeometry.pageCountRange)")
        }
        guard !first.isInvalid, first.rawValue <= UInt64.max - UInt64(pageCount) else {
            throw .invalid(field: "window.firstGFN", reason: "the window \(first)+\(pageCount) wraps")
        }
        let flags = try reader.u8(field: "flags")
        guard flags & ~1 == 0 else { throw .invalid(field: "flags", reason: "unknown bits 0x\(String(flags, radix: 16))") }
        let peerKey = try reader.bytes(Self.keyByteCount, field: "peerPublicKey")
        let psk = try reader.bytes(Self.keyByteCount, field: "presharedKey")
        let suiteRaw = try reader.u8(field: "suite")
        guard let suite = CipherSuite(rawValue: suiteRaw) else {
            throw .invalid(field: "suite", reason: "unknown cipher suite \(suiteRaw)")
        }
        let modeRaw = try reader.u8(field: "mode")
        guard let mode = Mode(rawValue: modeRaw) else { throw .invalid(field: "mode", reason: "unknown mode \(modeRaw)") }
        let port = try reader.u32(field: "notificationPort")
        let vcpuCount = Int(try reader.u16(field: "veInfo.count"))
        guard Self.vcpuCountRange.contains(vcpuCount) else {
            throw .invalid(field: "veInfo.count", reason: "\(vcpuCount) is outside \(Self.vcpuCountRange)")
        }
        var veInfo: [GFN] = []
        veInfo.reserveCapacity(vcpuCount)
        for _ in 0..<vcpuCount { veInfo.append(GFN(try reader.u64(field: "veInfo.gfn"))) }
        let created = try reader.u64(field: "createdAt")
        let expires = try reader.u64(field: "expiresAt")
        guard expires > created else {
            throw .invalid(field: "expiresAt", reason: "expiry \(expires) is not after creation \(created)")
        }
        let generation = try reader.u64(field: "generation")
        guard generation >= 1 else { throw .invalid(field: "generation", reason: "must be at least 1") }
        guard reader.remaining == 0 else { throw .trailingBytes(reader.remaining) }

        return ChannelDescriptor(version: version, channelID: id, name: name, initiator: initiator, responder: responder,
                  recipient: recipient, view: view, windowFirstGFN: first, pageCount: pageCount,
                  isOneWay: flags & 1 == 1, peerPublicKey: peerKey, presharedKey: psk, suite: suite, mode: mode,
                  notificationPort: port, veInfoGFNs: veInfo, createdAt: created, expiresAt: expires,
                  generation: generation)
    }

    /// Why an encoding was refused. ``field`` names the field.
    public enum DecodingError: Error, Equatable, Sendable, CustomStringConvertible {
        /// The bytes end inside `field`.
        case truncated(field: String)
        /// `field` holds a value the format does not allow.
        case invalid(field: String, reason: String)
        /// The descriptor is in an encoding version this code does not read.
        case unsupportedVersion(UInt16)
        /// Bytes follow the last field.
        case trailingBytes(Int)

        /// The field at fault (`"version"`, `"trailing"` for extra bytes).
        public var field: String {
            switch self {
            case .truncated(let field), .invalid(let field, _): field
            case .unsupportedVersion: "version"
            case .trailingBytes: "trailing"
            }
        }

        public var description: String {
            switch self {
            case .truncated(let field):
                "descriptor truncated in field '\(field)'"
            case .invalid(let field, let reason):
                "descriptor field '\(field)' is invalid: \(reason)"
            case .unsupportedVersion(let version):
                "descriptor format version \(version) is not supported (this build reads \(ChannelDescriptor.formatVersion))"
            case .trailingBytes(let count):
                "descriptor has \(count) bytes after its last field"
            }
        }
    }
}

/// The 16 random bytes that name a channel.
public struct ChannelID: Hashable, Sendable, CustomStringConvertible {
    /// Length of a channel id.
    public static let byteCount = 16
    /// The id's bytes.
    public let bytes: [UInt8]

    /// An id from exactly 16 bytes; `nil` for any other length.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.byteCount else { return nil }
        self.bytes = Array(bytes)
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// An id from 32 hex digits (either case); `nil` otherwise.
    public init?(hex: String) {
        guard hex.utf8.count == Self.byteCount * 2, let decoded = HexDigits.decode(hex.utf8) else { return nil }
        bytes = decoded
    }

    /// 32 lower-case hex digits.
    public var hex: String { String(decoding: HexDigits.encode(bytes), as: UTF8.self) }

    public var description: String { hex }
}

// MARK: - Little-endian byte cursors (descriptor and envelope encodings)

/// Appends little-endian integers and raw bytes.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    mutating func reserve(_ count: Int) { bytes.reserveCapacity(count) }

    mutating func append(_ raw: some Sequence<UInt8>) { bytes.append(contentsOf: raw) }

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Reads little-endian integers and raw bytes in place, naming the field on
/// a short read. Lives only inside ``reading(_:_:)``.
struct ByteReader {
    private let data: UnsafeRawBufferPointer
    private var position = 0

    private init(_ data: UnsafeRawBufferPointer) { self.data = data }

    /// Runs `body` with a reader over `source`, without copying contiguous
    /// input (a non-contiguous collection is copied once).
    static func reading<R>(_ source: some Collection<UInt8>,
                           _ body: (inout ByteReader) throws(ChannelDescriptor.DecodingError) -> R)
        throws(ChannelDescriptor.DecodingError) -> R
    {
        let direct = source.withContiguousStorageIfAvailable { buffer in
            var reader = ByteReader(UnsafeRawBufferPointer(buffer))
            return Result { () throws(ChannelDescriptor.DecodingError) -> R in try body(&reader) }
        }
        if let direct { return try direct.get() }
        let copy = Array(source)
        let result = copy.withUnsafeBytes { buffer in
            var reader = ByteReader(buffer)
            return Result { () throws(ChannelDescriptor.DecodingError) -> R in try body(&reader) }
        }
        return try result.get()
    }

    var remaining: Int { data.count - position }

    mutating func bytes(_ count: Int, field: String) throws(ChannelDescriptor.DecodingError) -> [UInt8] {
        guard count <= remaining else { throw .truncated(field: field) }
        defer { position += count }
        return Array(data[position..<(position + count)])
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type, field: String) throws(ChannelDescriptor.DecodingError) -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw .truncated(field: field) }
        var value: T = 0
        for index in 0..<size { value |= T(data[position + index]) << (8 * index) }
        position += size
        return value
    }

    mutating func u8(field: String) throws(ChannelDescriptor.DecodingError) -> UInt8 { try integer(UInt8.self, field: field) }
    mutating func u16(field: String) throws(ChannelDescriptor.DecodingError) -> UInt16 { try integer(UInt16.self, field: field) }
    mutating func u32(field: String) throws(ChannelDescriptor.DecodingError) -> UInt32 { try integer(UInt32.self, field: field) }
    mutating func u64(field: String) throws(ChannelDescriptor.DecodingError) -> UInt64 { try integer(UInt64.self, field: field) }
}
