import Foundation
import Testing

/// Every channel mode with every wait strategy, between two guest-agent
/// processes: the smallest and the largest message, and a byte stream
/// through an echo agent and back.
@Suite("End to end: both modes, every wait strategy, two processes", .serialized)
struct ModesAcrossProcessesTests {
    static let cases: [(String, String)] = ["encrypted", "isolated"].flatMap { mode in
        ["spin", "block", "adaptive"].map { (mode, $0) }
    }

    @Test("1 B and the largest message echo intact; 8 MiB through cat and back hash the same", arguments: cases)
    func modeAndWait(_ mode: String, _ wait: String) throws {
        let world = try SimWorld(allow: false)
        try world.chanctl("policy", "allow", "left", "right", "--modes", "encrypted,isolated")
        for name in ["small", "large", "stream"] {
            try world.chanctl("channel", "create", name, "--between", "left", "right", "--pages", "16", "--mode", mode)
        }
        let echo = try world.spawnAgent(["run", "--wait", wait] + world.agentOptions("right"), log: "echo")
        defer { stopProcess(echo) }

        func ping(_ channel: String, size: Int) throws -> Binaries.Result {
            try Binaries.run(Binaries.guestAgent, ["ping", "--channel", channel, "--size", String(size), "--count", "50",
                                                  "--wait", wait, "--json", "--timeout", "20"] + world.agentOptions("left"),
                             timeout: 60)
        }
        let small = try ping("small", size: 1)
        #expect(small.status == 0, "\(small.stdout) \(small.stderr) \(world.log("echo"))")
        #expect(small.json?["mode"] as? String == mode)

        // Too large: a clear error naming the limit; then exactly the limit.
        let tooLarge = try ping("large", size: 1 << 20)
        #expect(tooLarge.status == 1)
        let message = tooLarge.json?["error"] as? String ?? tooLarge.stderr
        let limit = try #require(message.split(separator: " ").compactMap { Int($0) }.first { $0 > 1000 && $0 < 1 << 20 },
                                 "the error names the largest message: \(message)")
        try world.chanctl("channel", "destroy", "large")
        try world.chanctl("channel", "create", "large", "--between", "left", "right", "--pages", "16", "--mode", mode)
        let largest = try ping("large", size: limit)
        #expect(largest.status == 0, "\(largest.stdout) \(largest.stderr)")
        #expect(largest.json?["size"] as? Int == limit)

        // A byte stream larger than the ring, both ways.
        let input = world.tmp.path + "/input", output = world.tmp.path + "/output"
        var bytes = [UInt8](repeating: 0, count: 8 << 20)
        var state: UInt32 = 0x1234_5678
        for i in bytes.indices { state = state &* 1_664_525 &+ 1_013_904_223; bytes[i] = UInt8(truncatingIfNeeded: state >> 24) }
        try Data(bytes).write(to: URL(fileURLWithPath: input))
        let cat = try Binaries.run("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \(input) > \(output)", try Binaries.guestAgent, "cat",
                                               "--channel", "stream", "--wait", wait, "--timeout", "30"] + world.agentOptions("left"),
                                   timeout: 300)
        #expect(cat.status == 0, "\(cat.stderr) \(world.log("echo"))")
        #expect(try sha256(ofFile: input) == sha256(ofFile: output))
    }
}
