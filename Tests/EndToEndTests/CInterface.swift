import Foundation
import Testing

/// The C interface as a user gets it: the built libsecurechannel installed
/// by scripts/install-lib.sh (what make install-lib runs after its release
/// build) into a temporary DESTDIR, and C programs built against those
/// files through pkg-config.
struct CInterface {
    /// The repository (for the script, the examples and the test programs).
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let prefix = "/usr/local"

    let destdir: String
    var libdir: String { destdir + Self.prefix + "/lib" }
    var includedir: String { destdir + Self.prefix + "/include" }

    /// pkg-config finds the installed securechannel.pc (and, with
    /// --define-prefix, takes the prefix from where it is: under DESTDIR);
    /// the loader finds libsecurechannel.so.1 there.
    var environment: [String: String] {
        ["PKG_CONFIG_PATH": libdir + "/pkgconfig", "PKG_CONFIG": "pkg-config --define-prefix", "LD_LIBRARY_PATH": libdir]
    }

    /// Installs the library built next to the test bundle into `directory`/root.
    static func install(into directory: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> CInterface {
        let build = URL(fileURLWithPath: try Binaries.guestAgent).deletingLastPathComponent().path
        // pkg-config prints paths with "//" collapsed; so do the expectations.
        let installed = CInterface(destdir: (directory as NSString).standardizingPath + "/root")
        let result = try Binaries.run(repository + "/scripts/install-lib.sh", [build],
                                      environment: ["DESTDIR": installed.destdir, "PREFIX": prefix], timeout: 60)
        #expect(result.status == 0, "install-lib.sh: \(result.stdout) \(result.stderr)", sourceLocation: sourceLocation)
        return installed
    }

    /// What `pkg-config ARGUMENTS securechannel` prints, split into words.
    func pkgConfig(_ arguments: String...) throws -> [String] {
        let result = try Binaries.run("/usr/bin/pkg-config", ["--define-prefix"] + arguments + ["securechannel"], environment: environment)
        guard result.status == 0 else { throw BinaryError("pkg-config \(arguments.joined(separator: " ")) securechannel: \(result.stderr)") }
        return result.stdout.split(whereSeparator: \.isWhitespace).map(String.init)
    }

    /// Builds examples/c (sc_ping, sc_echo) with its Makefile into `directory`.
    func buildExamples(into directory: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try Binaries.run("/usr/bin/make", ["-s", "-C", Self.repository + "/examples/c", "OUT=\(directory)"],
                                      environment: environment, timeout: 120)
        #expect(result.status == 0, "make -C examples/c: \(result.stdout) \(result.stderr)", sourceLocation: sourceLocation)
    }

    /// Compiles one C file with gcc against the installed files: linked to
    /// the shared object, or (`statically`) to the archive.
    func compile(_ source: String, to output: String, statically: Bool = false,
                 sourceLocation: SourceLocation = #_sourceLocation) throws {
        let cflags = try pkgConfig("--cflags")
        let libraries = statically
            ? ["-L" + libdir, "-l:libsecurechannel.a"] + (try pkgConfig("--static", "--libs")).filter { $0 != "-lsecurechannel" }
            : try pkgConfig("--libs")
        let result = try Binaries.run("/usr/bin/gcc", ["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror", "-O2"]
                                      + cflags + ["-o", output, source] + libraries, environment: environment, timeout: 120)
        #expect(result.status == 0, "gcc \(source): \(result.stderr)", sourceLocation: sourceLocation)
    }
}
