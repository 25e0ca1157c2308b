import Altp2m
import Altp2mSim
import Foundation
import Testing

/// xenstore served by the daemon: each test names the xenstored 4.17
/// function (`tools/xenstore/`) whose rule it checks.
@Suite("xenstore", .serialized)
struct XenStoreTests {
    static func store(_ sim: ChanctlHarness, _ name: String? = nil) throws -> SimXenStore {
        let token = try name.map { try EventChannelTests.token(sim, $0) }
        return try SimXenStore(stateDirectory: StateDirectory(path: sim.stateDir), token: token)
    }

    static func errno(_ body: () throws -> Void) -> String? { EventChannelTests.errno(body) }

    static func domid(_ sim: ChanctlHarness, _ name: String) -> Int64 {
        sim.ok("domain", "list")["domains"]!.array!.first { $0["name"]?.string == name }!["domid"]!.int64!
    }

    @Test("perm_for_conn, construct_node, errno_from_parents, do_set_perms: owner, read, write, both, none; inheritance; dom0 bypasses")
    func permissions() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            sim.ok("domain", "create", "beta", "--memory-mib", "1")
            let (a, b) = (Self.domid(sim, "alpha"), Self.domid(sim, "beta"))
            let dom0 = try Self.store(sim)
            let alpha = try Self.store(sim, "alpha")
            let beta = try Self.store(sim, "beta")

            // The toolstack's nodes: readable by the domain, dom0's.
            #expect(try alpha.readString("domid") == "\(a)")
            #expect(try alpha.readString("/local/domain/\(a)/name") == "alpha")
            #expect(try alpha.permissions("name").map(\.description) == ["n0", "r\(a)"])
            #expect(Self.errno { _ = try beta.read("/local/domain/\(a)/name") } == "EACCES")
            #expect(Self.errno { try alpha.write("name", "renamed") } == "EACCES")
            #expect(Self.errno { try alpha.write("new-top", "x") } == "EACCES")
            #expect(try dom0.readString("/local/domain/\(b)/domid") == "\(b)")

            // construct_node: a guest owns what it creates; the rest is inherited.
            try alpha.write("data/x/y", "1")
            #expect(try alpha.permissions("data/x/y").map(\.description) == ["n\(a)"])
            try dom0.write("/shared/a", "v")
            try dom0.setPermissions("/shared", [XenStorePermission(.controlDomain, []), XenStorePermission(DomainID(rawValue: UInt16(a)), .read)])
            try dom0.write("/shared/b", "w")
            #expect(try dom0.permissions("/shared/b").map(\.description) == ["n0", "r\(a)"])
            #expect(try alpha.readString("/shared/b") == "w")
            #expect(Self.errno { try alpha.write("/shared/b", "no") } == "EACCES")
            // errno_from_parents: a missing node is ENOENT only to who may see its parent.
            #expect(Self.errno { _ = try alpha.read("/shared/missing") } == "ENOENT")
            #expect(Self.errno { _ = try beta.read("/shared/missing") } == "EACCES")
            #expect(Self.errno { _ = try beta.read("/shared/b") } == "EACCES")

