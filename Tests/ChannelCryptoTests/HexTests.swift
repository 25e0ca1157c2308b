import ChannelCrypto
import Testing

/// The hex codec: RFC 4648 §10's base16 examples, every byte value, and the
/// errors a user can cause.
@Suite("Hex codec")
struct HexTests {
    @Test("RFC 4648 base16 examples, lower-case out, either case in")
    func rfc4648() throws {
        let examples: [(String, String)] = [
            ("", ""), ("f", "66"), ("fo", "666f"), ("foo", "666f6f"),
            ("foob", "666f6f62"), ("fooba", "666f6f6261"), ("foobar", "666f6f626172"),
        ]
        for (text, encoded) in examples {
            #expect(Hex.encode(Array(text.utf8)) == encoded)
            #expect(try Hex.decode(encoded) == Array(text.utf8))
            #expect(try Hex.decode(encoded.uppercased()) == Array(text.utf8))
        }
    }

    @Test("Every byte value round-trips")
    func everyByte() throws {
        let all = (0...255).map { UInt8($0) }
        let encoded = Hex.encode(all)
        #expect(encoded.count == 512)
        #expect(encoded.hasPrefix("000102") && encoded.hasSuffix("fdfeff"))
        #expect(try Hex.decode(encoded) == all)
        #expect(try Hex.decode("DeadBEEF") == [0xde, 0xad, 0xbe, 0xef])
    }

    @Test("Odd length, non-digits, prefixes and separators are refused")
    func malformed() {
        #expect(thrownError { try Hex.decode("abc") } == .malformedInput("hex string has an odd number of digits (3)"))
        #expect(thrownError { try Hex.decode("zz") } == .malformedInput("not a hex digit at position 0"))
        #expect(thrownError { try Hex.decode("0g") } == .malformedInput("not a hex digit at position 1"))
        #expect(thrownError { try Hex.decode("0x00") } == .malformedInput("not a hex digit at position 1"))
        #expect(thrownError { try Hex.decode("00 11") }?.malformedInputMessage != nil)
        #expect(thrownError { try Hex.decode("00:1") }?.malformedInputMessage != nil)
        #expect(thrownError { try Hex.decode("é0") }?.malformedInputMessage != nil)
    }
}
