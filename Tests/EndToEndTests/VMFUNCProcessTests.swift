import Foundation
import Testing

/// `cplatform_vmfunc_try` in a process of its own (Tests/CABI/vmfunc_sigill.c
/// compiled with CPlatform.c): a refused VMFUNC is reported and the process
/// lives; any other SIGILL still ends the process.
@Suite("VMFUNC's SIGILL handler in a fresh process")
struct VMFUNCProcessTests {
    @Test("refused VMFUNCs are reported; a SIGILL that is not ours ends the process by SIGILL")
    func freshProcess() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vmfunc-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let program = directory + "/vmfunc_sigill"
        let root = CInterface.repository
        let build = try Binaries.run("/usr/bin/gcc", ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2",
                                                      "-I", root + "/Sources/CPlatform/include",
                                                      root + "/Sources/CPlatform/CPlatform.c",
                                                      root + "/Tests/CABI/vmfunc_sigill.c", "-o", program, "-lpthread"])
        try #require(build.status == 0, "gcc: \(build.stderr)")

        let refused = try Binaries.run(program, ["refused"])
        #expect(refused.status == 0, "\(refused.stderr)")
        #expect(refused.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1000",
                "every VMFUNC outside a Xen guest is #UD and reported refused")

        let other = try Binaries.run(program, ["other"])
        #expect(other.status == SIGILL, "a SIGILL that is not at the VMFUNC must end the process by SIGILL, not exit \(other.status)")
    }
}
