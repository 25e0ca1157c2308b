import Foundation
import Testing

/// The systemd units of systemd/ as make install writes them, pointing at
/// the built binaries, under `systemd-analyze verify` (make install-check
/// verifies the installed ones with their manual pages too).
@Suite("systemd units: systemd-analyze verify")
struct UnitFileTests {
    static let analyzer = "/usr/bin/systemd-analyze"
    static let units = ["secure-channel-agent.service", "secure-channel-sim.service", "secure-channel-dom0.service"]

    @Test("each unit, with @BINDIR@ made the build directory, verifies with no complaint; all are Type=notify and run the foreground commands",
          .enabled(if: FileManager.default.isExecutableFile(atPath: analyzer),
                   "systemd-analyze is missing (scripts/setup.sh installs the systemd package)"))
    func verify() throws {
        let tmp = try TemporaryDirectory()
        let bindir = URL(fileURLWithPath: try Binaries.chanctl).deletingLastPathComponent().path
        var paths: [String] = []
        for unit in Self.units {
            let template = try String(contentsOfFile: VersionEndToEndTests.packageDirectory + "/systemd/\(unit).in", encoding: .utf8)
            let text = template.replacingOccurrences(of: "@BINDIR@", with: bindir)
                .replacingOccurrences(of: "@DOCDIR@", with: "/usr/local/share/doc/secure-channel")
            #expect(!text.contains("@"), "\(unit): a placeholder make install does not fill")
            #expect(text.contains("\nType=notify\n"), "\(unit) must be Type=notify")
            let path = tmp.path + "/" + unit
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            paths.append(path)
        }
        let agent = try String(contentsOfFile: paths[0], encoding: .utf8)
        // No options: the agent reads /etc/secure-channel/agent.conf itself.
        #expect(agent.contains("\nExecStart=\(bindir)/guest-agent run\n"), "\(agent)")
        #expect(!agent.contains("EnvironmentFile="), "\(agent)")
        #expect(agent.contains("\nWatchdogSec="), "\(agent)")
        let sim = try String(contentsOfFile: paths[1], encoding: .utf8)
        #expect(sim.contains("\nExecStart=\(bindir)/chanctl sim serve "), "\(sim)")
        let dom0 = try String(contentsOfFile: paths[2], encoding: .utf8)
        #expect(dom0.contains("\nExecStart=\(bindir)/chanctl domain watch --backend xen "), "\(dom0)")
        #expect(dom0.contains("\nWatchdogSec=") && dom0.contains("\nRestart=on-failure\n"), "\(dom0)")

        // --man=no: the pages are not installed here (install-check has them).
        let result = try Binaries.run(Self.analyzer, ["verify", "--man=no"] + paths)
        #expect(result.status == 0 && result.stdout.isEmpty && result.stderr.isEmpty,
                "systemd-analyze verify: \(result.status) \(result.stdout) \(result.stderr)")
    }
}
