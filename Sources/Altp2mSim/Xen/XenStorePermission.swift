import Altp2m

/// One entry of a xenstore node's permission list (`struct xs_permissions`).
///
/// The first entry names the owner and what every domain not listed after
/// it may do; each later entry grants one domain its own access. The text
/// form is xenstored's: a letter (`n` none, `r` read, `w` write, `b` both)
/// then the domain id, as in `"r5"`.
public struct XenStorePermission: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// `XS_PERM_READ`, `XS_PERM_WRITE`, `XS_PERM_OWNER` as bits.
    public struct Access: OptionSet, Hashable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let read = Access(rawValue: 1)
        public static let write = Access(rawValue: 2)
        /// Only ever the result of ``XenStorePermission/access(for:in:)``.
        public static let owner = Access(rawValue: 4)
    }

    public var domain: DomainID
    public var access: Access

    public init(_ domain: DomainID, _ access: Access) {
        self.domain = domain
        self.access = access.subtracting(.owner)
    }

    /// Parses `"r5"`, `"n0"`, `"w1"`, `"b2"` (`xs_strings_to_perms`); nil
    /// for anything else.
    public init?(_ text: String) {
        guard let letter = text.first, let id = UInt16(text.dropFirst()) else { return nil }
        switch letter {
        case "n": access = []
        case "r": access = .read
        case "w": access = .write
        case "b": access = [.read, .write]
        default: return nil
        }
        domain = DomainID(rawValue: id)
    }

    public var description: String {
        let letter = access.contains([.read, .write]) ? "b" : access.contains(.read) ? "r" : access.contains(.write) ? "w" : "n"
        return letter + String(domain.rawValue)
    }

    /// `perm_for_conn`: dom0 and the owner may do everything; another
    /// domain gets its own entry's access if listed after the first, else
    /// the first entry's.
    public static func access(for caller: DomainID, privileged: Bool, in list: [XenStorePermission]) -> Access {
        guard let first = list.first else { return privileged ? [.read, .write, .owner] : [] }
        if privileged || first.domain == caller { return [.read, .write, .owner] }
        if let own = list.dropFirst().first(where: { $0.domain == caller }) { return own.access }
        return first.access
    }
}
