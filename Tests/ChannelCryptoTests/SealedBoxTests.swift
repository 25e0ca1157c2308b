import ChannelCrypto
import Testing

/// Anonymous sealed boxes to X25519 keys.
@Suite("Anonymous sealed boxes")
struct SealedBoxTests {
    @Test("Seal to a public key, open with the private key", arguments: [0, 1, 47, 48, 200, 4096])
    func roundTrip(size: Int) throws {
        let agent = Curve25519.KeyAgreement.PrivateKey()
        let descriptor = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
        let box = try AnonymousSealedBox.seal(descriptor, to: agent.publicKey)
        #expect(box.count == size + AnonymousSealedBox.overhead)
        #expect(try AnonymousSealedBox.open(box, with: agent) == descriptor)
        // A fresh ephemeral key each time: sealing twice gives different boxes.
        #expect(try AnonymousSealedBox.seal(descriptor, to: agent.publicKey) != box)
    }

    @Test("Open straight into guarded memory")
    func openIntoSecureBytes() throws {
        let agent = Curve25519.KeyAgreement.PrivateKey()
        let secret = SecureRandom.bytes(32)
        let box = try AnonymousSealedBox.seal(secret, to: agent.publicKey)
        var key = SecureBytes(zeros: 32)
        let n = try key.withUnsafeMutableBytes { out in
            try box.withUnsafeBytes { b in try AnonymousSealedBox.open(b, with: agent, into: out) }
        }
        #expect(n == 32 && key.unsafeArray == secret)
    }

    @Test("The overhead is libsodium's crypto_box_SEALBYTES")
    func overhead() {
        #expect(AnonymousSealedBox.overhead == 48)
    }
}
