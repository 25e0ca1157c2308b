import Altp2m
import XenInterface

/// Why a domain counts as dead for its channels: the hypervisor no longer
/// runs it, or never will again.
public enum DomainDeath: Equatable, Sendable, CustomStringConvertible {
    /// Not in `xc_domain_getinfolist`'s list: destroyed, its id released.
    case gone
    /// `XEN_DOMINF_dying`: being destroyed (its memory is going).
    case dying
    /// `XEN_DOMINF_shutdown` with this reason (crash, poweroff, reboot,
    /// watchdog, soft reset): its vCPUs stopped for good; the toolstack
    /// destroys it or keeps it as a corpse, but it runs no more.
    case shutDown(reason: UInt32)

    public var description: String {
        switch self {
        case .gone: return "gone"
        case .dying: return "dying"
        case .shutDown(let reason):
            let names = ["poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset"]
            return "shut down (\(reason < names.count ? names[Int(reason)] : "reason \(reason)"))"
        }
    }
}

/// Finding the domains whose channels must go, as Xen's own tools find a
/// domain's death after `@releaseDomain`.
extension XenControl {
    /// `SHUTDOWN_suspend`: the one shutdown a domain comes back from
    /// (`xc_domain_resume` after a cancelled save or checkpoint).
    static let shutdownSuspend: UInt32 = 2

    /// The libxenstore handle, for `chanctl domain watch` to watch
    /// `@releaseDomain` on the connection the backend already holds.
    package var storeLibrary: any XenStoreLibrary { store }

    /// Which of `domains` are dead, and why; those alive are left out.
    ///
    /// Follows libxl's `domain_death_xswatch_callback`
    /// (tools/libs/light/libxl_domain.c), run on every `@releaseDomain`:
    /// list the domains with `xc_domain_getinfolist` from the lowest id
    /// asked about; one missing from the list is destroyed ("missing from
    /// list"), one with `XEN_DOMINF_dying` is being destroyed, one with
    /// `XEN_DOMINF_shutdown` has shut down (libxl reports the reason). The
    /// same states make xenstored's `check_domains` fire `@releaseDomain`
    /// (shutdown, dying) and its `domain_cleanup` release a domain that
    /// `xc_domain_getinfo` no longer finds. The event does not say which
    /// domain: several deaths may share one event, so every domain asked
    /// about is checked each time.
    ///
    /// Unlike libxl, a domain shut down for `suspend` counts as alive: a
    /// cancelled save resumes it with its memory and views as they were.
    /// - Throws: the error of `xc_domain_getinfolist`; nothing is judged
    ///   dead when the list cannot be read.
    public func deadDomains(among domains: some Sequence<DomainID>) throws(XenErrno) -> [DomainID: DomainDeath] {
        let wanted = Set(domains)
        guard let lowest = wanted.min() else { return [:] }
        var found: [DomainID: XenDomainRecord] = [:]
        // libxl_list_domain's loop: batches from the next id until a short one.
        var first = lowest
        let batch = 256
        while true {
            let records = try xc.domainGetInfoList(first: first, maximum: batch)
            for record in records where wanted.contains(record.domain) { found[record.domain] = record }
            guard records.count == batch, let last = records.last?.domain, last.rawValue < UInt16.max else { break }
            first = DomainID(rawValue: last.rawValue + 1)
        }
        var dead: [DomainID: DomainDeath] = [:]
        for domain in wanted {
            guard let record = found[domain] else {
                dead[domain] = .gone
                continue
            }
            if record.isDying {
                dead[domain] = .dying
            } else if let reason = record.shutdownReason, reason != Self.shutdownSuspend {
                dead[domain] = .shutDown(reason: reason)
            }
        }
        return dead
    }
}
