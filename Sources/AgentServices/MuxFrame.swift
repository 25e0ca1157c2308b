/// The frames of the forwarding protocol that `guest-agent forward` speaks (docs/PROTOCOL.md, "Forwarding"):
/// one or more whole frames per channel message, each `type u8, connection
/// id u32 BE, length u32 BE, payload`. Everything read here comes from the
/// peer and is checked before use; a bad frame is a ``MuxProtocolError``
/// naming it, never a crash.
package enum MuxFrameType: UInt8, CustomStringConvertible {
    case hello = 1, open, opened, refused, data, credit, fin, reset

    package var description: String {
        switch self {
        case .hello: "HELLO"
        case .open: "OPEN"
        case .opened: "OPENED"
        case .refused: "REFUSED"
        case .data: "DATA"
        case .credit: "CREDIT"
        case .fin: "FIN"
        case .reset: "RESET"
        }
    }
}

/// A protocol violation by the peer: ends the session.
package struct MuxProtocolError: Error, CustomStringConvertible {
    package var description: String

    package init(description: String) { self.description = description }
}

package struct MuxFrame {
    package var type: MuxFrameType
    package var id: UInt32
    package var payload: UnsafeRawBufferPointer

    package var text: String { String(decoding: payload, as: UTF8.self) }
}

package enum MuxCodec {
    package static let headerBytes = 9
    package static let magic: [UInt8] = Array("GAFWD".utf8)
    package static let version: UInt8 = 1
    package static let helloBytes = magic.count + 2 + 4
    /// The longest reason a REFUSED or RESET carries.
    package static let maximumReasonBytes = 512

    /// Calls `body` for each frame of `message`, checking the framing and
    /// each type's payload size.
    package static func parse(_ message: UnsafeRawBufferPointer, _ body: (MuxFrame) throws(MuxProtocolError) -> Void) throws(MuxProtocolError) {
        var offset = 0
        while offset < message.count {
            let left = message.count - offset
            guard left >= headerBytes else {
                throw MuxProtocolError(description: "short frame: \(left) bytes left in the message, a frame header is \(headerBytes)")
            }
            let rawType = message[offset]
            let id = readU32(message, offset + 1)
            let length = Int(readU32(message, offset + 5))
            guard let type = MuxFrameType(rawValue: rawType) else {
                throw MuxProtocolError(description: "unknown frame type \(rawType) (connection \(id))")
            }
            guard length <= left - headerBytes else {
                throw MuxProtocolError(description: "\(type) frame for connection \(id) claims \(length) bytes but the message holds \(left - headerBytes)")
            }
            let fits: Bool
            switch type {
            case .hello: fits = length == helloBytes
            case .open, .opened, .fin: fits = length == 0
            case .credit: fits = length == 4
            case .refused, .reset: fits = length <= maximumReasonBytes
            case .data: fits = length > 0
            }
            guard fits else {
                throw MuxProtocolError(description: "\(type) frame for connection \(id) has a payload of \(length) bytes, which that frame never has")
            }
            let start = offset + headerBytes
            try body(MuxFrame(type: type, id: id, payload: UnsafeRawBufferPointer(rebasing: message[start..<start + length])))
            offset = start + length
        }
    }

    package static func readU32(_ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
    }

    package static func writeU32(_ value: UInt32, _ bytes: UnsafeMutableRawBufferPointer, _ at: Int) {
        bytes[at] = UInt8(value >> 24); bytes[at + 1] = UInt8(truncatingIfNeeded: value >> 16)
        bytes[at + 2] = UInt8(truncatingIfNeeded: value >> 8); bytes[at + 3] = UInt8(truncatingIfNeeded: value)
    }

    /// Writes a frame header at `at`; the payload (length bytes) follows.
    package static func writeHeader(_ type: MuxFrameType, id: UInt32, length: Int, _ bytes: UnsafeMutableRawBufferPointer, _ at: Int) {
        bytes[at] = type.rawValue
        writeU32(id, bytes, at + 1)
        writeU32(UInt32(length), bytes, at + 5)
    }

    /// The hello's payload: magic, version, role (0 listens, 1 connects) and
    /// the window the sender grants each connection.
    package static func helloPayload(listening: Bool, window: UInt32) -> [UInt8] {
        var bytes = magic + [version, listening ? 0 : 1, 0, 0, 0, 0]
        bytes.withUnsafeMutableBytes { writeU32(window, $0, magic.count + 2) }
        return bytes
    }
}
