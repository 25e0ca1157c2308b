/// A grant-table operation's status (`GNTST_*` in Xen's
/// `xen/include/public/grant_table.h`): what `GNTTABOP_map_grant_ref` and
/// `GNTTABOP_unmap_grant_ref` write into each element's `status`.
///
/// Only the statuses the simulator can produce are listed. The Linux gntdev
/// driver turns any status other than ``okay`` into `EINVAL` for the
/// process (`gntdev_map_grant_pages`), so libxengnttab's caller sees
/// `EINVAL`; the daemon reports both.
public enum GrantStatus: Int16, Error, Sendable, Equatable, CustomStringConvertible {
    /// `GNTST_okay`.
    case okay = 0
    /// `GNTST_general_error`: the entry is not granted to the caller, a
    /// read-only grant asked to be mapped writable, the p2m refused.
    case generalError = -1
    /// `GNTST_bad_domain`: no such granting domain.
    case badDomain = -2
    /// `GNTST_bad_gntref`: the reference is beyond the granter's table.
    case badGrantRef = -3
    /// `GNTST_bad_handle`: no such mapping.
    case badHandle = -4
    /// `GNTST_permission_denied`: XSM refused (not produced: the dummy
    /// policy allows every map).
    case permissionDenied = -8
    /// `GNTST_bad_page`: the granted gfn holds no RAM page.
    case badPage = -9
    /// `GNTST_no_space`: out of maptrack handles.
    case noSpace = -13

    /// Xen's name, such as `GNTST_bad_gntref`.
    public var name: String {
        switch self {
        case .okay: "GNTST_okay"
        case .generalError: "GNTST_general_error"
        case .badDomain: "GNTST_bad_domain"
        case .badGrantRef: "GNTST_bad_gntref"
        case .badHandle: "GNTST_bad_handle"
        case .permissionDenied: "GNTST_permission_denied"
        case .badPage: "GNTST_bad_page"
        case .noSpace: "GNTST_no_space"
        }
    }

    /// The status with this name, or nil.
    public init?(name: String) {
        guard let match = [Self.okay, .generalError, .badDomain, .badGrantRef, .badHandle, .permissionDenied, .badPage, .noSpace]
            .first(where: { $0.name == name }) else { return nil }
        self = match
    }

    public var description: String { "\(name) (\(rawValue))" }
}
