/// Misuse of a Noise handshake: a call made in the wrong state, or keys that
/// do not fit the handshake pattern.
///
/// Cryptographic failures (a tag that does not verify, a truncated message, a
/// low-order public key) are `CryptoError`s, as everywhere in ChannelCrypto;
/// `NoiseError` covers only what the caller of `HandshakeState` got wrong, so
/// `catch let error as NoiseError` separates bugs from attacks.
public enum NoiseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `writeMessage` was called when the peer must send next, or
    /// `readMessage` when this party must send next. The string says whose
    /// turn it is and which call to make instead.
    case outOfTurn(String)
    /// `finish()` was called before the last handshake message was written or read.
    case handshakeNotFinished(String)
    /// A handshake message was written or read after the handshake finished,
    /// or `finish()` was called a second time.
    case handshakeAlreadyFinished
    /// An earlier `writeMessage` or `readMessage` failed; the handshake state
    /// was wiped and cannot continue. Start a new handshake.
    case handshakeFailed
    /// The pattern needs a key the caller did not pass; the string names it.
    case missingKey(String)
    /// The caller passed a key the pattern never uses, which would otherwise
    /// be ignored silently (for example a remote static key for XX, where the
    /// peer's key is learned during the handshake and must be checked after it).
    case unexpectedKey(String)

    public var description: String {
        switch self {
        case let .outOfTurn(what):
            return "Noise handshake out of turn: \(what)"
        case let .handshakeNotFinished(what):
            return "Noise handshake not finished: \(what)"
        case .handshakeAlreadyFinished:
            return "Noise handshake already finished: use the CipherStates returned by finish()"
        case .handshakeFailed:
            return "Noise handshake failed earlier and was wiped: start a new handshake"
        case let .missingKey(what):
            return "Noise handshake is missing a key: \(what)"
        case let .unexpectedKey(what):
            return "Noise handshake was given a key its pattern does not use: \(what)"
        }
    }
}
