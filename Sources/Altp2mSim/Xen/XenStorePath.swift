import Altp2m

/// xenstore path rules as xenstored 4.17 applies them
/// (`tools/xenstore/xenstored_core.c`, `xenstored_watch.c`).
public enum XenStorePath {
    /// `XENSTORE_REL_PATH_MAX` (xs_wire.h): xenstored's default
    /// `quota_max_path_len`, counted after a `/local/domain/N/` prefix.
    public static let relativeMax = 2048
    /// `XENSTORE_PAYLOAD_MAX`: the largest value a request can carry.
    public static let payloadMax = 4096

    /// `valid_chars`: letters, digits and `-/_@` only.
    public static func validChars(_ path: String) -> Bool {
        path.utf8.allSatisfy { byte in
            (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
                || byte == 0x2D || byte == 0x2F || byte == 0x5F || byte == 0x40
        }
    }

    /// `is_valid_nodename`: absolute, no trailing `/` (except the root), no
    /// `//`, at most ``relativeMax`` bytes after a `/local/domain/N/` prefix,
    /// and ``validChars(_:)``.
    public static func isValid(_ path: String) -> Bool {
        guard path.hasPrefix("/") else { return false }
        if path.hasSuffix("/") && path != "/" { return false }
        if path.contains("//") { return false }
        return path.utf8.count <= localPrefixLength(path) + relativeMax && validChars(path)
    }

    /// The length of a leading `/local/domain/N/` (N up to 5 digits, as
    /// the `%5u` of `is_valid_nodename` reads it), or 0.
    static func localPrefixLength(_ path: String) -> Int {
        let prefix = "/local/domain/"
        guard path.hasPrefix(prefix) else { return 0 }
        let rest = path.utf8.dropFirst(prefix.utf8.count)
        let digits = rest.prefix { $0 >= 0x30 && $0 <= 0x39 }
        guard !digits.isEmpty, digits.count <= 5, rest.dropFirst(digits.count).first == 0x2F else { return 0 }
        return prefix.utf8.count + digits.count + 1
    }

    /// `canonicalize`: a path not starting with `/` or `@` is relative to the
    /// connection's implicit path, `/local/domain/<domid>` (`get_implicit_path`).
    public static func canonicalize(_ path: String, domain: DomainID) -> String {
        if path.hasPrefix("/") || path.hasPrefix("@") { return path }
        return implicitPath(domain) + "/" + path
    }

    /// `/local/domain/<domid>`.
    public static func implicitPath(_ domain: DomainID) -> String { "/local/domain/\(domain.rawValue)" }

    /// `get_parent`: the path without its last component (`/` for a top-level node).
    public static func parent(_ path: String) -> String {
        guard let slash = path.dropFirst().lastIndex(of: "/") else { return "/" }
        return String(path[..<slash])
    }

    /// The last component.
    public static func basename(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// `is_child` (xenstored_watch.c): `child` is `parent` or below it; every
    /// path is below `/`.
    public static func isChild(_ child: String, of parent: String) -> Bool {
        if parent == "/" { return true }
        guard child.hasPrefix(parent) else { return false }
        let rest = child.utf8.dropFirst(parent.utf8.count)
        return rest.isEmpty || rest.first == 0x2F
    }
}
