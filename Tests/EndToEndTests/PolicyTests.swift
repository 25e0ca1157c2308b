import Foundation
import Testing

@Suite("End to end: chanctl policy allow --modes/--suites", .serialized)
struct PolicyEndToEndTests {
    @Test("policy allow --modes/--suites: the rule names them, channel create obeys them, bad values are usage errors")
    func policyModesAndSuites() throws {
        let world = try SimWorld(allow: false)
        let allowed = try world.chanctl("policy", "allow", "left", "right", "--max-pages", "32",
                                        "--modes", "encrypted,isolated", "--suites", "aesgcm")
        #expect(allowed.json?["modes"] as? [String] == ["encrypted", "isolated"], "\(allowed.stdout)")
        #expect(allowed.json?["suites"] as? [String] == ["aesgcm"], "\(allowed.stdout)")

        let shown = try world.chanctl("policy", "show")
        let rules = shown.json?["rules"] as? [[String: Any]] ?? []
        #expect(rules.count == 1, "\(shown.stdout)")
        #expect(rules.first?["modes"] as? [String] == ["encrypted", "isolated"], "\(shown.stdout)")
        #expect(rules.first?["suites"] as? [String] == ["aesgcm"], "\(shown.stdout)")
        #expect(rules.first?["max_pages"] as? Int == 32, "\(shown.stdout)")

        // Isolated with AES-GCM is allowed; ChaCha20-Poly1305 is not.
        try world.chanctl("channel", "create", "iso", "--between", "left", "right", "--pages", "4",
                          "--mode", "isolated", "--suite", "aesgcm")
        let refused = try world.chanctl("channel", "create", "chacha", "--between", "left", "right", "--pages", "4",
                                        "--suite", "chachapoly", expect: nil)
        #expect(refused.status != 0, "a suite the rule does not name must be refused: \(refused.stdout)")

        // Without --modes the rule is encrypted only (the previous default).
        try world.chanctl("policy", "allow", "left", "right")
        let encryptedOnly = try world.chanctl("channel", "create", "iso2", "--between", "left", "right", "--pages", "4",
                                              "--mode", "isolated", expect: nil)
        #expect(encryptedOnly.status != 0, "isolated mode must need --modes: \(encryptedOnly.stdout)")

        let badMode = try world.chanctl("policy", "allow", "left", "right", "--modes", "encrypted,plain", expect: 2)
        let badModeError = badMode.json?["error"] as? String ?? ""
        #expect(badModeError.contains("plain") && badModeError.contains("isolated"), "\(badMode.stdout)")
        let badSuite = try world.chanctl("policy", "allow", "left", "right", "--suites", "des", expect: 2)
        let badSuiteError = badSuite.json?["error"] as? String ?? ""
        #expect(badSuiteError.contains("des") && badSuiteError.contains("aesgcm"), "\(badSuite.stdout)")
        let empty = try world.chanctl("policy", "allow", "left", "right", "--modes", "", expect: 2)
        let emptyError = empty.json?["error"] as? String ?? ""
        #expect(emptyError.contains("--modes"), "\(empty.stdout)")
    }

    @Test("policy limit --max-channels-per-domain: policy show reports it, the next creation obeys it, bad values are usage errors")
    func channelLimit() throws {
        let world = try SimWorld(allow: false)
        try world.chanctl("policy", "allow", "left", "right")
        #expect(try world.chanctl("policy", "show").json?["max_channels_per_domain"] as? Int == 16)
        let limited = try world.chanctl("policy", "limit", "--max-channels-per-domain", "2")
        #expect(limited.json?["max_channels_per_domain"] as? Int == 2, "\(limited.stdout)")
        #expect(try world.chanctl("policy", "show").json?["max_channels_per_domain"] as? Int == 2)
        for name in ["one", "two"] {
            try world.chanctl("channel", "create", name, "--between", "left", "right", "--pages", "2")
        }
        let third = try world.chanctl("channel", "create", "three", "--between", "left", "right", "--pages", "2", expect: nil)
        #expect(third.status != 0)
        #expect((third.json?["error"] as? String ?? "").contains("maxChannelsPerDomain = 2"), "\(third.stdout)")
        try world.chanctl("policy", "limit", "--max-channels-per-domain", "3")
        try world.chanctl("channel", "create", "three", "--between", "left", "right", "--pages", "2")
        for bad in ["0", "4097", "many"] {
            let refused = try world.chanctl("policy", "limit", "--max-channels-per-domain", bad, expect: 2)
            #expect((refused.json?["error"] as? String ?? "").contains("--max-channels-per-domain"), "\(refused.stdout)")
        }
    }

    @Test("chanctl pingpong --mode isolated: the rule comes from policy allow --modes (no policy.json editing)")
    func pingpongIsolated() throws {
        let tmp = try TemporaryDirectory()
        let result = try Binaries.run(Binaries.chanctl, ["pingpong", "--count", "50", "--mode", "isolated", "--json"],
                                      environment: ["TMPDIR": tmp.path], timeout: 120)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        #expect(result.json?["mode"] as? String == "isolated", "\(result.stdout)")
        let left = try FileManager.default.contentsOfDirectory(atPath: tmp.path)
        #expect(left.isEmpty, "left behind in TMPDIR: \(left)")
    }
}
