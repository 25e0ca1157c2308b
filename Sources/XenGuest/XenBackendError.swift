import Altp2m

/// Why the Xen backend could not start.
public enum XenBackendError: Error, Equatable, Sendable, CustomStringConvertible {
    /// This machine is not a Xen domain that can use the interface (the
    /// message says which device is missing and what to use instead).
    case unavailable(String)
    /// A Xen library call failed while opening a handle.
    case hypervisor(XenErrno, String)

    public var description: String {
        switch self {
        case .unavailable(let message): message
        case .hypervisor(let errno, let what): "\(what): \(errno)"
        }
    }
}

/// The xenstore layout of the Xen grant flow (docs/XEN.md): what the host
/// asks for and what each agent reports, under the agent's own
/// `/local/domain/<id>/data`, which the guest can write.
public enum XenStoreLayout {
    /// Where a domain's descriptors are published (one node per channel,
    /// lower-case hex of the envelope, readable by that domain only).
    public static func descriptorDirectory(_ domain: DomainID) -> String {
        "/local/domain/\(domain.rawValue)/data/secure-channel"
    }

    /// The set-up directory of `domain` for one set of frames shared with
    /// `peer` (one per channel: `setup` names it, the same on both sides):
    /// `request` (written by the host: the page count), `gfns` (written by
    /// the agent: its backing gfns, space-separated hex), `grefs` (the
    /// granting side's grant references, copied by the host to the mapping
    /// side), `port` (the granting side's unbound event channel), `view`
    /// (written by the host: the domain's channel view, decimal).
    public static func setupDirectory(_ domain: DomainID, peer: DomainID, setup: String) -> String {
        "\(peerSetupDirectory(domain, peer: peer))/\(setup)"
    }

    /// Where the set-up directories of `domain` for `peer` live.
    public static func peerSetupDirectory(_ domain: DomainID, peer: DomainID) -> String {
        "\(setupRoot(domain))/\(peer.rawValue)"
    }

    /// Where a domain's set-up directories live (one per peer, one below it
    /// per set of frames); its agent watches it.
    public static func setupRoot(_ domain: DomainID) -> String {
        "/local/domain/\(domain.rawValue)/data/secure-channel-setup"
    }

    /// The numbers of a `gfns`, `grefs` or `port` node: space-separated hexadecimal.
    package static func parseNumbers(_ bytes: [UInt8]) -> [UInt64]? {
        let text = String(decoding: bytes, as: UTF8.self)
        var numbers: [UInt64] = []
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            guard let value = UInt64(word.hasPrefix("0x") ? word.dropFirst(2) : word[...], radix: 16) else { return nil }
            numbers.append(value)
        }
        return numbers
    }
}

/// The current `errno` as a hypervisor error (EINVAL if a library forgot to set it).
package func currentXenErrno() -> XenErrno {
    let code = errnoValue()
    return XenErrno(rawValue: code == 0 ? 22 : code)
}
