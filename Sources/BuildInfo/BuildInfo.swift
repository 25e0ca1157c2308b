import ChannelCrypto

/// What a binary of this package was built from and links: printed by
/// `chanctl --version` and `guest-agent --version`.
///
/// The git revision and the Xen libraries' version are found at build time
/// (`BuildFacts`, written by the BuildFacts plugin through
/// scripts/build-facts.sh); libsodium's is the library loaded at run time.
package enum BuildInfo {
    /// The package's version. Its major number is the C interface's ABI
    /// version (the soname of libsecurechannel.so and `sc_version`).
    package static let packageVersion = "1.0.0"

    /// `git rev-parse --short HEAD` of the checkout built ("-dirty" when
    /// tracked files had changes), or "unknown" outside a git checkout.
    package static var gitRevision: String { BuildFacts.gitRevision }

    /// The version of libxenctrl and the other Xen libraries the build
    /// compiled and linked against (pkg-config's `xencontrol`), or "unknown".
    package static var xenLibraries: String { BuildFacts.xenLibraries }

    /// `sodium_version_string()` of the libsodium loaded.
    package static var libsodium: String { libsodiumVersion }

    /// The `--version` text of `tool`: the name and package version on the
    /// first line, then one `name: value` line each for the revision, the
    /// libraries and `extra`.
    package static func versionText(tool: String, extra: [(String, String)] = []) -> String {
        let lines: [(String, String)] = [
            ("git revision", gitRevision),
            ("libsodium", libsodium),
            ("Xen libraries", "\(xenLibraries) (built against)"),
        ] + extra
        return (["\(tool) \(packageVersion)"] + lines.map { "\($0.0): \($0.1)" }).joined(separator: "\n")
    }
}
