import AgentPlatform
import Altp2m
import CSecureChannelABI
import ChannelCrypto
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// What sc_open was asked, checked: every C string read once, every value
/// parsed, so that opening works on Swift values only.
struct OpenRequest {
    let channel: String
    let backend: GuestBackend
    /// The simulator domain's name (nil on Xen: the guest reads its own).
    let domain: String?
    let stateDir: String?
    let agentKey: Curve25519.KeyAgreement.PrivateKey
    let keyFile: String
    let hostKey: Curve25519.Signing.PublicKey
    let wait: WaitStrategy
    /// For the descriptor to appear and for the handshake; nil waits indefinitely.
    let timeoutMilliseconds: Int?

    /// The defaults sc_options_init sets.
    static let defaultTimeoutMilliseconds: Int32 = 10_000

    /// Reads and checks `options` for `name`.
    /// - Throws: SC_EINVAL naming the field and the fix.
    init(name: UnsafePointer<CChar>?, options: UnsafePointer<sc_options>?) throws(ABIError) {
        guard let name else { throw .invalid("sc_open: channel_name is NULL; pass the name given to chanctl channel create") }
        guard let options else { throw .invalid("sc_open: opts is NULL; fill an sc_options with sc_options_init and set domain, key_file and host_key_hex") }
        let o = options.pointee
        channel = String(cString: name)
        guard ChannelDescriptor.isValidName(channel) else {
            throw .invalid("sc_open: '\(channel)' is not a channel name (letters, digits, '_' and '-', not starting with '-')")
        }
        let backendName = o.backend.map { String(cString: $0) } ?? "sim"
        guard let backend = GuestBackend(rawValue: backendName) else {
            throw .invalid("sc_open: unknown backend '\(backendName)'; use \"sim\", \"xen\" or \"xen-sim\" (NULL means \"sim\")")
        }
        self.backend = backend
        domain = o.domain.map { String(cString: $0) }
        if backend.isSimulated, domain?.isEmpty ?? true {
            throw .invalid("sc_open: domain is NULL or empty; on the simulator pass this guest's domain name (chanctl domain list)")
        }
        stateDir = o.state_dir.map { String(cString: $0) }
        wait = try Self.waitStrategy(o.wait)
        timeoutMilliseconds = o.timeout_ms < 0 ? nil : Int(o.timeout_ms)
        (agentKey, keyFile) = try Self.agentKey(o.key_file, domain: domain)
        hostKey = try Self.hostKey(o.host_key_hex)
    }

    private static func waitStrategy(_ text: UnsafePointer<CChar>?) throws(ABIError) -> WaitStrategy {
        switch text.map({ String(cString: $0) }) ?? "adaptive" {
        case "spin": .spin
        case "block": .block
        case "adaptive": .adaptive
        case let other: throw .invalid("sc_open: unknown wait '\(other)'; use \"spin\", \"block\" or \"adaptive\" (NULL means \"adaptive\")")
        }
    }

    private static func agentKey(_ path: UnsafePointer<CChar>?,
                                 domain: String?) throws(ABIError) -> (Curve25519.KeyAgreement.PrivateKey, String) {
        guard let path else { throw .invalid("sc_open: key_file is NULL; pass the agent's key file (make one with guest-agent keygen --out FILE)") }
        let file = String(cString: path)
        do {
            return (try Curve25519.KeyAgreement.PrivateKey(keyFile: file), file)
        } catch {
            if access(file, F_OK) != 0 {
                throw .invalid("sc_open: no key file at \(file); create one with guest-agent keygen --out \(file), then register it with chanctl keys register \(domain ?? "DOMAIN") <public key>")
            }
            throw .invalid("sc_open: cannot read the agent key \(file): \(error); make a new one with guest-agent keygen --out FILE")
        }
    }

    private static func hostKey(_ hex: UnsafePointer<CChar>?) throws(ABIError) -> Curve25519.Signing.PublicKey {
        guard let hex else { throw .invalid("sc_open: host_key_hex is NULL; pass the public_key printed by chanctl keys show") }
        let text = String(cString: hex)
        guard text.utf8.count == 64, text.allSatisfy(\.isHexDigit) else {
            throw .invalid("sc_open: host_key_hex '\(text)' is not 64 hex digits; pass the public_key printed by chanctl keys show")
        }
        do {
            return try Curve25519.Signing.PublicKey(hex: text)
        } catch {
            throw .invalid("sc_open: host_key_hex is not an Ed25519 public key: \(error); pass the public_key printed by chanctl keys show")
        }
    }

    /// A timeout as a Duration; nil means indefinitely.
    var timeout: Duration? { timeoutMilliseconds.map { .milliseconds($0) } }
}
