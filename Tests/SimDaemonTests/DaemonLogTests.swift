import Foundation
import Testing

/// The daemon's own log (STATE/daemon.log for `sim start`): swift-log lines
/// at the level `--log-level` asks for.
@Suite("Simulator daemon log", .serialized)
struct DaemonLogTests {
    static func lines(_ sim: ChanctlHarness) throws -> [Substring] {
        try String(contentsOfFile: sim.stateDir + "/daemon.log", encoding: .utf8).split(separator: "\n")
    }

    @Test("by default: lifecycle lines at info and a crash at notice, each with the daemon's pid, and no request lines")
    func defaultLevel() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        try sim.start()
        sim.ok("domain", "create", "alpha", "--memory-mib", "1")
        sim.ok("domain", "crash", "alpha")
        _ = sim.run(["domain", "create", "alpha", "--memory-mib", "1"])
        let pid = try #require(sim.daemonPID)
        sim.ok("sim", "stop")
        let lines = try Self.lines(sim)
        let serving = try #require(lines.first { $0.contains("serving") }, "\(lines)")
        #expect(serving.contains(" info altp2m-sim:") && serving.contains("pid=\(pid)"), "\(serving)")
        #expect(lines.contains { $0.contains(" notice altp2m-sim:") && $0.contains("domain alpha") && $0.contains("crashed on request") }, "\(lines)")
        #expect(lines.contains { $0.contains("stopped; state discarded") }, "\(lines)")
        #expect(!lines.contains { $0.contains("domain.create from") }, "no request lines at info: \(lines)")
    }

    @Test("--log-level debug: one line per changing request with its caller, time and outcome (a refusal with its reason); trace adds reads")
    func debugLevel() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        try sim.start("--log-level", "debug")
        sim.ok("domain", "create", "alpha", "--memory-mib", "1")
        let refused = sim.run(["domain", "create", "alpha", "--memory-mib", "1"])
        #expect(refused.status != 0)
        sim.ok("domain", "list")
        sim.ok("sim", "stop")
        let lines = try Self.lines(sim)
        let created = lines.filter { $0.contains(" debug altp2m-sim:") && $0.contains("domain.create from dom0 in ") }
        #expect(created.count == 2, "\(lines)")
        #expect(created.first?.hasSuffix(" us: ok") == true, "\(created)")
        #expect(created.last?.contains(": refused: ") == true || created.last?.contains(": E") == true, "\(created)")
        #expect(!lines.contains { $0.contains("domain.list from") }, "reads only at trace: \(lines)")
    }
}
