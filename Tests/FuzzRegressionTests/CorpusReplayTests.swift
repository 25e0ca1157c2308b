import FuzzTargets
import Testing

/// Every input kept in Fuzz/corpus (the seeds, and each crash the fuzzer
/// found, saved as a regression input once fixed) runs through its target
/// with the oracle on, in a normal build: a fixed defect that comes back
/// fails here, without libFuzzer.
@Suite struct CorpusReplayTests {
    static let corpus: String = {
        // Tests/FuzzRegressionTests/CorpusReplayTests.swift -> repository root.
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/") + "/Fuzz/corpus"
    }()

    @Test("every kept input replays with no oracle violated", arguments: FuzzTarget.all.map(\.name))
    func replay(target name: String) throws {
        let target = try #require(FuzzTarget.named(name))
        let files = SeedWriter.files(in: Self.corpus + "/" + name) + SeedWriter.files(in: Self.corpus + "/" + name + "/regressions")
        #expect(!files.isEmpty, "Fuzz/corpus/\(name) holds no inputs: run scripts/fuzz.sh --seeds")
        for file in files {
            let bytes = try #require(SeedWriter.read(file), "cannot read \(file)")
            do {
                try target.run(bytes)
            } catch {
                Issue.record("\(file): \(error.description)")
            }
        }
    }

    @Test("the seeds the targets build now also pass their oracles", arguments: FuzzTarget.all.map(\.name))
    func freshSeeds(target name: String) throws {
        let target = try #require(FuzzTarget.named(name))
        let seeds = target.seeds()
        #expect(!seeds.isEmpty)
        for (index, seed) in seeds.enumerated() {
            do { try target.run(seed) } catch { Issue.record("seed \(index): \(error.description)") }
        }
    }
}

/// The session seeds must reach the deep end of the protocol, or the
/// fuzzer starts from shallow water: each is a whole benign session.
@Suite struct SessionSeedTests {
    @Test("each session seed opens the channel and carries messages the way it points")
    func seedsCarryMessages() throws {
        for seed in SessionTarget.seeds() {
            let report = try SessionTarget.replay(seed)
            let oneWay = seed[0] & 4 != 0
            #expect(!report.attacked, "shape \(seed[0]): a seed writes nothing into the window")
            #expect(report.delivered[1] >= 6, "shape \(seed[0]): the responder delivered \(report.delivered[1])")
            if !oneWay {
                #expect(report.delivered[0] >= 6, "shape \(seed[0]): the initiator delivered \(report.delivered[0])")
            }
        }
    }
}

/// Likewise for the ring seeds: frames go round the ring both ways.
@Suite struct RingSeedTests {
    @Test("each ring seed commits and receives frames across the ring's end")
    func seedsMoveFrames() throws {
        for seed in RingTarget.seeds() {
            let (received, committed) = try RingTarget.replay(seed)
            let oneWay = seed[0] & 4 != 0, reader = seed[0] & 8 != 0
            if !oneWay || reader { #expect(received >= 20, "shape \(seed[0]): received \(received)") }
            if !oneWay || !reader { #expect(committed >= 20, "shape \(seed[0]): committed \(committed)") }
        }
    }
}
