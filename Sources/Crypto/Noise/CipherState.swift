/// A Noise CipherState (Noise revision 34, §5.1): a key and a 64-bit message
/// counter used as the nonce.
///
/// After a handshake each direction has its own `CipherState`; sending with
/// one and receiving with the other keeps both counters in step, and strict
/// ordering of messages is what makes the implicit nonce safe. The counter
/// never wraps: the value 2^64-1 is reserved (§5.1), so once the counter
/// reaches it every `encrypt` and `decrypt` throws `nonceExhausted`, and the
/// session must be replaced (or rekeyed well before then).
///
/// The buffer-based `encrypt`/`decrypt` allocate nothing: the 12-byte nonce
/// is built on the stack and the key is an `AEADKey` whose AES-GCM schedule
/// is expanded once. They are the per-message path of the ring transport.
///
/// A `CipherState` is a reference type on purpose: a copy of a value type
/// would carry its own counter, and two counters over one key reuse nonces.
/// It is not thread-safe; confine each one to the thread that owns its
/// direction of the channel.
public final class CipherState {
    /// Length of the authentication tag appended to every ciphertext.
    public static let tagByteCount = 16

    /// The nonce value Noise reserves (2^64-1); it is never used for a message.
    public static let reservedNonce = UInt64.max

    /// The cipher this state encrypts with.
    public let cipher: NoiseProtocol.Cipher

    /// The key, or nil for the empty key of a handshake that has not yet
    /// mixed one in (then encryption is the identity, as §5.1 specifies).
    /// Public CipherStates always have a key.
    private var key: AEADKey?

    /// The nonce the next `encrypt` or `decrypt` will use.
    public private(set) var nonce: UInt64 = 0

    /// Set on the direction a one-way handshake never uses (see
    /// ``HandshakeResult``): why every use of this state is refused.
    private var discardedBecause: String?

    /// Whether this is the unused direction of a one-way handshake, which
    /// refuses every operation.
    public var isDiscarded: Bool { discardedBecause != nil }

    /// Whether a key is set (`HasKey()`).
    public var hasKey: Bool { key != nil }

    /// A CipherState with no key, for the handshake (`InitializeKey(empty)`).
    init(cipher: NoiseProtocol.Cipher) {
        self.cipher = cipher
    }

    /// A CipherState holding `key` with the nonce at 0 (`InitializeKey(key)`).
    ///
    /// - Throws: `incorrectKeySize` unless the key is 32 bytes; `unsupported`
    ///   for AES-GCM on a CPU without AES-NI and PCLMULQDQ.
    public convenience init(cipher: NoiseProtocol.Cipher, key: SymmetricKey) throws(CryptoError) {
        self.init(cipher: cipher)
        try initializeKey(key)
    }

    /// Sets the key and resets the nonce to 0 (`InitializeKey(key)`). Internal:
    /// re-keying a public state back to nonce 0 with an old key would reuse
    /// nonces, so callers get a fresh `CipherState` instead.
    func initializeKey(_ key: SymmetricKey) throws(CryptoError) {
        self.key = try AEADKey(cipher.aeadAlgorithm, key: key)
        nonce = 0
    }

    /// The state that stands for the CipherState a one-way handshake discards
    /// (§7.4: "the second CipherState from Split() is discarded").
    ///
    /// It holds a random key nobody else knows and sits at the reserved
    /// nonce, so `encrypt` and `decrypt` throw through the nonce check they
    /// already make (no extra test on the per-message path), and even a
    /// caller that moved the nonce could produce nothing a peer accepts.
    static func discarded(cipher: NoiseProtocol.Cipher, reason: String) throws(CryptoError) -> CipherState {
        let state = try CipherState(cipher: cipher, key: SymmetricKey(randomByteCount: 32))
        state.nonce = reservedNonce
        state.discardedBecause = reason
        return state
    }

    /// The error a nonce at 2^64-1 means: exhaustion, or a discarded state.
    private var reservedNonceError: CryptoError {
        if let discardedBecause { return .unsupported(discardedBecause) }
        return .nonceExhausted
    }

    /// Drops the key; the `AEADKey` wipes it when released.
    func clearKey() {
        key = nil
        nonce = 0
    }

    /// Sets the nonce (`SetNonce(n)`).
    ///
    /// For receivers of transports that carry explicit nonces. Moving the
    /// nonce of a *sending* state backwards reuses nonces, which destroys
    /// confidentiality and authenticity; the ring transport never needs it.
    public func setNonce(_ n: UInt64) {
        // A discarded direction stays unusable.
        guard discardedBecause == nil else { return }
        nonce = n
    }

    // MARK: Zero-copy interface (per message)

    /// Encrypts `plaintext` into `output` with the current nonce and
    /// increments the nonce (`EncryptWithAd(ad, plaintext)`).
    ///
    /// `output` may start at the same address as `plaintext` (in-place
    /// encryption); other overlaps are not allowed. Allocates nothing. On
    /// any error the nonce is unchanged.
    /// - Returns: the number of bytes written, `plaintext.count + 16`.
    /// - Throws: `nonceExhausted` when the nonce is 2^64-1; `bufferTooSmall`
    ///   when `output` cannot hold the ciphertext and tag.
    @discardableResult
    public func encrypt(
        plaintext: UnsafeRawBufferPointer,
        authenticating ad: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        guard let key else { return try Self.copy(plaintext, into: output) }
        let n = nonce
        guard n != Self.reservedNonce else { throw reservedNonceError }
        let nonceBytes = Self.nonceBytes(n, cipher)
        let written = try withUnsafeBytes(of: nonceBytes) { (nb) throws(CryptoError) -> Int in
            try key.seal(nonce: nb, plaintext: plaintext, authenticating: ad, into: output)
        }
        nonce = n &+ 1
        return written
    }

