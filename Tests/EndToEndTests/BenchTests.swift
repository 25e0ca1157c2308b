import Foundation
import Testing

@Suite("End to end: chanctl bench", .serialized)
struct BenchTests {
    @Test("chanctl bench --quick --filter: JSON with the schema, cases beside their baselines, Markdown merged between markers, SVG, nothing left behind")
    func quickFilteredBench() throws {
        let dir = try TemporaryDirectory()
        let json = dir.path + "/bench.json", markdown = dir.path + "/BENCH.md", plot = dir.path + "/latency.svg"
        try "# Title\n\nintro\n\n<!-- chanctl bench: begin -->\nold tables\n<!-- chanctl bench: end -->\n\ntail\n"
            .write(toFile: markdown, atomically: true, encoding: .utf8)
        let before = Binaries.processes(mentioning: "bench-peer").count
        let result = try Binaries.run(Binaries.chanctl, ["bench", "--quick", "--filter", "isolated, spin, software, 64 B",
                                                          "--json", json, "--markdown", markdown, "--plot", plot],
                                      environment: ["TMPDIR": dir.path], timeout: 240)
        #expect(result.status == 0, "stderr: \(result.stderr)")

        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        let machine = try #require(object["machine"] as? [String: Any])
        for key in ["cpu", "cores", "kernel", "swift", "libsodium", "date"] { #expect(machine[key] != nil, "machine.\(key)") }
        let cases = try #require(object["cases"] as? [[String: Any]])
        let channel = try #require(cases.first { $0["name"] as? String == "SecureChannel isolated, spin, software, 64 B" })
        #expect(channel["kind"] as? String == "securechannel")
        #expect(channel["mode"] as? String == "isolated")
        #expect(channel["wait"] as? String == "spin")
        #expect(channel["enforcement"] as? String == "software")
        #expect(channel["size"] as? Int == 64)
        let baselineName = try #require(channel["baseline"] as? String)
        let baseline = try #require(cases.first { $0["name"] as? String == baselineName }, "the baseline case ran too")
        #expect(baseline["kind"] as? String == "baseline")
        let p50 = try #require(channel["p50_ns"] as? Int), base50 = try #require(baseline["p50_ns"] as? Int)
        for key in ["p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"] {
            let value = try #require(channel[key] as? Int, "\(key)")
            #expect(value > 0)
        }
        #expect((channel["p90_ns"] as! Int) >= p50 && (channel["max_ns"] as! Int) >= (channel["p999_ns"] as! Int))
        let ratio = try #require(channel["ratio"] as? Double)
        #expect(abs(ratio - Double(p50) / Double(base50)) < 0.01)
        #expect((channel["msgs_per_s"] as? Double ?? 0) > 1000)
        // Only the filtered case and its baseline; the scale cases only run unfiltered.
        #expect(cases.count == 2)
        #expect((object["scale"] as? [Any])?.isEmpty == true)
        #expect(object["throughput"] is [Any])

        let merged = try String(contentsOfFile: markdown, encoding: .utf8)
        #expect(merged.hasPrefix("# Title\n\nintro\n"))
        #expect(merged.hasSuffix("<!-- chanctl bench: end -->\n\ntail\n"))
        #expect(!merged.contains("old tables"))
        #expect(merged.contains("| SecureChannel isolated, spin, software, 64 B |"))
        #expect(merged.contains("![Round-trip latency percentiles per case](latency.svg)"))
        let svg = try String(contentsOfFile: plot, encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("SecureChannel isolated, spin, software, 64 B") && svg.hasSuffix("</svg>\n"))

        // The private simulator, the peers and the temporary files are gone.
        #expect(Binaries.processes(mentioning: "bench-peer").count == before)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("chanctl-bench") }
        #expect(leftovers.isEmpty, "left behind: \(leftovers)")
    }

    @Test("chanctl bench --quick --filter on a throughput case: the stream arrives (the sink checks the byte count) and is compared with the memcpy ring")
    func quickThroughput() throws {
        let dir = try TemporaryDirectory()
        let json = dir.path + "/bench.json"
        let result = try Binaries.run(Binaries.chanctl, ["bench", "--quick", "--filter", "isolated, 64 KiB", "--json", json],
                                      environment: ["TMPDIR": dir.path], timeout: 240)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        #expect((object["cases"] as? [Any])?.isEmpty == true, "no latency case is named like that")
        let throughput = try #require(object["throughput"] as? [[String: Any]])
        let channel = try #require(throughput.first { $0["name"] as? String == "SecureChannel isolated, 64 KiB" })
        #expect(channel["kind"] as? String == "securechannel")
        #expect(channel["size"] as? Int == 65536)
        #expect(channel["baseline"] as? String == "C memcpy ring, 64 KiB")
        let rate = try #require(channel["bytes_per_s"] as? Double)
        #expect(rate > 50e6, "64 KiB messages through shared memory: \(rate) B/s")
        let baseline = try #require(throughput.first { $0["name"] as? String == "C memcpy ring, 64 KiB" })
        let baseRate = try #require(baseline["bytes_per_s"] as? Double)
        let ratio = try #require(channel["ratio"] as? Double)
        #expect(abs(ratio - rate / baseRate) < 0.01)
    }

    @Test("chanctl bench: an unwritable --json directory is a usage error that names it")
    func badOutputPath() throws {
        let result = try Binaries.run(Binaries.chanctl, ["bench", "--quick", "--json", "/nonexistent-dir/out.json"])
        #expect(result.status == 2)
        #expect((result.stdout + result.stderr).contains("/nonexistent-dir"))
    }
}
