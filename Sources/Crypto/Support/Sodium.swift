internal import CSodium

/// libsodium must be initialised once before any other call; `sodium_init` is
/// thread-safe and idempotent, so every entry point calls `Sodium.ensureInitialized()`
/// through a lazily evaluated global (Swift guarantees one-time initialisation).
enum Sodium {
    private static let initResult: Int32 = sodium_init()

    @inline(__always)
    static func ensureInitialized() {
        // sodium_init returns 0 on first success, 1 if already initialised and
        // -1 only when the library cannot work at all (no entropy source).
        precondition(initResult >= 0, "libsodium could not be initialised (sodium_init failed)")
    }

    /// The version of the libsodium library linked at run time.
    static var version: String {
        String(cString: sodium_version_string())
    }
}

/// The libsodium version string (for benchmark reports and diagnostics).
public var libsodiumVersion: String { Sodium.version }
