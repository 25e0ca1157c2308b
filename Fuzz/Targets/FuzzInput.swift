/// The fuzzer's bytes, read front to back as the decisions of one run.
///
/// Reads past the end return zeros (and `isExhausted` turns true), so every
/// input, however short, is a complete run: the fuzzer never has to learn a
/// length field before it reaches the code under test.
package struct FuzzInput {
    private let bytes: [UInt8]
    private var position = 0

    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    package init(_ buffer: UnsafeRawBufferPointer) { bytes = Array(buffer) }

    package var isExhausted: Bool { position >= bytes.count }
    package var remainingCount: Int { max(0, bytes.count - position) }

    package mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    package mutating func bool() -> Bool { byte() & 1 != 0 }

    package mutating func u16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }

    package mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }

    package mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }

    /// Up to `count` bytes (fewer at the end of the input).
    package mutating func bytes(_ count: Int) -> [UInt8] {
        let available = min(count, remainingCount)
        defer { position += available }
        return Array(bytes[position..<(position + available)])
    }

    /// Everything not yet read.
    package mutating func rest() -> [UInt8] { bytes(remainingCount) }
}
