/// A Noise handshake pattern (Noise revision 34, §7) with its modifiers (§9):
/// the pre-messages each party's peer knows in advance and the tokens of
/// every handshake message.
///
/// The interactive base patterns NN, NK, KK, IK and XX and the one-way
/// pattern K (§7.4) are supported, with `pskN` modifiers (`KKpsk2`,
/// `IKpsk2`, `Kpsk0`, ...). Messages alternate direction; the initiator sends
/// message 0. Patterns are values: the only way to get one is a static member
/// or parsing a name, so every pattern is one the specification defines.
public struct HandshakePattern: Sendable, Hashable, CustomStringConvertible {
    /// A token of a pre-message or message pattern (§7.1).
    public enum Token: String, Sendable, Hashable, CustomStringConvertible {
        /// The sender's ephemeral public key.
        case e
        /// The sender's static public key (encrypted once a key exists).
        case s
        /// DH between the two ephemeral keys.
        case ee
        /// DH between the initiator's ephemeral and the responder's static key.
        case es
        /// DH between the initiator's static and the responder's ephemeral key.
        case se
        /// DH between the two static keys.
        case ss
        /// The next pre-shared key is mixed in (§9).
        case psk

        public var description: String { rawValue }
    }

    /// The full pattern name, base and modifiers: `"KKpsk2"`.
    public let name: String
    /// The base pattern: `"KK"`.
    public let baseName: String
    /// The modifiers in the order they appear in the name: `["psk2"]`.
    public let modifiers: [String]
    /// Keys of the initiator that the responder knows before the handshake.
    public let initiatorPreMessage: [Token]
    /// Keys of the responder that the initiator knows before the handshake.
    public let responderPreMessage: [Token]
    /// The handshake messages; message `i` is sent by the initiator when `i`
    /// is even and by the responder when it is odd.
    public let messages: [[Token]]

    public var description: String { name }

    /// Whether the pattern has a `psk` modifier; then every `e` token also
    /// calls `MixKey(e.public_key)` (§9.2).
    public var isPSK: Bool { presharedKeyCount > 0 }

    /// How many pre-shared keys each party must supply (one per `psk` token).
    public var presharedKeyCount: Int {
        messages.reduce(0) { $0 + $1.count(where: { $0 == .psk }) }
    }

    /// The base patterns this implementation supports.
    public static let supportedBaseNames = ["NN", "NK", "KK", "IK", "XX", "K"]

    /// Whether this is a one-way pattern (§7.4): a single message from the
    /// initiator, after which only the initiator sends. Split()'s second
    /// CipherState is discarded (see ``HandshakeResult``).
    public var isOneWay: Bool { messages.count == 1 }

    // MARK: One-way patterns (§7.4)

    /// `<- s`, `-> s` pre-messages, then `-> e, es, ss`: the responder
    /// (the receiver) and the initiator know each other's static keys in
    /// advance, and the single message authenticates the sender to the
    /// receiver. Only the initiator ever sends.
    public static let k = HandshakePattern(base: "K", initiatorPre: [.s], responderPre: [.s], messages: [
        [.e, .es, .ss],
    ])

    /// `K` with a pre-shared key mixed in before anything else (`-> psk, e,
    /// es, ss`): the pattern of one-way inter-VM channels. With `psk0` the
    /// PSK is in the chaining key before the first DH, so the message is
    /// bound to the channel's PSK even if both static keys leak.
    public static let kpsk0 = try! k.addingPSK(at: 0)

    // MARK: Base patterns (§7.4)

    /// `-> e` / `<- e, ee`: no authentication, forward secrecy only.
    public static let nn = HandshakePattern(base: "NN", initiatorPre: [], responderPre: [], messages: [
        [.e],
        [.e, .ee],
    ])

    /// The initiator knows the responder's static key in advance.
    public static let nk = HandshakePattern(base: "NK", initiatorPre: [], responderPre: [.s], messages: [
        [.e, .es],
        [.e, .ee],
    ])

    /// Both parties know each other's static key in advance.
    public static let kk = HandshakePattern(base: "KK", initiatorPre: [.s], responderPre: [.s], messages: [
        [.e, .es, .ss],
        [.e, .ee, .se],
    ])

    /// The initiator knows the responder's static key and sends its own
    /// immediately (encrypted).
    public static let ik = HandshakePattern(base: "IK", initiatorPre: [], responderPre: [.s], messages: [
        [.e, .es, .s, .ss],
        [.e, .ee, .se],
    ])

    /// Both static keys are transmitted during the handshake.
    public static let xx = HandshakePattern(base: "XX", initiatorPre: [], responderPre: [], messages: [
        [.e],
        [.e, .ee, .s, .es],
        [.s, .se],
    ])

    /// `KK` with a pre-shared key mixed in at the end of the second message:
    /// the pattern of the inter-VM channel.
    public static let kkpsk2 = try! kk.addingPSK(at: 2)

    /// `IK` with a pre-shared key mixed in at the end of the second message.
    public static let ikpsk2 = try! ik.addingPSK(at: 2)

