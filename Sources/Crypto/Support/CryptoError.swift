/// Every failure ChannelCrypto reports.
///
/// libsodium's integer results are translated into these cases at the C
/// boundary, so callers never see a C return code. Cases carry enough detail
/// to say what was wrong, never secret material.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A tag, MAC or signature did not verify: the data was tampered with, or
    /// the key or nonce is not the one used to produce it.
    case authenticationFailure
    /// A key had the wrong length for the algorithm.
    case incorrectKeySize(expected: Int, actual: Int)
    /// A nonce had the wrong length for the algorithm.
    case incorrectNonceSize(expected: Int, actual: Int)
    /// A caller-provided output buffer cannot hold the result.
    case bufferTooSmall(needed: Int, available: Int)
    /// The algorithm is not available here (for example AES-256-GCM on a CPU
    /// without AES-NI and PCLMUL).
    case unsupported(String)
    /// Input that is structurally invalid: a truncated ciphertext, a public key
    /// that yields an all-zero shared secret, bad hex, an oversized message.
    case malformedInput(String)
    /// A nonce counter reached its limit; continuing would reuse a nonce.
    case nonceExhausted
    /// A key file could not be used; the string names the file and the problem.
    case keyFile(String)
    /// libsodium itself failed (for example it could not allocate guarded
    /// memory); the string names the call.
    case libsodiumFailure(String)

    public var description: String {
        switch self {
        case .authenticationFailure:
            return "authentication failed: the data was modified or the key or nonce is wrong"
        case let .incorrectKeySize(expected, actual):
            return "incorrect key size: expected \(expected) bytes, got \(actual)"
        case let .incorrectNonceSize(expected, actual):
            return "incorrect nonce size: expected \(expected) bytes, got \(actual)"
        case let .bufferTooSmall(needed, available):
            return "output buffer too small: need \(needed) bytes, have \(available)"
        case let .unsupported(what):
            return "unsupported: \(what)"
        case let .malformedInput(what):
            return "malformed input: \(what)"
        case .nonceExhausted:
            return "nonce exhausted: the key must be replaced before sending more"
        case let .keyFile(what):
            return "key file: \(what)"
        case let .libsodiumFailure(call):
            return "libsodium failure in \(call)"
        }
    }
}
