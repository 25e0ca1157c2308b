import ChannelCrypto
import Testing

/// Everything a caller can get wrong, each answered by its exact `CryptoError`.
@Suite("Misuse")
struct MisuseTests {
    static let available = AEADAlgorithm.allCases.filter(\.isAvailable)
    static let message = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
    static let aad = Array("header".utf8)

    static func nonce(_ algorithm: AEADAlgorithm) -> [UInt8] {
        (0..<algorithm.nonceByteCount).map { UInt8($0) }
    }

    // MARK: AEAD keys and nonces

    @Test("Keys of the wrong size are refused", arguments: AEADAlgorithm.allCases)
    func wrongKeySize(_ algorithm: AEADAlgorithm) {
        for size in [0, 16, 24, 31, 33, 64] {
            #expect(thrownError { try AEADKey(algorithm, key: [UInt8](repeating: 1, count: size)) }
                    == .incorrectKeySize(expected: 32, actual: size))
        }
        let shortKey = SymmetricKey(copying: [UInt8](repeating: 1, count: 16))
        let expected = CryptoError.incorrectKeySize(expected: 32, actual: 16)
        switch algorithm {
        case .chaChaPoly:
            #expect(thrownError { try ChaChaPoly.seal([], using: shortKey, nonce: Self.nonce(algorithm)) } == expected)
            #expect(thrownError { try ChaChaPoly.open([UInt8](repeating: 0, count: 16), using: shortKey, nonce: Self.nonce(algorithm)) } == expected)
        case .xChaChaPoly:
            #expect(thrownError { try XChaChaPoly.seal([], using: shortKey, nonce: Self.nonce(algorithm)) } == expected)
        case .aesGCM:
            #expect(thrownError { try AESGCM.seal([], using: shortKey, nonce: Self.nonce(algorithm)) } == expected)
        }
    }

    @Test("Nonces of the wrong size are refused", arguments: available)
    func wrongNonceSize(_ algorithm: AEADAlgorithm) throws {
        let key = try AEADKey(algorithm, key: SymmetricKey())
        let sealed = try key.seal(Self.message, nonce: Self.nonce(algorithm))
        for size in [0, 8, 11, 12, 13, 16, 23, 24, 25, 32] where size != algorithm.nonceByteCount {
            let nonce = [UInt8](repeating: 0, count: size)
            let expected = CryptoError.incorrectNonceSize(expected: algorithm.nonceByteCount, actual: size)
            #expect(thrownError { try key.seal(Self.message, nonce: nonce) } == expected)
            #expect(thrownError { try key.open(sealed, nonce: nonce) } == expected)
        }
    }

    // MARK: Ciphertexts

    @Test("Ciphertexts shorter than the tag are malformed", arguments: available)
    func truncated(_ algorithm: AEADAlgorithm) throws {
        let key = try AEADKey(algorithm, key: SymmetricKey())
        let sealed = try key.seal(Self.message, nonce: Self.nonce(algorithm))
        var output = [UInt8](repeating: 0, count: 128)
        for length in 0..<algorithm.tagByteCount {
            let expected = CryptoError.malformedInput("ciphertext of \(length) bytes is shorter than the 16-byte tag")
            let short = Array(sealed.prefix(length))
            #expect(thrownError { try key.open(short, nonce: Self.nonce(algorithm)) } == expected)
            let zeroCopy = thrownError { () throws(CryptoError) -> Int in
                try open(key, nonce: Self.nonce(algorithm), ciphertext: short, aad: [], into: &output)
            }
            #expect(zeroCopy == expected)
        }
        // Exactly a tag's length is a valid, empty message once the tag is right...
        let emptySealed = try key.seal([], nonce: Self.nonce(algorithm))
        #expect(try key.open(emptySealed, nonce: Self.nonce(algorithm)) == [])
        // ...and a tampered tag-only ciphertext fails authentication.
        #expect(thrownError { try key.open(sealed.suffix(16).map { $0 }, nonce: Self.nonce(algorithm)) } == .authenticationFailure)
        // Cutting a byte off a real ciphertext breaks the tag.
        #expect(thrownError { try key.open(Array(sealed.dropLast()), nonce: Self.nonce(algorithm)) } == .authenticationFailure)
    }

    @Test("Every flipped bit of ciphertext and tag is detected", arguments: available)
    func everyBitFlip(_ algorithm: AEADAlgorithm) throws {
        let key = try AEADKey(algorithm, key: SymmetricKey())
        let nonce = Self.nonce(algorithm)
        let sealed = try key.seal(Self.message, nonce: nonce, authenticating: Self.aad)
        #expect(sealed.count == Self.message.count + 16)
        var detected = 0
        for bit in 0..<(sealed.count * 8) {
            var tampered = sealed
            tampered[bit / 8] ^= 1 << UInt8(bit % 8)
            let error = thrownError { try key.open(tampered, nonce: nonce, authenticating: Self.aad) }
            #expect(error == .authenticationFailure, "bit \(bit)")
            if error == .authenticationFailure { detected += 1 }
        }
        #expect(detected == (64 + 16) * 8)
    }

    @Test("Wrong AAD, key or nonce fail authentication", arguments: available)
    func wrongContext(_ algorithm: AEADAlgorithm) throws {
        let key = try AEADKey(algorithm, key: SymmetricKey())
        let nonce = Self.nonce(algorithm)
        let sealed = try key.seal(Self.message, nonce: nonce, authenticating: Self.aad)
        #expect(try key.open(sealed, nonce: nonce, authenticating: Self.aad) == Self.message)

        #expect(thrownError { try key.open(sealed, nonce: nonce) } == .authenticationFailure)
        #expect(thrownError { try key.open(sealed, nonce: nonce, authenticating: Self.aad + [0]) } == .authenticationFailure)
        #expect(thrownError { try key.open(sealed, nonce: nonce, authenticating: Array(Self.aad.dropLast())) } == .authenticationFailure)
        var otherNonce = nonce
        otherNonce[0] ^= 1
        #expect(thrownError { try key.open(sealed, nonce: otherNonce, authenticating: Self.aad) } == .authenticationFailure)
        let otherKey = try AEADKey(algorithm, key: SymmetricKey())
        #expect(thrownError { try otherKey.open(sealed, nonce: nonce, authenticating: Self.aad) } == .authenticationFailure)
    }

    @Test("Output buffers that are too small are refused", arguments: available)
    func bufferTooSmall(_ algorithm: AEADAlgorithm) throws {
        let key = try AEADKey(algorithm, key: SymmetricKey())
        let nonce = Self.nonce(algorithm)
        let sealed = try key.seal(Self.message, nonce: nonce)
        var small = [UInt8](repeating: 0, count: Self.message.count + 15)
        let sealError = thrownError { () throws(CryptoError) -> Int in
            try seal(key, nonce: nonce, plaintext: Self.message, aad: [], into: &small)
        }
        #expect(sealError == .bufferTooSmall(needed: 80, available: 79))
        var tiny = [UInt8](repeating: 0, count: 63)
        let openError = thrownError { () throws(CryptoError) -> Int in
            try open(key, nonce: nonce, ciphertext: sealed, aad: [], into: &tiny)
        }
        #expect(openError == .bufferTooSmall(needed: 64, available: 63))
        #expect(tiny == [UInt8](repeating: 0, count: 63))
    }

    @Test("Seal and open in place, in one buffer", arguments: available)
    func inPlace(_ algorithm: AEADAlgorithm) throws {
        let key = try AEADKey(algorithm, key: SymmetricKey())
        let nonce = Self.nonce(algorithm)
        var buffer = Self.message + [UInt8](repeating: 0, count: 16)
        let written = try buffer.withUnsafeMutableBytes { b in
            try nonce.withUnsafeBytes { n in
                try Self.aad.withUnsafeBytes { a in
                    try key.seal(nonce: n, plaintext: UnsafeRawBufferPointer(rebasing: b[0..<64]), authenticating: a, into: b)
                }
            }
        }
        #expect(written == 80)
        #expect(buffer == (try key.seal(Self.message, nonce: nonce, authenticating: Self.aad)))
        let read = try buffer.withUnsafeMutableBytes { b in
            try nonce.withUnsafeBytes { n in
                try Self.aad.withUnsafeBytes { a in
                    try key.open(nonce: n, ciphertext: UnsafeRawBufferPointer(b), authenticating: a, into: b)
                }
            }
        }
        #expect(read == 64)
        #expect(Array(buffer[0..<64]) == Self.message)
    }

    @Test("A failed open zeroes the output", arguments: available)
    func failedOpenOutput(_ algorithm: AEADAlgorithm) throws {
        let key = try AEADKey(algorithm, key: SymmetricKey())
        let nonce = Self.nonce(algorithm)
        var sealed = try key.seal(Self.message, nonce: nonce)
        sealed[70] ^= 0x80
        var output = [UInt8](repeating: 0xA5, count: 64)
        let error = thrownError { () throws(CryptoError) -> Int in
            try open(key, nonce: nonce, ciphertext: sealed, aad: [], into: &output)
        }
        #expect(error == .authenticationFailure)
        // libsodium 1.0.18 zeroes the plaintext area on failure, for every
        // algorithm (AEADKey.open documents it): no unauthenticated
        // plaintext, and no stale data either.
        #expect(output == [UInt8](repeating: 0, count: 64))

        // In place, the same wipe destroys the ciphertext: what AEADKey.open
        // warns about for memory a peer can write.
        var buffer = sealed
        let inPlace = thrownError {
            try buffer.withUnsafeMutableBytes { b in
                try nonce.withUnsafeBytes { n in
                    try key.open(nonce: n, ciphertext: UnsafeRawBufferPointer(b), authenticating: UnsafeRawBufferPointer(start: nil, count: 0), into: b)
                }
            }
        }
        #expect(inPlace == .authenticationFailure)
        #expect(buffer[0..<64].allSatisfy { $0 == 0 } && buffer[64...] == sealed[64...])
    }

    // MARK: X25519

    @Test("Low-order X25519 public keys are refused")
    func lowOrderX25519() throws {
        let key = Curve25519.KeyAgreement.PrivateKey()
        let lowOrder = [
            "0000000000000000000000000000000000000000000000000000000000000000",  // 0
            "0100000000000000000000000000000000000000000000000000000000000000",  // 1
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  // order 8
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",  // order 8
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p - 1
        ]
        for point in lowOrder {
            let peer = try Curve25519.KeyAgreement.PublicKey(hex: point)
            #expect(thrownError { try key.sharedSecret(with: peer) }
                    == .malformedInput("X25519 public key is a low-order point (all-zero shared secret)"), "\(point)")
        }
        #expect(thrownError { try Curve25519.KeyAgreement.PublicKey(rawRepresentation: [UInt8](repeating: 9, count: 31)) }
                == .incorrectKeySize(expected: 32, actual: 31))
        #expect(thrownError { try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: [UInt8](repeating: 9, count: 33)) }
                == .incorrectKeySize(expected: 32, actual: 33))
        #expect(thrownError { try Curve25519.KeyAgreement.PublicKey(hex: "zz") } == .malformedInput("not a hex digit at position 0"))
    }

    // MARK: Ed25519

    @Test("Tampered signatures and messages are rejected")
    func tamperedSignature() throws {
        let key = Curve25519.Signing.PrivateKey()
        let message = Array("host key attests agent 3".utf8)
        let signature = key.signature(for: message)
        for bit in 0..<(signature.count * 8) {
            var bad = signature
            bad[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(!key.publicKey.isValidSignature(bad, for: message), "signature bit \(bit)")
            #expect(thrownError { try key.publicKey.verify(bad, for: message) } == .authenticationFailure, "signature bit \(bit)")
        }
        for bit in 0..<(message.count * 8) {
            var bad = message
            bad[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(thrownError { try key.publicKey.verify(signature, for: bad) } == .authenticationFailure, "message bit \(bit)")
        }
        #expect(thrownError { try key.publicKey.verify(signature, for: message + [0]) } == .authenticationFailure)
        #expect(thrownError { try Curve25519.Signing.PrivateKey().publicKey.verify(signature, for: message) } == .authenticationFailure)
        for length in [0, 32, 63, 65, 128] {
            let odd = Array((signature + signature).prefix(length))
            #expect(!key.publicKey.isValidSignature(odd, for: message))
            #expect(thrownError { try key.publicKey.verify(odd, for: message) }
                    == .malformedInput("an Ed25519 signature is 64 bytes, got \(length)"))
        }
    }

    @Test("Ed25519 key sizes and inconsistent secret keys are refused")
    func ed25519Keys() throws {
        #expect(thrownError { try Curve25519.Signing.PrivateKey(seed: [UInt8](repeating: 1, count: 31)) }
                == .incorrectKeySize(expected: 32, actual: 31))
        #expect(thrownError { try Curve25519.Signing.PrivateKey(seed: [UInt8](repeating: 1, count: 64)) }
                == .incorrectKeySize(expected: 32, actual: 64))
        #expect(thrownError { try Curve25519.Signing.PrivateKey(secretKey: SecureBytes(zeros: 32)) }
                == .incorrectKeySize(expected: 64, actual: 32))
        #expect(thrownError { try Curve25519.Signing.PublicKey(rawRepresentation: [UInt8](repeating: 1, count: 33)) }
                == .incorrectKeySize(expected: 32, actual: 33))
        // A secret key whose public half belongs to another seed.
        let a = Curve25519.Signing.PrivateKey(), b = Curve25519.Signing.PrivateKey()
        let spliced = SecureBytes(a.seed.unsafeArray + b.publicKey.rawRepresentation)
        #expect(thrownError { try Curve25519.Signing.PrivateKey(secretKey: spliced) }
                == .malformedInput("the Ed25519 secret key's public half does not match its seed"))
    }

    // MARK: Sealed boxes

    @Test("Sealed boxes: wrong recipient, tampering, truncation, low-order keys, small buffers")
    func sealedBoxMisuse() throws {
        let agent = Curve25519.KeyAgreement.PrivateKey()
        let descriptor = Array("channel 7: ring gfn 0x1000, 16 pages".utf8)
        let box = try AnonymousSealedBox.seal(descriptor, to: agent.publicKey)

        #expect(thrownError { try AnonymousSealedBox.open(box, with: Curve25519.KeyAgreement.PrivateKey()) } == .authenticationFailure)
        for byte in [0, 31, 32, 47, 48, box.count - 1] {
            var bad = box
            bad[byte] ^= 0x01
            #expect(thrownError { try AnonymousSealedBox.open(bad, with: agent) } == .authenticationFailure, "byte \(byte)")
        }
        for length in [0, 1, 32, 47] {
            #expect(thrownError { try AnonymousSealedBox.open(Array(box.prefix(length)), with: agent) }
                    == .malformedInput("sealed box of \(length) bytes is shorter than its 48-byte overhead"))
        }
        #expect(thrownError { try AnonymousSealedBox.open(Array(box.dropLast()), with: agent) } == .authenticationFailure)

        let lowOrder = try Curve25519.KeyAgreement.PublicKey(hex: "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
        #expect(thrownError { try AnonymousSealedBox.seal(descriptor, to: lowOrder) }
                == .malformedInput("X25519 public key is a low-order point (all-zero shared secret)"))

        var small = [UInt8](repeating: 0, count: descriptor.count + 47)
        let sealError = thrownError {
            try descriptor.withUnsafeBytes { d in
                try small.withUnsafeMutableBytes { o in try AnonymousSealedBox.seal(d, to: agent.publicKey, into: o) }
            }
        }
        #expect(sealError == .bufferTooSmall(needed: descriptor.count + 48, available: descriptor.count + 47))
        var tooSmall = [UInt8](repeating: 0, count: descriptor.count - 1)
        let openError = thrownError {
            try box.withUnsafeBytes { b in
                try tooSmall.withUnsafeMutableBytes { o in try AnonymousSealedBox.open(b, with: agent, into: o) }
            }
        }
        #expect(openError == .bufferTooSmall(needed: descriptor.count, available: descriptor.count - 1))
    }

    // MARK: Key files

    static let header = "secure-channel-key v1 x25519"
    static let alicePublic = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    static let alicePrivate = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    /// RFC 7748 §6.1: Bob's public key, which does not belong to Alice's private key.
    static let bobPublic = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"

    @Test("Missing and non-regular key files name the path and the problem")
    func missingKeyFile() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let missing = dir.file("nope.key")
        #expect(thrownError { try KeyFile.readKeyAgreementKey(at: missing) }
                == .keyFile("cannot open \(missing): No such file or directory"))
        #expect(thrownError { try KeyFile.readSigningKey(at: dir.path) }
                == .keyFile("\(dir.path) is not a regular file"))
    }

    @Test("Key files that group or others can access are refused with the fix",
          arguments: [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o601, 0o700 | 0o070, 0o777])
    func tooOpen(mode: Int) throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let path = try dir.write("agent.key", "\(Self.header)\npublic: \(Self.alicePublic)\nprivate: \(Self.alicePrivate)\n", mode: mode)
        let octal = String(mode, radix: 8)
        #expect(thrownError { try KeyFile.readKeyAgreementKey(at: path) }
                == .keyFile("\(path) has permissions 0\(octal), which are too open: a private key must be accessible only by its owner; run: chmod 600 \(path)"))
        // The owner's own bits do not matter: 0400 and 0600 both work.
        for good in [0o400, 0o600] {
            try dir.write("agent.key", "\(Self.header)\npublic: \(Self.alicePublic)\nprivate: \(Self.alicePrivate)\n", mode: good)
            #expect(try KeyFile.readKeyAgreementKey(at: path).publicKey.hex == Self.alicePublic)
        }
    }

    struct MalformedCase: Sendable, CustomTestStringConvertible {
        let name: String
        let text: String
        /// The message after "PATH: ".
        let problem: String
        var testDescription: String { name }
    }

    static let malformed: [MalformedCase] = [
        .init(name: "empty file", text: "",
              problem: "the file is empty; expected a key file starting with 'secure-channel-key v1 x25519'"),
        .init(name: "not a key file", text: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
              problem: "line 1 is not a key-file header; expected 'secure-channel-key v1 x25519'"),
        .init(name: "bare hex", text: "\(alicePrivate)\n",
              problem: "line 1 is not a key-file header; expected 'secure-channel-key v1 x25519'"),
        .init(name: "future version", text: "secure-channel-key v2 x25519\n",
              problem: "line 1: unsupported key-file version 'v2'; this build reads v1"),
        .init(name: "unknown type", text: "secure-channel-key v1 rsa\n",
              problem: "line 1: unknown key type 'rsa'; expected one of x25519, ed25519"),
        .init(name: "no public line", text: "\(header)\nprivate: \(alicePrivate)\n",
              problem: "no 'public:' line"),
        .init(name: "no private line", text: "\(header)\npublic: \(alicePublic)\n",
              problem: "no 'private:' line"),
        .init(name: "short private key", text: "\(header)\npublic: \(alicePublic)\nprivate: \(alicePrivate.dropLast(2))\n",
              problem: "line 3: the private key must be 64 hex digits"),
        .init(name: "non-hex private key", text: "\(header)\npublic: \(alicePublic)\nprivate: \(alicePrivate.dropLast(1))g\n",
              problem: "line 3: the private key must be 64 hex digits"),
        .init(name: "non-hex public key", text: "\(header)\n\npublic: x\(alicePublic.dropFirst())\nprivate: \(alicePrivate)\n",
              problem: "line 3: the public key must be 64 hex digits"),
        .init(name: "unknown field", text: "\(header)\npublic: \(alicePublic)\nsecret: \(alicePrivate)\n",
              problem: "line 3: expected 'public: <hex>' or 'private: <hex>'"),
        .init(name: "no colon", text: "\(header)\npublic \(alicePublic)\n",
              problem: "line 2: expected 'public: <hex>' or 'private: <hex>'"),
        .init(name: "two public lines", text: "\(header)\npublic: \(alicePublic)\npublic: \(alicePublic)\n",
              problem: "line 3: a second 'public:' line"),
        .init(name: "two private lines", text: "\(header)\nprivate: \(alicePrivate)\nprivate: \(alicePrivate)\npublic: \(alicePublic)\n",
              problem: "line 3: a second 'private:' line"),
    ]

    @Test("Malformed key files are refused, naming the line", arguments: malformed)
    func malformedKeyFile(_ tc: MalformedCase) throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let path = try dir.write("agent.key", tc.text)
        let error = thrownError { try KeyFile.readKeyAgreementKey(at: path) }
        #expect(error == .keyFile("\(path): \(tc.problem)"))
        // Whatever is wrong, the message never quotes the private key.
        #expect(error?.keyFileMessage?.contains(Self.alicePrivate.prefix(16)) == false)
    }

    @Test("A key file of the other type is refused")
    func wrongType() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let agentPath = dir.file("agent.key"), hostPath = dir.file("host.key")
        try Curve25519.KeyAgreement.PrivateKey().write(toKeyFile: agentPath)
        try Curve25519.Signing.PrivateKey().write(toKeyFile: hostPath)
        #expect(thrownError { try KeyFile.readSigningKey(at: agentPath) }
                == .keyFile("\(agentPath): the file holds an x25519 key, but an ed25519 key is needed here"))
        #expect(thrownError { try KeyFile.readKeyAgreementKey(at: hostPath) }
                == .keyFile("\(hostPath): the file holds an ed25519 key, but an x25519 key is needed here"))
    }

    @Test("A public key that does not match the private key is refused")
    func mismatchedKeyFile() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let mismatch = "\(dir.path)/agent.key: the public key does not match the private key (the file is corrupt or was edited); regenerate the key pair"
        let agent = try dir.write("agent.key", "\(Self.header)\npublic: \(Self.bobPublic)\nprivate: \(Self.alicePrivate)\n")
        #expect(thrownError { try KeyFile.readKeyAgreementKey(at: agent) } == .keyFile(mismatch))

        // The same for Ed25519: RFC 8032 test 1's seed with test 2's public key.
        let host = try dir.write("host.key", """
            secure-channel-key v1 ed25519
            public: 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c
            private: 9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
            """)
        #expect(thrownError { try KeyFile.readSigningKey(at: host) }
                == .keyFile("\(host): the public key does not match the private key (the file is corrupt or was edited); regenerate the key pair"))
    }

    @Test("An oversized file is refused unread")
    func oversizedKeyFile() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanUp() }
        let path = try dir.write("big.key", "\(Self.header)\n" + String(repeating: "# padding\n", count: 500))
        #expect(thrownError { try KeyFile.readKeyAgreementKey(at: path) }
                == .keyFile("\(path) is 5029 bytes, too large for a key file (at most 4096)"))
    }

    // MARK: Helpers

    /// The zero-copy seal with arrays, so a test can check its errors.
    func seal(_ key: AEADKey, nonce: [UInt8], plaintext: [UInt8], aad: [UInt8], into output: inout [UInt8]) throws(CryptoError) -> Int {
        let result: Result<Int, CryptoError> = nonce.withUnsafeBytes { n in
            plaintext.withUnsafeBytes { p in
                aad.withUnsafeBytes { a in
                    output.withUnsafeMutableBytes { o in
                        Result { () throws(CryptoError) -> Int in try key.seal(nonce: n, plaintext: p, authenticating: a, into: o) }
                    }
                }
            }
        }
        return try result.get()
    }

    /// The zero-copy open with arrays, so a test can check its errors.
    func open(_ key: AEADKey, nonce: [UInt8], ciphertext: [UInt8], aad: [UInt8], into output: inout [UInt8]) throws(CryptoError) -> Int {
        let result: Result<Int, CryptoError> = nonce.withUnsafeBytes { n in
            ciphertext.withUnsafeBytes { c in
                aad.withUnsafeBytes { a in
                    output.withUnsafeMutableBytes { o in
                        Result { () throws(CryptoError) -> Int in try key.open(nonce: n, ciphertext: c, authenticating: a, into: o) }
                    }
                }
            }
        }
        return try result.get()
    }
}
