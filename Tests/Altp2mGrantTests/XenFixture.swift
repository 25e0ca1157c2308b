import Foundation
import Testing
import XenBackend
import XenGuest

/// The real-Xen arm of ``BackendSuite``.
enum XenFixture {
    static func run() throws {
        let names = (ProcessInfo.processInfo.environment["SECURE_CHANNEL_TEST_XEN_DOMAINS"] ?? "")
            .split(separator: ",").map(String.init)
        guard names.count == 2 else {
            Issue.record("set SECURE_CHANNEL_TEST_XEN_DOMAINS=first,second to the names of two HVM guests with altp2m=\"external\"")
            return
        }
        let host = try XenControl()
        let directory = TemporaryDirectory()
        try BackendSuite.run(.init(host: host, first: names[0], second: names[1],
                                   stateDirectory: directory.path + "/grant"))
    }
}

@Suite("Xen backend off Xen")
struct XenBackendOffXenTests {
    @Test("opening fails with one clear message, before any Xen library runs")
    func unavailable() throws {
        guard !FileManager.default.fileExists(atPath: XenControl.privcmdPath) else {
            print("skipped: this machine has \(XenControl.privcmdPath); the off-Xen message cannot be checked here")
            return
        }
        do {
            _ = try XenControl()
            Issue.record("XenControl opened without /dev/xen/privcmd")
        } catch {
            #expect(error.description == "Xen control interface not available: /dev/xen/privcmd missing; use the simulator backend")
        }
        #expect(throws: XenBackendError.self) { try XenGuestPlatform() }
    }
}
