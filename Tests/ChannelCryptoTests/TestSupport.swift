import ChannelCrypto
import Testing

/// The error `body` threw, or nil when it returned: lets a test compare the
/// exact `CryptoError` case, associated values included, with `#expect(==)`.
/// (Closures infer untyped `throws`, so the error arrives as `any Error`; any
/// error other than a `CryptoError` fails the test.)
func thrownError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> CryptoError? {
    do {
        _ = try body()
        return nil
    } catch let error as CryptoError {
        return error
    } catch {
        Issue.record("expected a CryptoError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

extension CryptoError {
    /// The message of a `malformedInput` error, nil for other cases.
    var malformedInputMessage: String? {
        if case let .malformedInput(message) = self { return message }
        return nil
    }

    /// The message of a `keyFile` error, nil for other cases.
    var keyFileMessage: String? {
        if case let .keyFile(message) = self { return message }
        return nil
    }
}

/// Bytes from a hex literal in a test (the literal is trusted).
func hex(_ string: String) -> [UInt8] {
    try! Hex.decode(string.filter { !$0.isWhitespace })
}