    private init(base: String, initiatorPre: [Token], responderPre: [Token], messages: [[Token]]) {
        self.name = base
        self.baseName = base
        self.modifiers = []
        self.initiatorPreMessage = initiatorPre
        self.responderPreMessage = responderPre
        self.messages = messages
    }

    private init(copying other: HandshakePattern, modifier: String, messages: [[Token]]) {
        self.name = other.modifiers.isEmpty ? other.name + modifier : other.name + "+" + modifier
        self.baseName = other.baseName
        self.modifiers = other.modifiers + [modifier]
        self.initiatorPreMessage = other.initiatorPreMessage
        self.responderPreMessage = other.responderPreMessage
        self.messages = messages
    }

    // MARK: Modifiers and parsing

    /// The pattern with the `pskN` modifier applied (§9.2): `psk0` puts a
    /// `psk` token at the start of the first message, `pskN` for N >= 1 at
    /// the end of message N (counting from 1).
    /// - Throws: `malformedInput` if the pattern has no message N or already
    ///   has that modifier.
    public func addingPSK(at position: Int) throws(CryptoError) -> HandshakePattern {
        let modifier = "psk\(position)"
        guard (0...messages.count).contains(position) else {
            throw .malformedInput("modifier \(modifier) needs a handshake message \(position), but \(name) has \(messages.count) messages")
        }
        guard !modifiers.contains(modifier) else {
            throw .malformedInput("modifier \(modifier) appears twice in \(name)+\(modifier)")
        }
        var newMessages = messages
        if position == 0 {
            newMessages[0].insert(.psk, at: 0)
        } else {
            newMessages[position - 1].append(.psk)
        }
        return HandshakePattern(copying: self, modifier: modifier, messages: newMessages)
    }

    /// Parses a pattern name with modifiers, such as `"KKpsk2"` or `"XXpsk0+psk3"`.
    /// - Throws: `unsupported` naming the base pattern or modifier this
    ///   implementation lacks; `malformedInput` for a name that is not a
    ///   pattern name at all or a modifier that does not fit the pattern.
    public init(name: String) throws(CryptoError) {
        // The base pattern is the leading run of upper-case letters and
        // digits (§8: "I1K", "XX"); modifiers follow, separated by "+".
        let baseEnd = name.firstIndex { !($0.isASCII && ($0.isUppercase || $0.isNumber)) } ?? name.endIndex
        let base = String(name[..<baseEnd])
        let rest = name[baseEnd...]
        guard !base.isEmpty else {
            throw .malformedInput("handshake pattern name \"\(name)\" does not start with a base pattern such as KK")
        }
        var pattern: HandshakePattern
        switch base {
        case "NN": pattern = .nn
        case "NK": pattern = .nk
        case "KK": pattern = .kk
        case "IK": pattern = .ik
        case "XX": pattern = .xx
        case "K": pattern = .k
        default:
            throw .unsupported("handshake pattern \(base) (supported: \(Self.supportedBaseNames.joined(separator: ", ")))")
        }
        if !rest.isEmpty {
            for modifier in rest.split(separator: "+", omittingEmptySubsequences: false) {
                guard !modifier.isEmpty else {
                    throw .malformedInput("handshake pattern \"\(name)\" has an empty modifier")
                }
                guard modifier.hasPrefix("psk") else {
                    throw .unsupported("pattern modifier \"\(modifier)\" in \(name) (only pskN modifiers are supported)")
                }
                let digits = modifier.dropFirst(3)
                guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), digits.count <= 2,
                      let position = Int(digits) else {
                    throw .malformedInput("pattern modifier \"\(modifier)\" in \(name) is not of the form pskN")
                }
                pattern = try pattern.addingPSK(at: position)
            }
        }
        guard pattern.name == name else {
            // For example "KKpsk02" or "KK+psk2": parsed, but not the canonical spelling.
            throw .malformedInput("handshake pattern \"\(name)\" is not spelled canonically (expected \(pattern.name))")
        }
        self = pattern
    }

    // MARK: Which keys a party needs

    /// Whether `role` needs its own static key pair: the pattern sends it
    /// (`s` token) or the peer knows it in advance (pre-message).
    public func requiresLocalStaticKey(for role: HandshakeState.Role) -> Bool {
        ownPreMessage(role).contains(.s) || ownMessages(role).contains { $0.contains(.s) }
    }

    /// Whether `role` must know the peer's static public key before the
    /// handshake (the peer's pre-message holds `s`).
    public func requiresRemoteStaticKey(for role: HandshakeState.Role) -> Bool {
        peerPreMessage(role).contains(.s)
    }

    func ownPreMessage(_ role: HandshakeState.Role) -> [Token] {
        role == .initiator ? initiatorPreMessage : responderPreMessage
    }

    func peerPreMessage(_ role: HandshakeState.Role) -> [Token] {
        role == .initiator ? responderPreMessage : initiatorPreMessage
    }

    func ownMessages(_ role: HandshakeState.Role) -> [[Token]] {
        messages.enumerated().filter { Self.sender(ofMessage: $0.offset) == role }.map(\.element)
    }

    /// Who sends message `index`: the initiator sends the even ones.
    static func sender(ofMessage index: Int) -> HandshakeState.Role {
        index % 2 == 0 ? .initiator : .responder
    }
}
