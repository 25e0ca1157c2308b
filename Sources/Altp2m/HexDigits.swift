/// Hexadecimal text of bytes: channel ids, descriptors in xenstore, the
/// agents' frame reports.
package enum HexDigits {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Two lower-case digits per byte.
    package static func encode(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return out
    }

    /// The bytes of an even number of digits; `nil` for anything else.
    /// - Parameter upperCase: whether `A`-`F` are accepted too (a
    ///   descriptor in xenstore is written lower-case only, so nothing else
    ///   is taken there).
    package static func decode(_ text: some Collection<UInt8>, upperCase: Bool = true) -> [UInt8]? {
        let digits = Array(text)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index], upperCase), let low = nibble(digits[index + 1], upperCase) else {
                return nil
            }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8, _ upperCase: Bool) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F") where upperCase: c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
