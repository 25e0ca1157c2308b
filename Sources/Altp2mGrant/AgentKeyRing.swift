import Altp2m
import ChannelCrypto
import FoundationEssentials

/// The keys the grant module works with: its own Ed25519 signing key (made
/// on first use, kept in a 0600 key file) and each domain's agent X25519
/// public key (`agents.json`), to which that domain's descriptors are sealed.
///
/// Agent keys are registered by domain *name*, like policy rules, so they
/// survive a guest restart that changes its id.
struct AgentKeyRing {
    /// The file name of the host signing key inside the state directory.
    static let hostKeyFile = "host-ed25519.key"
    /// The file name of the agent key table.
    static let agentsFile = "agents.json"

    let hostKey: Curve25519.Signing.PrivateKey
    private(set) var agents: [String: Curve25519.KeyAgreement.PublicKey]
    private let agentsPath: String

    /// Loads (or creates) the host key and loads the agent table.
    init(directory: String) throws(GrantError) {
        let hostPath = "\(directory)/\(Self.hostKeyFile)"
        if try StateFiles.read(hostPath, limit: KeyFile.maximumByteCount + 1) == nil {
            let fresh = Curve25519.Signing.PrivateKey()
            do {
                try fresh.write(toKeyFile: hostPath)
            } catch {
                throw .keys("cannot create the host signing key: \(error)")
            }
        }
        do {
            hostKey = try Curve25519.Signing.PrivateKey(keyFile: hostPath)
        } catch {
            throw .keys("cannot read the host signing key: \(error)")
        }
        agentsPath = "\(directory)/\(Self.agentsFile)"
        agents = [:]
        guard let bytes = try StateFiles.read(agentsPath) else { return }
        let table: [String: String]
        do {
            table = try JSONDecoder().decode([String: String].self, from: Data(bytes))
        } catch {
            throw .keys("\(agentsPath): not a JSON object of domain name to key hex (\(error))")
        }
        for (name, hex) in table {
            do {
                agents[name] = try Curve25519.KeyAgreement.PublicKey(hex: hex)
            } catch {
                throw .keys("\(agentsPath): the key of '\(name)' is not a 32-byte X25519 key in hex: \(error)")
            }
        }
    }

    /// Records (or replaces) a domain's agent key and saves the table.
    mutating func register(_ key: Curve25519.KeyAgreement.PublicKey, for name: String) throws(GrantError) {
        var updated = agents
        updated[name] = key
        try save(updated)
        agents = updated
    }

    /// Forgets a domain's agent key; returns whether there was one.
    mutating func remove(_ name: String) throws(GrantError) -> Bool {
        guard agents[name] != nil else { return false }
        var updated = agents
        updated[name] = nil
        try save(updated)
        agents = updated
        return true
    }

    private func save(_ table: [String: Curve25519.KeyAgreement.PublicKey]) throws(GrantError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = (try? encoder.encode(table.mapValues(\.hex))) ?? Data()
        try StateFiles.writeAtomically(agentsPath, Array(data) + [UInt8(ascii: "\n")])
    }
}
