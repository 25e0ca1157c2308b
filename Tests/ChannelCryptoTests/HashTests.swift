import ChannelCrypto
import Testing

/// Known answers for the hashes, HMAC and Noise's HKDF. Origins: FIPS 180-2
/// examples ("abc", ""), RFC 7693 Appendix A and the BLAKE2 reference
/// `blake2b-kat.txt` (keyed), RFC 4231 (HMAC-SHA-256/512), RFC 5869 test
/// case 3 (HKDF with empty salt and info). HMAC-BLAKE2b has no published
/// vectors; its expected values were computed with Python's `hmac` and
/// `hashlib.blake2b` (an independent implementation, block size 128).
@Suite("Hash known answers")
struct HashTests {
    static let abc = Array("abc".utf8)

    @Test("SHA-256 of \"abc\" and \"\"")
    func sha256() {
        #expect(SHA256.hash(Self.abc) == hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        #expect(SHA256.hash([]) == hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
    }

    @Test("SHA-512 of \"abc\" and \"\"")
    func sha512() {
        #expect(SHA512.hash(Self.abc) == hex("""
            ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a
            2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f
            """))
        #expect(SHA512.hash([]) == hex("""
            cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce
            47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e
            """))
    }

    @Test("BLAKE2b-512 of \"abc\" and \"\"")
    func blake2b() {
        #expect(BLAKE2b.hash(Self.abc) == hex("""
            ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1
            7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923
            """))
        #expect(BLAKE2b.hash([]) == hex("""
            786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419
            d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce
            """))
    }

    @Test("Keyed BLAKE2b (blake2b-kat.txt, key 00..3f)")
    func keyedBLAKE2b() throws {
        let key = SymmetricKey(copying: (0..<64).map { UInt8($0) })
        let empty = try BLAKE2b(key: key)
        #expect(empty.finalize() == hex("""
            10ebb67700b1868efb4417987acf4690ae9d972fb7a590c2f02871799aaa4786
            b5e996e8f0f4eb981fc214b005f42d2ff4233499391653df7aefcbc13fc51568
            """))
        let oneByte = try BLAKE2b(key: key)
        oneByte.update([0x00])
        #expect(oneByte.finalize() == hex("""
            961f6dd1e4dd30f63901690c512e78e4b45e4742ed197c3c5e45c549fd25f2e4
            187b0bc9fe30492b16b0d0bc4ef9b0f34c7003fac09a5ef1532e69430234cebd
            """))
        let long = try BLAKE2b(key: key)
        long.update((0..<255).map { UInt8($0) })
        #expect(long.finalize() == hex("""
            142709d62e28fcccd0af97fad0f8465b971e82201dc51070faa0372aa43e9248
            4be1c1e73ba10906d5d1853db6a4106e0a7bf9800d373d6dee2d46d62ef2a461
            """))
    }

    @Test("Incremental hashing equals one-shot hashing")
    func incremental() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        for split in [0, 1, 63, 64, 127, 128, 129, 999, 1000] {
            let h = SHA512()
            h.update(Array(data[..<split]))
            h.update(Array(data[split...]))
            #expect(h.finalize() == SHA512.hash(data))
            #expect(BLAKE2b.hash(Array(data[..<split]), Array(data[split...])) == BLAKE2b.hash(data))
        }
    }

    // MARK: HMAC, RFC 4231

    struct RFC4231Case: Sendable, CustomTestStringConvertible {
        let number: Int
        let key: [UInt8]
        let data: [UInt8]
        let sha256: String
        let sha512: String
        var testDescription: String { "RFC 4231 test case \(number)" }
    }

    static let rfc4231: [RFC4231Case] = [
        .init(number: 1, key: [UInt8](repeating: 0x0b, count: 20), data: Array("Hi There".utf8),
              sha256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
              sha512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"),
        .init(number: 2, key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8),
              sha256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
              sha512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"),
        .init(number: 3, key: [UInt8](repeating: 0xaa, count: 20), data: [UInt8](repeating: 0xdd, count: 50),
              sha256: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
              sha512: "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb"),
        .init(number: 4, key: (1...25).map { UInt8($0) }, data: [UInt8](repeating: 0xcd, count: 50),
              sha256: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
              sha512: "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd"),
        // Test case 5 publishes only the first 128 bits (truncated output).
        .init(number: 5, key: [UInt8](repeating: 0x0c, count: 20), data: Array("Test With Truncation".utf8),
              sha256: "a3b6167473100ee06e0c796c2955552b",
              sha512: "415fad6271580a531d4179bc891d87a6"),
        .init(number: 6, key: [UInt8](repeating: 0xaa, count: 131), data: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
              sha256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
              sha512: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"),
        .init(number: 7, key: [UInt8](repeating: 0xaa, count: 131),
              data: Array("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".utf8),
              sha256: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
              sha512: "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58"),
    ]

    @Test("HMAC-SHA-256 and HMAC-SHA-512", arguments: rfc4231)
    func hmac(_ tc: RFC4231Case) {
        let mac256 = HMAC<SHA256>.authenticationCode(for: tc.data, using: tc.key).unsafeArray
        let mac512 = HMAC<SHA512>.authenticationCode(for: tc.data, using: tc.key).unsafeArray
        let want256 = hex(tc.sha256), want512 = hex(tc.sha512)
        #expect(Array(mac256.prefix(want256.count)) == want256)
        #expect(Array(mac512.prefix(want512.count)) == want512)
        if tc.number != 5 {
            #expect(HMAC<SHA256>.isValidAuthenticationCode(want256, for: tc.data, using: tc.key))
            #expect(HMAC<SHA512>.isValidAuthenticationCode(want512, for: tc.data, using: tc.key))
        }
    }

    @Test("HMAC-BLAKE2b with a 128-byte block (Python hmac + hashlib.blake2b)")
    func hmacBLAKE2b() {
        #expect(HMAC<BLAKE2b>.authenticationCode(for: Array("what do ya want for nothing?".utf8), using: Array("Jefe".utf8)).unsafeArray == hex("""
            6ff884f8ddc2a6586b3c98a4cd6ebdf14ec10204b6710073eb5865ade37a2643
            b8807c1335d107ecdb9ffeaeb6828c4625ba172c66379efcd222c2de11727ab4
            """))
        // A key longer than the block is hashed first.
        #expect(HMAC<BLAKE2b>.authenticationCode(
            for: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
            using: [UInt8](repeating: 0xaa, count: 131)).unsafeArray == hex("""
            a54b2943b2a20227d41ca46c0945af09bc1faefb2f49894c23aebc557fb79c48
            89dca74408dc865086667aedee4a3185c53a49c80b814c4c5813ea0c8b38a8f8
            """))
    }

    @Test("A wrong MAC is rejected")
    func hmacRejects() {
        let key = Array("key".utf8), message = Array("message".utf8)
        var mac = HMAC<SHA256>.authenticationCode(for: message, using: key).unsafeArray
        #expect(HMAC<SHA256>.isValidAuthenticationCode(mac, for: message, using: key))
        mac[31] ^= 1
        #expect(!HMAC<SHA256>.isValidAuthenticationCode(mac, for: message, using: key))
        #expect(!HMAC<SHA256>.isValidAuthenticationCode(Array(mac.prefix(16)), for: message, using: key))
    }

    // MARK: HKDF

    /// Noise's HKDF is RFC 5869 with an empty info and outputs of HASHLEN:
    /// output i is T(i). RFC 5869 test case 3 (SHA-256, empty salt, empty
    /// info, L = 42) fixes T(1) and the start of T(2); an empty salt is
    /// HMAC's zero key, so a chaining key of 32 zero bytes is the same.
    @Test("Noise HKDF matches RFC 5869 test case 3")
    func hkdfRFC5869() {
        let ikm = [UInt8](repeating: 0x0b, count: 22)
        let okm = hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
        for chainingKey in [SecureBytes(zeros: 0), SecureBytes(zeros: 32)] {
            let out = NoiseHKDF<SHA256>.derive(chainingKey: chainingKey, inputKeyMaterial: ikm, outputs: 3)
            #expect(out.count == 3)
            #expect((out[0].unsafeArray + out[1].unsafeArray).prefix(42) == okm[...])
            // T(2) and T(3) in full, from an independent HKDF (Python hmac).
            #expect(out[1].unsafeArray == hex("9d201395faa4b61a96c8b2fb61057244b36c6ddd287f634795e7d80d5fe26bfc"))
            #expect(out[2].unsafeArray == hex("36def6dc129c29271a0eb7ab14bd2ca88259f8a3a92ac2ec0e3e4fa046a4b90b"))
        }
    }

    @Test("Noise HKDF with SHA-512 and BLAKE2b (independent HKDF in Python)")
    func hkdfOtherHashes() {
        let two = NoiseHKDF<SHA512>.derive(chainingKey: SecureBytes((0x60..<0x70).map { UInt8($0) }),
                                           inputKeyMaterial: [UInt8](repeating: 0x0b, count: 22), outputs: 2)
        #expect(two.map(\.unsafeArray) == [
            hex("c8e947b306e5c443d386b771051eb3f63ad4e4394cde3cab7f0fc356ef1c85bd576406afc553a44587e548558b9989587b28872ec3d620834d51e7b667be7986"),
            hex("2bb2b68e55fd86ec37f8fd584f122af2478a6916792b475c2537f494f1cb676d2e1a3a80a7761e2013b1e21e7a682fc4922dcd4fecad451ce6a37173d64ce1e7"),
        ])
        let three = NoiseHKDF<BLAKE2b>.derive(chainingKey: SecureBytes((0..<64).map { UInt8($0) }),
                                              inputKeyMaterial: Array("input key material".utf8), outputs: 3)
        #expect(three.map(\.unsafeArray) == [
            hex("a94ec1ceaa5ac0280eafc97980003e4019176e4bf7c914c45fb0bbda0b22a9954d01f3697bbf32817ed0fccbf6dd1ebd24c0b05611051e63dc56e131af4f7c10"),
            hex("f9d83f6c5d34695529eb8e35c8a2ed78658092e7c3b38fdf0cea2a2096b6f6e542af644e298508f37da08860db285a8ad4b604c1f160f23356df6b28c183508d"),
            hex("bb6f14b645bac5dd79c98ce583e3357b43b431c22400c9b79d690c1d2fe2d391ab8372b0b08553b56e802dc6badace75398c1b8a973d0aab18d857d431c3a48f"),
        ])
    }
}
