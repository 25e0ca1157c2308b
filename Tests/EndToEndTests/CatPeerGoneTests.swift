import Foundation
import Testing

/// `guest-agent cat` whose input never ends, against a peer that goes away
/// while it still sends: it must end, naming why, instead of waiting
/// forever for room in a ring nobody reads any more.
@Suite("End to end: cat ends when its peer stops reading", .serialized)
struct CatPeerGoneTests {
    static let cases: [(String, Int32)] = ["encrypted", "isolated"].flatMap { mode in
        [SIGTERM, SIGKILL].map { (mode, $0) }
    }

    @Test("cat with endless input: the peer cat stopped (SIGTERM) or killed (kill -9) mid-stream, and the sender exits non-zero within seconds naming the peer",
          arguments: cases)
    func senderEndsWhenPeerGoes(mode: String, signal: Int32) throws {
        let world = try SimWorld(allow: false)
        try world.chanctl("policy", "allow", "left", "right", "--modes", "encrypted,isolated")
        try world.chanctl("channel", "create", "probe", "--between", "left", "right", "--pages", "4", "--mode", mode)
        // The reader: nothing to send (its input is empty, so it half-closes
        // at once) and it reads until stopped.
        let reader = try world.spawnAgent(["cat", "--channel", "probe", "--timeout", "20"] + world.agentOptions("right"),
                                          log: "reader")
        defer { stopProcess(reader) }
        // The sender: endless input from /dev/zero.
        let sender = try world.spawn("/bin/sh", ["-c", "exec \"$0\" \"$@\" < /dev/zero", try Binaries.guestAgent, "cat",
                                                 "--channel", "probe", "--timeout", "20"] + world.agentOptions("left"),
                                     log: "sender")
        defer { stopProcess(sender) }
        // The stream runs: bytes reach the reader's output.
        let output = world.tmp.path + "/reader.out"
        let deadline = Date().addingTimeInterval(20)
        func written() -> Int { ((try? FileManager.default.attributesOfItem(atPath: output))?[.size] as? Int) ?? 0 }
        while written() < 1 << 20, Date() < deadline { usleep(20_000) }
        try #require(written() >= 1 << 20, "the stream never ran: \(world.log("sender")) \(world.log("reader"))")
        #expect(sender.isRunning, "the sender must be mid-stream when its peer goes: \(world.log("sender"))")

        kill(reader.processIdentifier, signal)
        #expect(waitForExit(reader, seconds: 5), "the reader must go: \(world.log("reader"))")
        // The attack happened: the reader is gone while the sender still has input.
        #expect(!reader.isRunning)
        #expect(waitForExit(sender, seconds: 10),
                "cat went on waiting for room in a ring nobody reads: \(world.log("sender"))")
        if !sender.isRunning {
            #expect(sender.terminationReason == .exit, "cat must exit, not crash: \(world.log("sender"))")
            #expect(sender.terminationStatus != 0, "input was left unsent, so cat must not claim success")
            let expected = signal == SIGTERM ? "the peer closed the channel and reads no more" : "the peer's agent process went away"
            #expect(world.log("sender").contains(expected), "cat must say why: \(world.log("sender"))")
        }
    }
}
