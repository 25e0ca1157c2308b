import ArgumentParser
import ChannelCrypto
#if canImport(Glibc)
import Glibc
#endif

/// `guest-agent keygen --out FILE`: a new X25519 key pair in a 0600 key file.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate this agent's X25519 key pair (key file, mode 0600); prints the public key.",
        discussion: "Register the printed public key with: chanctl keys register DOMAIN PUBLIC_KEY")

    @Option(help: ArgumentHelp("Where to write the key file (must not exist unless --force).", valueName: "file"))
    var out: String

    @Flag(help: "Replace an existing key file.")
    var force = false

    @Flag(help: "Print one JSON object: {\"ok\":true,\"public_key\":...,\"path\":...}.")
    var json = false

    func run() throws {
        if !force, access(out, F_OK) == 0 {
            throw AgentFailure.failure("\(out) already exists; keep using it, pick another --out, or pass --force to replace it")
        }
        let key = Curve25519.KeyAgreement.PrivateKey()
        do {
            try key.write(toKeyFile: out, replacingExisting: force)
        } catch {
            throw AgentFailure.failure("cannot write the key file \(out): \(error); check that its directory exists and is writable")
        }
        let publicKey = key.publicKey.hex
        if json {
            print(jsonObject(["ok": .bool(true), "public_key": .string(publicKey), "path": .string(out), "type": .string("x25519")]))
        } else {
            print(publicKey)
        }
    }
}
