import Foundation
import Testing

/// `chanctl pingpong --backend xen-sim` through the built binaries: the
/// grant module over XenControl, two `guest-agent` processes answering the
/// frame flow (grant share and map, the event channel's two ends), the
/// handshake and the round trips, all over the simulator's Xen libraries.
@Suite("End to end: chanctl pingpong --backend xen-sim", .serialized)
struct XenSimPingPongTests {
    static func pingpong(_ extra: [String]) throws -> [String: Any] {
        let tmp = try TemporaryDirectory()
        let result = try Binaries.run(Binaries.chanctl, ["pingpong", "--backend", "xen-sim", "--count", "300", "--json"] + extra,
                                      environment: ["TMPDIR": tmp.path], timeout: 180)
        #expect(result.status == 0, "\(extra): \(result.stdout) \(result.stderr)")
        let json = try #require(result.json, "not one JSON object: \(result.stdout) \(result.stderr)")
        #expect(json["ok"] as? Bool == true)
        #expect(json["count"] as? Int == 300)
        let left = try FileManager.default.contentsOfDirectory(atPath: tmp.path)
        #expect(left.isEmpty, "left behind in TMPDIR: \(left)")
        #expect(Binaries.processes(mentioning: tmp.path).isEmpty, "processes left running")
        return json
    }

    static func median(_ json: [String: Any]) -> UInt64 { (json["p50_ns"] as? NSNumber)?.uint64Value ?? 0 }

    @Test("spin, encrypted and isolated: the whole Xen path runs")
    func spin() throws {
        for mode in ["encrypted", "isolated"] {
            let json = try Self.pingpong(["--mode", mode])
            #expect(json["mode"] as? String == mode)
            #expect(Self.median(json) > 0 && Self.median(json) < 1_000_000_000, "\(json)")
        }
    }

    /// Before each process bound its own end of the event channel, no
    /// notification arrived and every sleep ran out its 10 ms re-check, so a
    /// round trip took at least 10 ms.
    @Test("--wait block and adaptive: the peers' notifications arrive (a round trip well under the 10 ms re-check)")
    func sleeping() throws {
        for wait in ["block", "adaptive"] {
            let json = try Self.pingpong(["--wait", wait])
            #expect(json["wait"] as? String == wait)
            let median = Self.median(json)
            #expect(median > 0 && median < 5_000_000, "\(wait): a median of \(median) ns means the sleeps ran out instead of being woken")
        }
    }
}
