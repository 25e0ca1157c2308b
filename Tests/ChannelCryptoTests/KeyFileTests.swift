import ChannelCrypto
import Foundation
import Testing

/// A fresh directory under the system's temporary directory, removed by `cleanUp`.
struct ScratchDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("channelcrypto-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o700])
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Writes `text` to `name` with `mode`, bypassing KeyFile (for malformed files).
    @discardableResult
    func write(_ name: String, _ text: String, mode: Int = 0o600) throws -> String {
        let target = file(name)
        guard FileManager.default.createFile(atPath: target, contents: Data(text.utf8)) else {
            throw CocoaError(.fileWriteUnknown)
        }
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: target)
        return target
    }

    func mode(of name: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: file(name))
        return (attributes[.posixPermissions] as! NSNumber).intValue
    }

    func contents(of name: String) throws -> String {
        try String(contentsOfFile: file(name), encoding: .utf8)
    }

    func entries() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path).sorted()
    }

    func cleanUp() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Key files that work: the format, round trips, atomic replacement.
@Suite("Key files")
struct KeyFileTests {
    /// RFC 7748 §6.1: Alice's X25519 key pair.
    static let alicePrivate = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    static let alicePublic = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"

    @Test("An X25519 key file has the documented text and mode 0600")
    func x25519Format() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let key = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: hex(Self.alicePrivate))
        try KeyFile.write(key, to: dir.file("agent.key"))
        #expect(try dir.contents(of: "agent.key") == """
            secure-channel-key v1 x25519
            public: \(Self.alicePublic)
            private: \(Self.alicePrivate)

            """)
        #expect(try dir.mode(of: "agent.key") == 0o600)
        // Nothing but the key file is left in the directory.
        #expect(try dir.entries() == ["agent.key"])

        let back = try KeyFile.readKeyAgreementKey(at: dir.file("agent.key"))
        #expect(back.publicKey == key.publicKey)
        #expect(back.rawRepresentation == key.rawRepresentation)
    }

    @Test("An Ed25519 key file stores the seed and round-trips")
    func ed25519RoundTrip() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let key = try Curve25519.Signing.PrivateKey(seed: hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
        try key.write(toKeyFile: dir.file("host.key"))
        #expect(try dir.contents(of: "host.key") == """
            secure-channel-key v1 ed25519
            public: d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a
            private: 9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60

            """)
        #expect(try dir.mode(of: "host.key") == 0o600)
        let back = try Curve25519.Signing.PrivateKey(keyFile: dir.file("host.key"))
        #expect(back.publicKey == key.publicKey)
        #expect(back.signature(for: [1, 2, 3]) == key.signature(for: [1, 2, 3]))
    }

    @Test("Comments, blank lines, CRLF and either line order are accepted")
    func lenientLayout() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let path = try dir.write("agent.key", """
            secure-channel-key v1 x25519\r
            # agent key of the test VM\r
            \r
            private:   \(Self.alicePrivate.uppercased())  \r
            public:\t\(Self.alicePublic)\r
            """)
        let key = try Curve25519.KeyAgreement.PrivateKey(keyFile: path)
        #expect(key.publicKey.hex == Self.alicePublic)
    }

    @Test("An existing key is never overwritten unless asked, and then atomically")
    func replacing() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("agent.key")
        let first = Curve25519.KeyAgreement.PrivateKey()
        let second = Curve25519.KeyAgreement.PrivateKey()
        try first.write(toKeyFile: path)

        let error = thrownError { try second.write(toKeyFile: path) }
        #expect(error == .keyFile("\(path) already exists; refusing to overwrite a key (remove it first, or replace it on purpose with replacingExisting: true)"))
        #expect(try KeyFile.readKeyAgreementKey(at: path).publicKey == first.publicKey)

        try second.write(toKeyFile: path, replacingExisting: true)
        #expect(try KeyFile.readKeyAgreementKey(at: path).publicKey == second.publicKey)
        #expect(try dir.mode(of: "agent.key") == 0o600)
        #expect(try dir.entries() == ["agent.key"])
    }

    @Test("Writing into a missing directory fails cleanly, naming the path")
    func relativeDirectoryFailure() throws {
        // A path whose directory does not exist fails at creating the
        // temporary file, names the path, and leaves nothing behind.
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("missing/agent.key")
        let error = thrownError { try Curve25519.KeyAgreement.PrivateKey().write(toKeyFile: path) }
        let message = try #require(error?.keyFileMessage)
        #expect(message.hasPrefix("cannot create \(path).tmp-"))
        #expect(message.hasSuffix("to write \(path): No such file or directory"))
        #expect(try dir.entries().isEmpty)
    }
}
