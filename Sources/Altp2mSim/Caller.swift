import Altp2m

/// Who makes a hypercall: decides the §1.4 permission matrix and what
/// `DOMID_SELF` means.
public enum Caller: Hashable, Sendable, CustomStringConvertible {
    /// The control domain (dom0): may do everything.
    case controlDomain
    /// The device-model domain of the given domain (`src->target == d`): may
    /// do everything to that domain and nothing to others.
    case deviceModel(of: DomainID)
    /// A guest calling from inside the given domain, at kernel level (CPL 0)
    /// or user level (CPL > 0, refused before dispatch with `EPERM`).
    case guest(DomainID, privilege: GuestPrivilege)

    /// The privilege level of a guest caller.
    public enum GuestPrivilege: Hashable, Sendable {
        /// CPL 0.
        case kernel
        /// CPL > 0.
        case user
    }

    /// A guest kernel (CPL 0) in `domain`.
    public static func guestKernel(_ domain: DomainID) -> Caller { .guest(domain, privilege: .kernel) }

    /// Guest user mode (CPL 3) in `domain`.
    public static func guestUser(_ domain: DomainID) -> Caller { .guest(domain, privilege: .user) }

    /// Whether the caller is a guest acting on `domain` itself (decides the
    /// suppress-#VE bit change_gfn writes, spec §5.1).
    func isGuest(of domain: DomainID) -> Bool {
        if case .guest(let own, _) = self { return own == domain }
        return false
    }

    public var description: String {
        switch self {
        case .controlDomain: "dom0"
        case .deviceModel(let target): "device model of \(target)"
        case .guest(let domain, .kernel): "guest kernel of \(domain)"
        case .guest(let domain, .user): "guest user mode of \(domain)"
        }
    }
}
