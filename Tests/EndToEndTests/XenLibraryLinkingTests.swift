import Foundation
import Testing

/// A guest has Xen's guest libraries (libxenstore, libxenevtchn,
/// libxengnttab) and not dom0's: libxenctrl and libxenforeignmemory come
/// with the toolstack, and a binary that needs them does not start in a
/// guest without them. The dynamic section says what the loader will look
/// for, whatever the code calls (docs/XEN.md, "What a guest needs").
@Suite("Xen libraries each binary needs")
struct XenLibraryLinkingTests {
    static let dom0Only = ["libxenctrl.so", "libxenforeignmemory.so"]
    static let guest = ["libxenstore.so", "libxenevtchn.so", "libxengnttab.so"]

    /// The `NEEDED` entries of an ELF file's dynamic section (`readelf -d`,
    /// from binutils, which scripts/setup.sh installs).
    static func needed(_ path: String) throws -> [String] {
        guard let readelf = ["/usr/bin/readelf", "/bin/readelf"].first(where: FileManager.default.isExecutableFile) else {
            throw BinaryError("readelf not found; install binutils (scripts/setup.sh does)")
        }
        let result = try Binaries.run(readelf, ["-d", path])
        guard result.status == 0 else { throw BinaryError("readelf -d \(path): \(result.stderr)") }
        // " 0x0000000000000001 (NEEDED)  Shared library: [libxenctrl.so.4.17]"
        return result.stdout.split(separator: "\n").filter { $0.contains("(NEEDED)") }.compactMap { line in
            guard let open = line.firstIndex(of: "["), let close = line.lastIndex(of: "]") else { return nil }
            return String(line[line.index(after: open)..<close])
        }
    }

    static func needs(_ libraries: [String], _ prefix: String) -> Bool {
        libraries.contains { $0.hasPrefix(prefix) }
    }

    @Test("guest-agent and libsecurechannel.so need Xen's guest libraries and no dom0 library (libxenctrl, libxenforeignmemory); chanctl needs both")
    func guestBinariesNeedNoDom0Library() throws {
        let agent = try Binaries.guestAgent
        let library = URL(fileURLWithPath: agent).deletingLastPathComponent().appendingPathComponent("libsecurechannel.so").path
        #expect(FileManager.default.fileExists(atPath: library), "\(library) is missing; build it with: swift build --product securechannel")
        for path in [agent, library] {
            let libraries = try Self.needed(path)
            for name in Self.dom0Only {
                #expect(!Self.needs(libraries, name), "\(path) needs \(name), which a guest does not have: \(libraries)")
            }
            for name in Self.guest {
                #expect(Self.needs(libraries, name), "\(path) does not need \(name): \(libraries)")
            }
        }
        // The same check on dom0's tool finds them, so the test can fail.
        let chanctl = try Self.needed(try Binaries.chanctl)
        for name in Self.dom0Only + Self.guest {
            #expect(Self.needs(chanctl, name), "chanctl does not need \(name): \(chanctl)")
        }
    }
}