    /// Verifies and decrypts `ciphertext` (ending with the 16-byte tag) into
    /// `output` with the current nonce, and increments the nonce only if it
    /// verifies (`DecryptWithAd(ad, ciphertext)`).
    ///
    /// `output` may start at the same address as `ciphertext`. Allocates
    /// nothing. On failure the nonce is unchanged, so the next genuine
    /// message still decrypts; the contents of `output` are then unspecified
    /// (never unauthenticated plaintext to rely on).
    /// - Returns: the plaintext length, `ciphertext.count - 16`.
    /// - Throws: `authenticationFailure` when the tag does not verify;
    ///   `malformedInput` when `ciphertext` is shorter than the tag;
    ///   `nonceExhausted` when the nonce is 2^64-1; `bufferTooSmall`.
    @discardableResult
    public func decrypt(
        ciphertext: UnsafeRawBufferPointer,
        authenticating ad: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        guard let key else { return try Self.copy(ciphertext, into: output) }
        let n = nonce
        guard n != Self.reservedNonce else { throw reservedNonceError }
        let nonceBytes = Self.nonceBytes(n, cipher)
        let written = try withUnsafeBytes(of: nonceBytes) { (nb) throws(CryptoError) -> Int in
            try key.open(nonce: nb, ciphertext: ciphertext, authenticating: ad, into: output)
        }
        nonce = n &+ 1
        return written
    }

    // MARK: Rekey (§4.2, §11.3)

    /// Replaces the key with `REKEY(k)`: the first 32 bytes of
    /// `ENCRYPT(k, 2^64-1, zerolen, zeros)` with 32 zero bytes as plaintext.
    /// The nonce is unchanged. Both parties must rekey at the same point of
    /// the message stream (for example every N messages).
    public func rekey() throws(CryptoError) {
        if let discardedBecause { throw .unsupported(discardedBecause) }
        // Public states always have a key; the handshake never rekeys.
        guard let key else { return }
        var block = SecureBytes(zeros: 32 + Self.tagByteCount)
        let maxNonce = Self.nonceBytes(Self.reservedNonce, cipher)
        try block.withUnsafeMutableBytes { (b) throws(CryptoError) in
            try withUnsafeBytes(of: maxNonce) { (nb) throws(CryptoError) in
                // In place: the 32 zero bytes at the start are the plaintext.
                _ = try key.seal(nonce: nb, plaintext: UnsafeRawBufferPointer(rebasing: b[0..<32]),
                                 authenticating: UnsafeRawBufferPointer(start: nil, count: 0), into: b)
            }
        }
        let newKey = block.withUnsafeBytes { SymmetricKey(SecureBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<32]))) }
        self.key = try AEADKey(cipher.aeadAlgorithm, key: newKey)
    }

    // MARK: Array convenience

    /// `EncryptWithAd(ad, plaintext)`: ciphertext followed by the tag (or
    /// the plaintext itself while the handshake has no key).
    public func encryptWithAd(_ ad: [UInt8], _ plaintext: [UInt8]) throws(CryptoError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plaintext.count + (hasKey ? Self.tagByteCount : 0))
        let result: Result<Int, CryptoError> = ad.withUnsafeBytes { adb in
            plaintext.withUnsafeBytes { pb in
                out.withUnsafeMutableBytes { ob in
                    Result { () throws(CryptoError) -> Int in try encrypt(plaintext: pb, authenticating: adb, into: ob) }
                }
            }
        }
        _ = try result.get()
        return out
    }

    /// `DecryptWithAd(ad, ciphertext)`: the plaintext, if the tag verifies.
    public func decryptWithAd(_ ad: [UInt8], _ ciphertext: [UInt8]) throws(CryptoError) -> [UInt8] {
        let overhead = hasKey ? Self.tagByteCount : 0
        guard ciphertext.count >= overhead else {
            throw .malformedInput("ciphertext of \(ciphertext.count) bytes is shorter than the \(overhead)-byte tag")
        }
        var out = [UInt8](repeating: 0, count: ciphertext.count - overhead)
        let result: Result<Int, CryptoError> = ad.withUnsafeBytes { adb in
            ciphertext.withUnsafeBytes { cb in
                out.withUnsafeMutableBytes { ob in
                    Result { () throws(CryptoError) -> Int in try decrypt(ciphertext: cb, authenticating: adb, into: ob) }
                }
            }
        }
        _ = try result.get()
        return out
    }

    // MARK: Helpers

    /// The 96-bit nonce for counter `n`: 32 zero bits, then `n` as 64 bits,
    /// little-endian for ChaChaPoly (§12.3) and big-endian for AESGCM (§12.4).
    /// Three UInt32s are 12 contiguous bytes, so this lives on the stack.
    @inline(__always)
    static func nonceBytes(_ n: UInt64, _ cipher: NoiseProtocol.Cipher) -> (UInt32, UInt32, UInt32) {
        let low = UInt32(truncatingIfNeeded: n)
        let high = UInt32(truncatingIfNeeded: n >> 32)
        switch cipher {
        case .chaChaPoly: return (0, low.littleEndian, high.littleEndian)
        case .aesGCM: return (0, high.bigEndian, low.bigEndian)
        }
    }

    /// The identity "encryption" of a state without a key (§5.1).
    private static func copy(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(CryptoError) -> Int {
        guard output.count >= input.count else {
            throw .bufferTooSmall(needed: input.count, available: output.count)
        }
        if let src = input.baseAddress, let dst = output.baseAddress, input.count > 0, src != UnsafeRawPointer(dst) {
            dst.copyMemory(from: src, byteCount: input.count)
        }
        return input.count
    }
}