            // do_set_perms: the owner sets them; a guest may not give a node away.
            let alphaID = DomainID(rawValue: UInt16(a)), betaID = DomainID(rawValue: UInt16(b))
            try alpha.setPermissions("data/x/y", [XenStorePermission(alphaID, []), XenStorePermission(betaID, .write)])
            try beta.write("/local/domain/\(a)/data/x/y", "from-beta")
            #expect(Self.errno { _ = try beta.read("/local/domain/\(a)/data/x/y") } == "EACCES")
            try alpha.setPermissions("data/x/y", [XenStorePermission(alphaID, []), XenStorePermission(betaID, [.read, .write])])
            #expect(try beta.readString("/local/domain/\(a)/data/x/y") == "from-beta")
            #expect(Self.errno { try beta.setPermissions("/local/domain/\(a)/data/x/y", [XenStorePermission(betaID, [])]) } == "EACCES")
            #expect(Self.errno { try alpha.setPermissions("data/x/y", [XenStorePermission(betaID, [])]) } == "EPERM")
            // The first entry is everyone else's access.
            try alpha.setPermissions("data/x/y", [XenStorePermission(alphaID, .read)])
            #expect(try beta.readString("/local/domain/\(a)/data/x/y") == "from-beta")
            #expect(Self.errno { try beta.write("/local/domain/\(a)/data/x/y", "no") } == "EACCES")
            #expect(try dom0.directory("/local/domain/\(a)/data/x") == ["y"])
            try alpha.remove("data/x")
            #expect(Self.errno { _ = try alpha.read("data/x/y") } == "ENOENT")
        }
    }

    @Test("is_valid_nodename, valid_chars: characters, //, trailing /, length after /local/domain/N/")
    func pathRules() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            let a = Self.domid(sim, "alpha")
            let dom0 = try Self.store(sim)
            let alpha = try Self.store(sim, "alpha")
            for bad in ["/bad path", "/a//b", "/trailing/", "/dot.ted", ""] {
                #expect(Self.errno { try dom0.write(bad, "x") } == "EINVAL", "\(bad)")
            }
            try dom0.write("/ok-_@Z9", "x")
            // get_implicit_path: dom0's relative paths are under /local/domain/0.
            try dom0.write("relative", "r")
            #expect(try dom0.readString("/local/domain/0/relative") == "r")
            let long = String(repeating: "a", count: 2048)
            try alpha.write("data/" + String(long.dropFirst(5)), "x")
            #expect(Self.errno { try alpha.write("data/" + String(long.dropFirst(4)), "x") } == "EINVAL")
            #expect(Self.errno { try dom0.write("/" + long, "x") } == "EINVAL")
            #expect(try alpha.directory("/local/domain/\(a)/data").count == 1)
        }
    }

    @Test("finalize_transaction: a node read then changed gives EAGAIN; the retry commits; abort discards")
    func transactions() throws {
        try withSimulator { sim in
            let dom0 = try Self.store(sim)
            let other = try Self.store(sim)
            try dom0.write("/tool/counter", "1")
            let t = try dom0.transactionStart()
            let seen = try dom0.readString("/tool/counter", transaction: t)
            try dom0.write("/tool/counter", String(Int(seen)! + 1), transaction: t)
            try dom0.write("/tool/new", "n", transaction: t)
            #expect(try other.readString("/tool/counter") == "1")
            #expect(Self.errno { _ = try other.read("/tool/new") } == "ENOENT")
            try other.write("/tool/counter", "10")
            #expect(Self.errno { try dom0.transactionEnd(t) } == "EAGAIN")
            #expect(Self.errno { _ = try other.read("/tool/new") } == "ENOENT")

            var attempts = 0
            try dom0.withTransaction { t throws(SimClientError) in
                attempts += 1
                let value = try dom0.readString("/tool/counter", transaction: t)
                if attempts == 1 { try other.write("/tool/counter", "20") }
                try dom0.write("/tool/counter", String(Int(value)! + 1), transaction: t)
            }
            #expect(attempts == 2)
            #expect(try other.readString("/tool/counter") == "21")

            let aborted = try dom0.transactionStart()
            try dom0.write("/tool/counter", "99", transaction: aborted)
            try dom0.transactionEnd(aborted, abort: true)
            #expect(try other.readString("/tool/counter") == "21")
            #expect(Self.errno { try dom0.transactionEnd(aborted) } == "ENOENT")
        }
    }

    @Test("do_watch, fire_watches: initial fire, descendants, relative paths, permissions; @introduceDomain and @releaseDomain on destroy and crash")
    func watches() throws {
        try withSimulator { sim in
            let dom0 = try Self.store(sim)
            try dom0.watch("@introduceDomain", token: "intro")
            try dom0.watch("@releaseDomain", token: "release")
            try dom0.watch("/tool/w", token: "t")
            var initial: [String] = []
            while let event = try dom0.readWatch(timeoutMilliseconds: 200) { initial.append("\(event.path) \(event.token)") }
            #expect(initial == ["@introduceDomain intro", "@releaseDomain release", "/tool/w t"])
            #expect(Self.errno { try dom0.watch("/tool/w", token: "t") } == "EEXIST")

            try dom0.write("/tool/w/a/b", "1")
            #expect(try dom0.readWatch(timeoutMilliseconds: 2000).map { "\($0.path) \($0.token)" } == "/tool/w/a/b t")
            try dom0.write("/tool/other", "1")
            #expect(try dom0.readWatch(timeoutMilliseconds: 100) == nil)

            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            #expect(try dom0.readWatch(timeoutMilliseconds: 2000)?.path == "@introduceDomain")
            let alpha = try Self.store(sim, "alpha")
            try alpha.watch("data", token: "mine")
            try alpha.watch("@releaseDomain", token: "r")
            try alpha.watch("/tool/w", token: "denied")
            #expect(try alpha.readWatch(timeoutMilliseconds: 2000).map { "\($0.path) \($0.token)" } == "data mine")
            _ = try alpha.readWatch(timeoutMilliseconds: 2000)
            _ = try alpha.readWatch(timeoutMilliseconds: 2000)
            try alpha.write("data/x", "1")
            #expect(try alpha.readWatch(timeoutMilliseconds: 2000).map { "\($0.path) \($0.token)" } == "data/x mine")
            // fire_watches: no event for a node the watcher may not read.
            try dom0.write("/tool/w/secret", "1")
            #expect(try alpha.readWatch(timeoutMilliseconds: 100) == nil)
            _ = try dom0.readWatch(timeoutMilliseconds: 2000)

            // A guest process that dies is not its domain: nothing fires.
            let probe = try sim.guest("alpha")
            probe.kill()
            #expect(try dom0.readWatch(timeoutMilliseconds: 300) == nil)
            // check_domains: a crash fires @releaseDomain (a guest without
            // read access to @releaseDomain is not told).
            sim.ok("domain", "crash", "alpha")
            #expect(try dom0.readWatch(timeoutMilliseconds: 3000).map { "\($0.path) \($0.token)" } == "@releaseDomain release")
            #expect(try alpha.readWatch(timeoutMilliseconds: 100) == nil)
            // destroy_domain: fires again; libxl removed /local/domain/N.
            let a = Self.domid(sim, "alpha")
            sim.ok("domain", "destroy", "alpha")
            #expect(try dom0.readWatch(timeoutMilliseconds: 3000)?.path == "@releaseDomain")
            #expect(Self.errno { _ = try dom0.read("/local/domain/\(a)/name") } == "ENOENT")
        }
    }

    @Test("kill -9 of the daemon: the tree and its permissions come back from the journal")
    func recovery() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        try sim.start()
        sim.ok("domain", "create", "alpha", "--memory-mib", "1")
        let a = DomainID(rawValue: UInt16(Self.domid(sim, "alpha")))
        let dom0 = try Self.store(sim)
        let alpha = try Self.store(sim, "alpha")
        try dom0.write("/tool/kept", "yes")
        try dom0.setPermissions("/tool/kept", [XenStorePermission(.controlDomain, []), XenStorePermission(a, .read)])
        try alpha.write("data/mine", "value")
        try dom0.remove("/local/domain/\(a.rawValue)/error")
        let t = try dom0.transactionStart()
        try dom0.write("/tool/committed", "c", transaction: t)
        try dom0.transactionEnd(t)

        let pid = try #require(sim.daemonPID)
        Foundation.kill(pid, SIGKILL)
        var waited = 0
        while Foundation.kill(pid, 0) == 0 && waited < 200 { usleep(10_000); waited += 1 }
        try sim.start()

        let again = try Self.store(sim, "alpha")
        #expect(try again.readString("/tool/kept") == "yes")
        #expect(try again.readString("data/mine") == "value")
        #expect(try again.permissions("data/mine").map(\.description) == ["n\(a.rawValue)"])
        #expect(Self.errno { _ = try again.read("error") } == "ENOENT")
        let root = try Self.store(sim)
        #expect(try root.readString("/tool/committed") == "c")
        #expect(try root.directory("/tool").sorted() == ["committed", "kept"])
    }
}

extension XenStoreTests {
    @Test("chanctl xenstore: write, read, ls, perms, set-perms, rm as dom0; xenstored's errors exit 3")
    func commands() throws {
        try withSimulator { sim in
            sim.ok("xenstore", "write", "/tool/cli/a", "hello")
            #expect(sim.ok("xenstore", "read", "/tool/cli/a")["value"]?.string == "hello")
            #expect(sim.ok("xenstore", "ls", "/tool/cli")["children"]?.array == ["a"])
            sim.ok("xenstore", "set-perms", "/tool/cli/a", "n0", "r3")
            #expect(sim.ok("xenstore", "perms", "/tool/cli/a")["perms"]?.array == ["n0", "r3"])
            #expect(sim.ok("xenstore", "perms", "@releaseDomain")["perms"]?.array == ["n0"])
            sim.ok("xenstore", "rm", "/tool/cli")
            sim.xenError("ENOENT", -2, "xenstore", "read", "/tool/cli/a")
            sim.xenError("EINVAL", -22, "xenstore", "write", "/bad path", "x")
        }
    }
}
