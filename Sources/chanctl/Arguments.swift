import Altp2m
import Altp2mSim
import ArgumentParser

/// Parsers for the values altp2m commands take. Each error names the bad
/// value and what is expected.
enum ArgumentValue {
    /// A gfn: hex (`0x100`), decimal (`256`), or `~0` for `INVALID_GFN`.
    static func gfn(_ text: String) throws -> UInt64 {
        if text == "~0" || text.lowercased() == "invalid" { return ~0 }
        if let value = integer(text) { return value }
        throw ValidationError("bad GFN '\(text)': expected a frame number in hex (0x100) or decimal (256), or ~0 for INVALID_GFN")
    }

    /// A gfn that must name a real frame (no `~0`).
    static func realGFN(_ text: String) throws -> UInt64 {
        let value = try gfn(text)
        guard value != ~0 else {
            throw ValidationError("bad GFN '\(text)': this command needs a real frame number, not ~0")
        }
        return value
    }

    /// An access type name, or a raw `xenmem_access_t` number (to test how
    /// the hypervisor treats out-of-range values).
    static func access(_ text: String) throws -> JSONValue {
        if MemAccess(text) != nil { return .string(text) }
        if let number = UInt16(text) { return .int(Int64(number)) }
        throw ValidationError("bad ACCESS '\(text)': expected one of \(accessNames), or a raw xenmem_access_t number")
    }

    static let accessNames = "n r w rw x rx wx rwx rx2rw n2rwx default (r_pw on the --xen 4.20 and 4.21 profiles)"

    /// `on` / `off` (also `1`/`0`, `true`/`false`).
    static func onOff(_ text: String) throws -> Bool {
        switch text.lowercased() {
        case "on", "1", "true", "yes": return true
        case "off", "0", "false", "no": return false
        default: throw ValidationError("bad value '\(text)': expected on or off")
        }
    }

    /// A view index (0...65535; the hypervisor decides which exist).
    static func view(_ text: String) throws -> UInt16 {
        guard let value = integer(text), value <= 0xFFFF else {
            throw ValidationError("bad VIEW '\(text)': expected a view index 0...65535 (see altp2m create-view)")
        }
        return UInt16(value)
    }

    /// A vCPU number.
    static func vcpu(_ text: String) throws -> UInt32 {
        guard let value = integer(text), value <= UInt64(UInt32.max) else {
            throw ValidationError("bad VCPU '\(text)': expected a vCPU number (0 for the first)")
        }
        return UInt32(value)
    }

    /// A `GFN=ACCESS` pair of `set-access-multi`.
    static func gfnAccessPair(_ text: String) throws -> JSONValue {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else {
            throw ValidationError("bad entry '\(text)': expected GFN=ACCESS, for example 0x100=rx")
        }
        return ["gfn": .uint(try gfn(parts[0])), "access": try access(parts[1])]
    }

    /// Hex with `0x`, or decimal.
    static func integer(_ text: String) -> UInt64? {
        let lower = text.lowercased()
        if lower.hasPrefix("0x") { return UInt64(lower.dropFirst(2), radix: 16) }
        return UInt64(lower)
    }
}

/// The `DOM` argument: a domain name or id, passed to the daemon as given.
func domainArgument(_ text: String) -> JSONValue { .string(text) }
