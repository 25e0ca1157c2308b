import ChannelCrypto
import Testing

/// Ed25519 keys: derivation, signing, the libsodium secret-key form.
@Suite("Ed25519 signing")
struct SigningTests {
    @Test("Sign and verify with a random key")
    func roundTrip() throws {
        let key = Curve25519.Signing.PrivateKey()
        let message = Array("grant: channel 7 to agent 3".utf8)
        let signature = key.signature(for: message)
        #expect(signature.count == Curve25519.Signing.signatureByteCount)
        #expect(key.publicKey.isValidSignature(signature, for: message))
        try key.publicKey.verify(signature, for: message)
        // Deterministic: the same message gives the same signature.
        #expect(key.signature(for: message) == signature)
        #expect(key.signature(for: []).count == 64)
        #expect(key.publicKey.isValidSignature(key.signature(for: []), for: []))
    }

    @Test("RFC 8032 test 1: seed, public key and signature")
    func rfc8032() throws {
        let key = try Curve25519.Signing.PrivateKey(seed: hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
        #expect(key.publicKey.hex == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        #expect(key.signature(for: []) == hex("""
            e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155
            5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b
            """))
        #expect(key.seed.unsafeArray == hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
        #expect(key.rawRepresentation == key.seed)
    }

    @Test("The 64-byte libsodium secret key is seed || public key")
    func secretKeyForm() throws {
        let key = Curve25519.Signing.PrivateKey()
        let secret = SecureBytes(key.seed.unsafeArray + key.publicKey.rawRepresentation)
        let again = try Curve25519.Signing.PrivateKey(secretKey: secret)
        #expect(again.publicKey == key.publicKey)
        #expect(again.signature(for: [1, 2, 3]) == key.signature(for: [1, 2, 3]))
    }

    @Test("Public keys from hex, with size checks")
    func publicKeyHex() throws {
        let key = Curve25519.Signing.PrivateKey()
        #expect(try Curve25519.Signing.PublicKey(hex: key.publicKey.hex) == key.publicKey)
        #expect(String(describing: key).contains(key.publicKey.hex))
        #expect(!String(describing: key).contains(Hex.encode(key.seed.unsafeArray)))
    }
}
