/// A Noise SymmetricState (Noise revision 34, §5.2): the chaining key `ck`,
/// the handshake hash `h` and the handshake's CipherState.
///
/// Internal: only `HandshakeState` drives it, and nothing outside needs the
/// intermediate keys. `ck` and every HKDF output live in `SecureBytes`, so
/// they are wiped as soon as the last reference goes; `h` is a transcript
/// hash, not a secret, and is kept as an array.
final class SymmetricState {
    let hash: NoiseProtocol.Hash
    private let cipherState: CipherState
    /// nil once wiped; the handshake never touches a wiped state.
    private var chainingKey: SecureBytes?
    private var h: [UInt8]

    /// `InitializeSymmetric(protocol_name)`.
    init(protocol noiseProtocol: NoiseProtocol) {
        hash = noiseProtocol.hash
        cipherState = CipherState(cipher: noiseProtocol.cipher)
        let name = Array(noiseProtocol.name.utf8)
        if name.count <= hash.byteCount {
            h = name + [UInt8](repeating: 0, count: hash.byteCount - name.count)
        } else {
            h = Self.digest(hash.function, [name])
        }
        chainingKey = SecureBytes(h)
    }

    /// `HasKey()` of the handshake's CipherState.
    var hasKey: Bool { cipherState.hasKey }

    /// `GetHandshakeHash()`.
    var handshakeHash: [UInt8] { h }

    /// `MixKey(input_key_material)`: `ck, temp_k = HKDF(ck, ikm, 2)`, then
    /// the cipher key is `temp_k` truncated to 32 bytes.
    func mixKey(_ inputKeyMaterial: UnsafeRawBufferPointer) throws(CryptoError) {
        let outputs = Self.hkdf(hash.function, liveChainingKey, inputKeyMaterial, outputs: 2)
        chainingKey = outputs[0]
        try cipherState.initializeKey(Self.truncatedKey(outputs[1]))
    }

    /// `MixHash(data)`: `h = HASH(h || data)`.
    func mixHash(_ data: UnsafeRawBufferPointer) {
        let hasher = hash.function.init()
        h.withUnsafeBytes { hasher.update($0) }
        hasher.update(data)
        h.withUnsafeMutableBytes { hasher.finalize(into: $0) }
    }

    func mixHash(_ data: [UInt8]) {
        data.withUnsafeBytes { mixHash($0) }
    }

    /// `MixKeyAndHash(input_key_material)`: `ck, temp_h, temp_k = HKDF(ck, ikm, 3)`,
    /// `MixHash(temp_h)`, then the cipher key is `temp_k` truncated to 32 bytes.
    func mixKeyAndHash(_ inputKeyMaterial: UnsafeRawBufferPointer) throws(CryptoError) {
        let outputs = Self.hkdf(hash.function, liveChainingKey, inputKeyMaterial, outputs: 3)
        chainingKey = outputs[0]
        outputs[1].withUnsafeBytes { mixHash($0) }
        try cipherState.initializeKey(Self.truncatedKey(outputs[2]))
    }

    /// `EncryptAndHash(plaintext)`: appends `EncryptWithAd(h, plaintext)` to
    /// `message` and mixes it into `h`.
    func encryptAndHash(_ plaintext: [UInt8], appendingTo message: inout [UInt8]) throws(CryptoError) {
        let ciphertext = try cipherState.encryptWithAd(h, plaintext)
        mixHash(ciphertext)
        message.append(contentsOf: ciphertext)
    }

    /// `DecryptAndHash(ciphertext)`: `DecryptWithAd(h, ciphertext)`, then
    /// `MixHash(ciphertext)` (only reached when the tag verified).
    func decryptAndHash(_ ciphertext: [UInt8]) throws(CryptoError) -> [UInt8] {
        let plaintext = try cipherState.decryptWithAd(h, ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// `Split()`: the initiator-to-responder and responder-to-initiator
    /// CipherStates, keyed with `HKDF(ck, zerolen, 2)` truncated to 32 bytes.
    func split() throws(CryptoError) -> (initiatorToResponder: CipherState, responderToInitiator: CipherState) {
        let outputs = Self.hkdf(hash.function, liveChainingKey, UnsafeRawBufferPointer(start: nil, count: 0), outputs: 2)
        let c1 = try CipherState(cipher: cipherState.cipher, key: Self.truncatedKey(outputs[0]))
        let c2 = try CipherState(cipher: cipherState.cipher, key: Self.truncatedKey(outputs[1]))
        return (c1, c2)
    }

    /// Drops the chaining key and the handshake cipher key (both wiped on
    /// release). `h` stays: it is public and is the handshake hash.
    func wipe() {
        chainingKey = nil
        cipherState.clearKey()
    }

    private var liveChainingKey: SecureBytes {
        guard let chainingKey else {
            preconditionFailure("Noise SymmetricState used after it was wiped")
        }
        return chainingKey
    }

    // MARK: Hash dispatch

    // Generic helpers called with an existential metatype: Swift opens it, so
    // the hash is chosen once per call with no per-byte dynamic dispatch.
    private static func hkdf<H: HashFunction>(_: H.Type, _ ck: SecureBytes, _ ikm: UnsafeRawBufferPointer, outputs: Int) -> [SecureBytes] {
        NoiseHKDF<H>.derive(chainingKey: ck, inputKeyMaterial: ikm, outputs: outputs)
    }

    private static func digest<H: HashFunction>(_: H.Type, _ parts: [[UInt8]]) -> [UInt8] {
        let hasher = H()
        for part in parts { hasher.update(part) }
        return hasher.finalize()
    }

    /// The first 32 bytes of an HKDF output as a cipher key (§5.2: "If
    /// HASHLEN is 64, then truncates temp_k to 32 bytes").
    private static func truncatedKey(_ output: SecureBytes) -> SymmetricKey {
        output.withUnsafeBytes { SymmetricKey(SecureBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<32]))) }
    }
}
