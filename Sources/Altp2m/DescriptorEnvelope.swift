/// The framing of a published descriptor: a sealed box (the encoded
/// ``ChannelDescriptor`` sealed to the recipient agent's X25519 key) and an
/// Ed25519 signature by the host over everything before the signature.
///
/// This type only frames bytes; the cryptography lives in the grant module
/// (sealing, signing) and in the channel library (verifying, opening), so the
/// vocabulary module stays free of crypto.
///
/// | Field | Encoding |
/// |---|---|
/// | magic | 4 bytes `"SCDE"` |
/// | version | u16 = 1 |
/// | recipient | u16 domain id |
/// | box length | u32 |
/// | sealed box | box length bytes |
/// | signature | 64 bytes, Ed25519 over all the bytes above |
///
/// An opener verifies the signature first, over the whole signed portion, so
/// a change to *any* byte (magic and lengths included) is a bad signature;
/// only a correctly signed envelope is parsed further.
public enum DescriptorEnvelope {
    /// The first four bytes.
    public static let magic: [UInt8] = Array("SCDE".utf8)
    /// The framing version this code writes and reads.
    public static let version: UInt16 = 1
    /// Bytes before the sealed box.
    public static let headerByteCount = 12
    /// Length of the Ed25519 signature at the end.
    public static let signatureByteCount = 64
    /// The largest sealed box accepted (a descriptor is a few hundred bytes).
    public static let maximumBoxByteCount = 4096

    /// The bytes the host signs: header and sealed box.
    public static func signedPortion(recipient: DomainID, sealedBox: [UInt8]) -> [UInt8] {
        precondition(sealedBox.count <= maximumBoxByteCount, "a sealed descriptor is far below the limit")
        var writer = ByteWriter()
        writer.reserve(headerByteCount + sealedBox.count + signatureByteCount)
        writer.append(magic)
        writer.append(version)
        writer.append(recipient.rawValue)
        writer.append(UInt32(sealedBox.count))
        writer.append(sealedBox)
        return writer.bytes
    }

    /// The envelope: the signed portion followed by its signature.
    public static func assemble(signedPortion: [UInt8], signature: [UInt8]) -> [UInt8] {
        precondition(signature.count == signatureByteCount, "an Ed25519 signature is 64 bytes")
        return signedPortion + signature
    }

    /// An envelope split into its parts, before any check of the signature.
    public struct Parts: Sendable {
        /// Everything the signature covers.
        public var signedPortion: ArraySlice<UInt8>
        /// The trailing 64 bytes.
        public var signature: ArraySlice<UInt8>
    }

    /// Splits `envelope` into the signed portion and the signature; only the
    /// total length is checked.
    /// - Throws: ``ChannelDescriptor/DecodingError/truncated(field:)`` for an
    ///   envelope too short to hold a header, an empty box and a signature.
    public static func split(_ envelope: [UInt8]) throws(ChannelDescriptor.DecodingError) -> Parts {
        guard envelope.count >= headerByteCount + signatureByteCount else { throw .truncated(field: "envelope") }
        let cut = envelope.count - signatureByteCount
        return Parts(signedPortion: envelope[..<cut], signature: envelope[cut...])
    }

    /// The header fields of a signed portion.
    public struct Header: Sendable, Equatable {
        /// The domain the envelope was made for.
        public var recipient: DomainID
        /// The sealed box.
        public var sealedBox: [UInt8]
    }

    /// Parses a signed portion (after its signature was verified).
    /// - Throws: ``ChannelDescriptor/DecodingError`` naming the field:
    ///   `envelope.magic`, `envelope.version` (as `unsupportedVersion`),
    ///   `envelope.boxLength`.
    public static func parse(signedPortion: some Collection<UInt8>) throws(ChannelDescriptor.DecodingError) -> Header {
        try ByteReader.reading(signedPortion) { reader throws(ChannelDescriptor.DecodingError) in try parse(&reader) }
    }

    private static func parse(_ reader: inout ByteReader) throws(ChannelDescriptor.DecodingError) -> Header {
        guard try reader.bytes(4, field: "envelope.magic") == magic else {
            throw .invalid(field: "envelope.magic", reason: "not a descriptor envelope")
        }
        let found = try reader.u16(field: "envelope.version")
        guard found == version else { throw .unsupportedVersion(found) }
        let recipient = DomainID(rawValue: try reader.u16(field: "envelope.recipient"))
        let length = Int(try reader.u32(field: "envelope.boxLength"))
        guard length <= maximumBoxByteCount, length == reader.remaining else {
            throw .invalid(field: "envelope.boxLength", reason: "\(length) does not match the \(reader.remaining) bytes present")
        }
        return Header(recipient: recipient, sealedBox: try reader.bytes(length, field: "envelope.sealedBox"))
    }
}
