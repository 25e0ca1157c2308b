import Foundation
import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim

@Suite("Audit log")
struct AuditLogTests {
    @Test("the actor, the time from the module's clock, a domain's death, and a log others can read refused without undoing the change")
    func auditLog() throws {
        let world = try SimWorld()
        world.grants.auditActor = AuditActor(uid: 4242, user: "operator", pid: 77)
        try world.addDomain("web")
        try world.addDomain("db")
        try world.grants.allow("web", "db")
        let made = try world.grants.createChannel(ChannelRequest(name: "orders", between: "web", and: "db", pageCount: 3))
        world.clock.now += 61
        _ = try world.grants.domainDied(.name("db"))

        let records = try world.grants.auditRecords()
        #expect(records.map(\.action) == ["keys.register", "keys.register", "policy.allow", "channel.create", "channel.teardown"])
        #expect(records.allSatisfy { $0.uid == 4242 && $0.user == "operator" && $0.pid == 77 && $0.outcome == "ok" })
        #expect(records[0].time == "2023-11-14T22:13:20Z", "1 700 000 000 s since the epoch: \(records[0].time)")
        #expect(records[4].time == "2023-11-14T22:14:21Z")
        #expect(records[4].channel == "orders" && records[4].generation == made.channel.generation)
        #expect(records[4].details?["reason"] == "responder died" || records[4].details?["reason"] == "initiator died")

        // A log others can read is refused by name; the change itself stands.
        let path = world.directory.path + "/grant/audit.log"
        chmod(path, 0o644)
        try world.grants.allow("web", "db", maxPages: 8)
        let failure = try #require(world.grants.lastAuditFailure)
        #expect(failure.contains(path) && failure.contains("chmod 600"), "\(failure)")
        #expect(try world.grants.loadPolicy().rules.first?.maxPages == 8)
        chmod(path, 0o600)
        try world.grants.disallow("web", "db")
        #expect(world.grants.lastAuditFailure == nil)
        #expect(try world.grants.auditRecords().last?.action == "policy.deny")
    }

    @Test("the current process as the default actor, with its user name")
    func currentProcess() {
        let actor = AuditActor.currentProcess
        #expect(actor.uid == getuid() && actor.pid == getpid())
        #expect(actor.user == String(cString: getpwuid(getuid())!.pointee.pw_name))
    }
}
