import Foundation
import Testing

@Suite("End to end: chanctl audit show", .serialized)
struct AuditLogEndToEndTests {
    @Test("every change of policy, keys and channels is one line of audit.log, in order, with who, what and the outcome; failures too")
    func auditTrail() throws {
        let world = try SimWorld(allow: false)
        try world.chanctl("policy", "allow", "left", "right", "--max-pages", "32")
        let created = try world.chanctl("channel", "create", "orders", "--between", "left", "right", "--pages", "4")
        let createdGeneration = try #require(created.json?["generation"] as? Int)
        let unknown = try world.chanctl("channel", "create", "stray", "--between", "left", "nowhere", expect: nil)
        #expect(unknown.status != 0, "\(unknown.stdout)")
        let reissued = try world.chanctl("channel", "reissue", "orders")
        let reissuedGeneration = try #require(reissued.json?["generation"] as? Int)
        try world.chanctl("policy", "limit", "--max-channels-per-domain", "8")
        try world.chanctl("policy", "deny", "left", "right")
        let refused = try world.chanctl("channel", "create", "refused", "--between", "left", "right", expect: 1)
        try world.chanctl("channel", "destroy", "orders")

        // The file: 0600, one JSON object per line.
        let path = world.state + "/grant/audit.log"
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        #expect(mode == 0o600, "audit.log mode \(String(mode, radix: 8))")
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        for line in lines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any], "not a JSON object: \(line)")
        }

        let shown = try world.chanctl("audit", "show")
        let records = try #require(shown.json?["records"] as? [[String: Any]], "\(shown.stdout)")
        #expect(records.count == lines.count)
        let actions = records.map { "\($0["action"] as? String ?? "?") \($0["outcome"] as? String ?? "?")" }
        #expect(actions == [
            "keys.register ok", "keys.register ok", "policy.allow ok", "channel.create ok", "channel.create failed",
            "channel.reissue ok", "policy.limit ok", "policy.deny ok", "channel.create failed", "channel.destroy ok",
        ], "\(shown.stdout)")

        let user = String(cString: getpwuid(getuid())!.pointee.pw_name)
        var pids: Set<Int> = []
        for record in records {
            #expect(record["uid"] as? Int == Int(getuid()), "\(record)")
            #expect(record["user"] as? String == user, "\(record)")
            let time = record["time"] as? String ?? ""
            #expect(time.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"#, options: .regularExpression) != nil, "\(time)")
            if let pid = record["pid"] as? Int { pids.insert(pid) }
        }
        // Each record names the chanctl process that asked, not the daemon.
        #expect(pids.count == records.count, "one chanctl process per record: \(pids)")

        #expect(records[2]["domains"] as? [String] == ["left", "right"])
        #expect((records[2]["details"] as? [String: String])?["max_pages"] == "32")
        #expect(records[3]["channel"] as? String == "orders")
        #expect(records[3]["domains"] as? [String] == ["left", "right"])
        #expect(records[3]["generation"] as? Int == createdGeneration)
        #expect((records[3]["details"] as? [String: String])?["pages"] == "4")
        #expect(records[4]["channel"] as? String == "stray")
        #expect((records[4]["error"] as? String ?? "").contains("nowhere"), "\(records[4])")
        #expect(records[5]["generation"] as? Int == reissuedGeneration)
        #expect((records[6]["details"] as? [String: String])?["max_channels_per_domain"] == "8")
        let refusal = refused.json?["error"] as? String ?? "?"
        #expect(records[8]["error"] as? String == refusal, "the record carries the error the operator saw: \(records[8])")
        #expect(records[9]["channel"] as? String == "orders")
        #expect(records[9]["generation"] as? Int == reissuedGeneration)

        // Without --json: one line per record, oldest first.
        let text = try Binaries.run(Binaries.chanctl, ["audit", "show", "--state-dir", world.state])
        #expect(text.status == 0, "\(text.stderr)")
        let textLines = text.stdout.split(separator: "\n")
        #expect(textLines.count == records.count, "\(text.stdout)")
        #expect(textLines.last?.contains("channel.destroy orders left,right generation=\(reissuedGeneration)") == true,
                "\(text.stdout)")
        #expect(textLines[8].contains("failed: no policy allows left <-> right"), "\(text.stdout)")
    }
}
