import Altp2m

/// A domain named the way a user names it: by name, or by id.
public enum DomainReference: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The domain with this name.
    case name(String)
    /// The domain with this id.
    case id(DomainID)

    /// A command-line argument: a domain name, or an id (`7` or `d7`) when no
    /// domain has that name.
    public init(parsing text: String) { self = .name(text) }

    public init(stringLiteral value: String) { self = .name(value) }

    public var description: String {
        switch self {
        case .name(let name): name
        case .id(let id): "\(id)"
        }
    }
}

/// What to create: ``GrantModule/createChannel(_:)``'s argument.
public struct ChannelRequest: Sendable {
    /// The channel's name: how agents and `chanctl` refer to it; also the key
    /// its descriptors are published under. See ``ChannelDescriptor/isValidName(_:)``.
    public var name: String
    /// One domain (which one is the initiator is decided by domain id).
    public var first: DomainReference
    /// The other domain.
    public var second: DomainReference
    /// Pages in the window, control page included (2...512).
    public var pageCount: Int
    /// A one-way channel carries data from the initiator to the responder only.
    public var oneWay: Bool
    /// The session's AEAD.
    public var suite: ChannelDescriptor.CipherSuite
    /// Encrypted (the default) or isolated.
    public var mode: ChannelDescriptor.Mode
    /// How long the descriptors are valid, in seconds: an agent must open its
    /// descriptor within this time (a re-issue makes fresh ones).
    public var descriptorLifetime: UInt64
    /// Accept domains in mixed altp2m mode, where any code in the guest can
    /// create, change and unhide views (the result carries a warning).
    public var allowMixed: Bool

    /// A request; the defaults are a two-way, encrypted ChaCha20-Poly1305
    /// channel whose descriptors are valid for an hour.
    public init(name: String, between first: DomainReference, and second: DomainReference, pageCount: Int,
                oneWay: Bool = false, suite: ChannelDescriptor.CipherSuite = .chachapoly,
                mode: ChannelDescriptor.Mode = .encrypted, descriptorLifetime: UInt64 = 3600,
                allowMixed: Bool = false) {
        self.name = name
        self.first = first
        self.second = second
        self.pageCount = pageCount
        self.oneWay = oneWay
        self.suite = suite
        self.mode = mode
        self.descriptorLifetime = descriptorLifetime
        self.allowMixed = allowMixed
    }
}

/// One end of a channel, as ``GrantModule`` reports it.
public struct ChannelEndInfo: Hashable, Sendable {
    /// The domain.
    public var domain: DomainID
    /// Its name when the channel was made.
    public var domainName: String
    /// Its channel view.
    public var view: ViewID
    /// The first gfn of its window.
    public var windowFirstGFN: GFN
    /// Where its host p2m maps the shared frames.
    public var backingGFNs: [GFN]
}

/// A channel, as ``GrantModule/listChannels()`` reports it.
public struct ChannelSummary: Hashable, Sendable, CustomStringConvertible {
    /// The channel's name.
    public var name: String
    /// Its id (also in the descriptors).
    public var id: ChannelID
    /// The lower-id domain: writes ring 0.
    public var initiator: ChannelEndInfo
    /// The higher-id domain.
    public var responder: ChannelEndInfo
    /// Pages in each window.
    public var pageCount: Int
    /// One-way or two-way.
    public var isOneWay: Bool
    /// The session's AEAD.
    public var suite: ChannelDescriptor.CipherSuite
    /// Encrypted or isolated.
    public var mode: ChannelDescriptor.Mode
    /// The notification port.
    public var notificationPort: UInt32
    /// When it was made (Unix seconds).
    public var createdAt: UInt64
    /// When its current descriptors expire (Unix seconds).
    public var expiresAt: UInt64
    /// The generation of its current descriptors.
    public var generation: UInt64
    /// When its descriptors were last issued again (`chanctl channel
    /// reissue`, Unix seconds); nil while they are the first ones.
    public var reissuedAt: UInt64? = nil

    public var description: String {
        "\(name) \(initiator.domainName)(\(initiator.domain)) <-> \(responder.domainName)(\(responder.domain)), "
            + "\(pageCount) pages\(isOneWay ? " one-way" : ""), \(suite), \(mode)"
    }
}

/// What ``GrantModule/createChannel(_:)`` returns.
public struct ChannelCreation: Sendable {
    /// The channel.
    public var channel: ChannelSummary
    /// Things the operator should know: mixed mode, other visible views.
    public var warnings: [String]
}

/// A channel's detailed state, as ``GrantModule/showChannel(_:)`` reports it.
public struct ChannelDetails: Sendable {
    /// Healthy, or what is wrong.
    public enum State: Hashable, Sendable, CustomStringConvertible {
        /// Every check passed.
        case active
        /// The descriptors expired; agents that have not opened them cannot
        /// any more (re-issue them).
        case descriptorsExpired
        /// Something in the hypervisor no longer matches what the grant
        /// module set up; each string says what.
        case degraded([String])

        public var description: String {
            switch self {
            case .active: "active"
            case .descriptorsExpired: "descriptors expired"
            case .degraded(let problems): "degraded: " + problems.joined(separator: "; ")
            }
        }
    }

    /// The channel.
    public var channel: ChannelSummary
    /// Its state.
    public var state: State
    /// Seconds since it was created.
    public var ageSeconds: UInt64
    /// Every active view of each domain, with visibility where known.
    public var views: [DomainID: [ActiveView]]
}

/// What a teardown did not manage to undo, and what it left as it is on
/// purpose (the channel is gone from the registry either way).
public struct ChannelTeardown: Sendable {
    /// The channel's name.
    public var name: String
    /// Hypervisor calls that failed during the teardown, each with its
    /// domain and error; empty when everything was undone.
    public var problems: [String]
    /// Information, not failures: settings the teardown left in place
    /// because it cannot tell whether they are its own (an `access_required`
    /// the host cannot read), each with the command that changes it. Kept
    /// apart from ``problems`` so that an empty `problems` still means the
    /// teardown undid everything it knows it did.
    public var notes: [String] = []
}

/// Why the host closed a channel (the control page's host `reason`).
public enum ChannelCloseReason: UInt32, Sendable {
    /// The host revoked the channel.
    case revoked = 0
    /// The initiator's domain died.
    case initiatorDied = 1
    /// The responder's domain died.
    case responderDied = 2
}
