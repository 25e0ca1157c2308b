import Foundation
import Testing

/// `chanctl --version` and `guest-agent --version` through the built
/// binaries: the shape of the text, and the revision the build recorded
/// against the checkout's.
@Suite("End to end: --version of both tools")
struct VersionEndToEndTests {
    /// The package's root directory (this file is Tests/EndToEndTests/VersionTests.swift).
    static let packageDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// `git rev-parse --short HEAD` of the package's checkout, or nil outside one.
    static func checkoutRevision() throws -> String? {
        let result = try Binaries.run("/usr/bin/env", ["git", "-C", packageDirectory, "rev-parse", "--short", "HEAD"])
        let revision = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return result.status == 0 && !revision.isEmpty ? revision : nil
    }

    /// The `name: value` lines after the first, by name.
    static func fields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    @Test("--version prints the package version, the git revision of the checkout, libsodium's and the Xen libraries' versions",
          arguments: ["chanctl", "guest-agent"])
    func version(tool: String) throws {
        let binary = tool == "chanctl" ? try Binaries.chanctl : try Binaries.guestAgent
        let result = try Binaries.run(binary, ["--version"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let first = try #require(lines.first, "no output")
        #expect(first.wholeMatch(of: /[a-z-]+ [0-9]+\.[0-9]+\.[0-9]+/) != nil && first.hasPrefix(tool + " "),
                "the first line is the tool and its version: \(first)")

        let fields = Self.fields(result.stdout)
        var expected = ["git revision", "libsodium", "Xen libraries"]
        if tool == "chanctl" { expected.append("simulator default") }
        #expect(lines.count == 1 + expected.count, "\(result.stdout)")
        for name in expected { #expect(fields[name]?.isEmpty == false, "no '\(name): ...' line: \(result.stdout)") }
        #expect(fields["libsodium"]?.wholeMatch(of: /[0-9]+\.[0-9]+\.[0-9]+/) != nil, "\(result.stdout)")
        #expect(fields["Xen libraries"]?.wholeMatch(of: /[0-9]+\.[0-9]+(\.[0-9]+)? \(built against\)/) != nil, "\(result.stdout)")
        if tool == "chanctl" {
            #expect(fields["simulator default"]?.wholeMatch(of: /Xen 4\.[0-9]+/) != nil, "\(result.stdout)")
        }

        let revision = try #require(fields["git revision"])
        if let checkout = try Self.checkoutRevision() {
            #expect(revision == checkout || revision == checkout + "-dirty",
                    "built from \(revision), the checkout is at \(checkout): rebuild (swift build) and run again")
        } else {
            #expect(revision == "unknown", "no git checkout at \(Self.packageDirectory), yet the build recorded \(revision)")
        }
    }

    @Test("the tools' package version is the C library's (sc_version's text in libsecurechannel.so)")
    func sameVersionAsTheLibrary() throws {
        let tools = try Binaries.run(Binaries.chanctl, ["--version"])
        let version = try #require(tools.stdout.split(separator: "\n").first?.split(separator: " ").last.map(String.init))
        let library = URL(fileURLWithPath: try Binaries.chanctl).deletingLastPathComponent().appendingPathComponent("libsecurechannel.so")
        let bytes = try Data(contentsOf: library)
        let says = Data("securechannel \(version)\0".utf8)
        #expect(bytes.range(of: says) != nil,
                "libsecurechannel.so's sc_version does not say securechannel \(version): change BuildInfo.packageVersion and sc_version together")
    }

    @Test("scripts/build-facts.sh: outside a git checkout the revision is unknown; it rewrites its file only on a change")
    func buildFactsOutsideGit() throws {
        let tmp = try TemporaryDirectory()
        let source = tmp.path + "/unpacked", output = tmp.path + "/generated"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let script = Self.packageDirectory + "/scripts/build-facts.sh"
        let first = try Binaries.run("/bin/sh", [script, source, output])
        #expect(first.status == 0, "\(first.stderr)")
        let file = output + "/BuildFacts.swift"
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.contains("static let gitRevision = \"unknown\""), "\(text)")
        #expect(text.contains("static let xenLibraries = \""), "\(text)")

        // Unchanged facts leave the file (and so the build) alone.
        let old = Date(timeIntervalSince1970: 1_000_000)
        try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: file)
        let second = try Binaries.run("/bin/sh", [script, source, output])
        #expect(second.status == 0, "\(second.stderr)")
        let modified = try FileManager.default.attributesOfItem(atPath: file)[.modificationDate] as? Date
        #expect(modified == old, "the file was rewritten with the same content")
    }
}
