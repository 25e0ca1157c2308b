import Altp2m
import Altp2mSim
import Foundation
import Testing

/// Xen event channels served by the daemon: each test names the function of
/// Xen 4.17's `xen/common/event_channel.c` (or of the Linux evtchn driver
/// behind libxenevtchn) whose rule it checks.
@Suite("Event channels", .serialized)
struct EventChannelTests {
    static func token(_ sim: ChanctlHarness, _ name: String) throws -> String {
        try String(contentsOfFile: sim.stateDir + "/domains/\(name).token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func handle(_ sim: ChanctlHarness, _ name: String) throws -> SimEventChannel {
        try SimEventChannel(stateDirectory: StateDirectory(path: sim.stateDir), token: token(sim, name))
    }

    static func errno(_ body: () throws -> Void) -> String? {
        do { try body() } catch let error as SimClientError {
            if case .hypervisor(let errno, _) = error { return errno.name }
            return "\(error)"
        } catch { return "\(error)" }
        return nil
    }

    static func port(_ sim: ChanctlHarness, _ domain: String, _ port: UInt32) -> JSONValue? {
        sim.ok("evtchn", "list", domain)["ports"]?.array?.first { $0["port"]?.int64 == Int64(port) }
    }

    @Test("evtchn_alloc_unbound / evtchn_bind_interdomain / evtchn_send: a port is its handle's; the fd is readable on notify")
    func ownershipAndDelivery() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            let beta = sim.ok("domain", "create", "beta", "--memory-mib", "1")["domid"]!.int64!
            let alphaID = sim.ok("domain", "list")["domains"]!.array!.first { $0["name"]?.string == "alpha" }!["domid"]!.int64!
            let a1 = try Self.handle(sim, "alpha")
            let a2 = try Self.handle(sim, "alpha")
            let b = try Self.handle(sim, "beta")

            // evtchn_alloc_unbound: the lowest free port (port 0 is reserved).
            let ap = try a1.bindUnboundPort(remote: UInt16(beta))
            #expect(ap == 1)
            #expect(Self.port(sim, "alpha", 0)?["state"]?.string == "reserved")
            #expect(Self.port(sim, "alpha", ap)?["state"]?.string == "unbound")
            // evtchn_bind_interdomain sets the new local port pending: the
            // driver delivers it at once.
            let bp = try b.bindInterdomain(remote: UInt16(alphaID), remotePort: ap)
            #expect(b.waitReadable(timeoutMilliseconds: 2000))
            #expect(try b.pending() == bp)
            #expect(try b.pending() == nil)
            #expect(!b.waitReadable(timeoutMilliseconds: 0))
            try b.unmask(bp)
            #expect(Self.port(sim, "alpha", ap)?["remote_port"]?.int64 == Int64(bp))

            // A second process of alpha neither sends nor receives through a1's port.
            #expect(Self.errno { try a2.notify(ap) } == "ENOTCONN")
            #expect(Self.errno { try a2.unbind(ap) } == "ENOTCONN")
            #expect(!a1.waitReadable(timeoutMilliseconds: 0))
            try b.notify(bp)
            #expect(a1.waitReadable(timeoutMilliseconds: 2000))
            #expect(!a2.waitReadable(timeoutMilliseconds: 0))
            #expect(try a2.pending() == nil)
            #expect(try a1.pending() == ap)

            // Delivered means masked: a second event waits, pending, for the unmask.
            try b.notify(bp)
            #expect(!a1.waitReadable(timeoutMilliseconds: 100))
            #expect(Self.port(sim, "alpha", ap)?["pending"]?.bool == true)
            try a1.unmask(ap)
            #expect(a1.waitReadable(timeoutMilliseconds: 2000))
            #expect(try a1.pending() == ap)
            // evtchn_set_pending on an already pending port changes nothing.
            try b.notify(bp)
            try b.notify(bp)
            try a1.unmask(ap)
            #expect(try a1.pending() == ap)
            #expect(try a1.pending() == nil)

            // evtchn_close of a1's port: the peer's goes back to unbound, waiting for alpha.
            try a1.unbind(ap)
            #expect(Self.port(sim, "beta", bp)?["state"]?.string == "unbound")
            #expect(Self.port(sim, "beta", bp)?["remote"]?.int64 == alphaID)
            // evtchn_send on an unbound port drops the event silently.
            try b.notify(bp)
            a1.close(); a2.close(); b.close()
        }
    }

    @Test("evtchn_bind_interdomain errors: ESRCH for no domain, EINVAL for a port not waiting for the caller; EINVAL past max_evtchn_port")
    func bindErrors() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            let beta = sim.ok("domain", "create", "beta", "--memory-mib", "1")["domid"]!.int64!
            sim.ok("domain", "create", "gamma", "--memory-mib", "1")
            let a = try Self.handle(sim, "alpha")
            let b = try Self.handle(sim, "beta")
            let g = try Self.handle(sim, "gamma")
            let alphaID = a.domain.rawValue
            #expect(Self.errno { _ = try b.bindInterdomain(remote: 999, remotePort: 1) } == "ESRCH")
            #expect(Self.errno { _ = try b.bindInterdomain(remote: alphaID, remotePort: 5) } == "EINVAL")
            let ap = try a.bindUnboundPort(remote: UInt16(beta))
            // gamma is not the domain the port waits for.
            #expect(Self.errno { _ = try g.bindInterdomain(remote: alphaID, remotePort: ap) } == "EINVAL")
            _ = try b.bindInterdomain(remote: alphaID, remotePort: ap)
            // Already interdomain: no longer unbound.
            #expect(Self.errno { _ = try b.bindInterdomain(remote: alphaID, remotePort: ap) } == "EINVAL")
            #expect(Self.errno { try a.notify(XenEventChannels.maxPort + 1) } == "EINVAL")
            #expect(Self.errno { try a.notify(0) } == "ENOTCONN")
        }
    }

    @Test("evtchn_release: a killed process's ports close and the peer's port is unbound; evtchn_destroy on domain destroy")
    func killedProcessAndDestroy() throws {
        try withSimulator { sim in
            sim.ok("domain", "create", "alpha", "--memory-mib", "1")
            let beta = sim.ok("domain", "create", "beta", "--memory-mib", "1")["domid"]!.int64!
            sim.ok("domain", "create", "gamma", "--memory-mib", "1")
            let probe = try sim.guest("alpha")
            let alphaID = probe.hello["domid"]!.int64!
            let ap = try #require(probe.send("evtchn-bind-unbound \(beta)")["port"]?.int64)
            let b = try Self.handle(sim, "beta")
            let bp = try b.bindInterdomain(remote: UInt16(alphaID), remotePort: UInt32(ap))
            try b.notify(bp)
            #expect(try probe.send("evtchn-wait 2000")["readable"]?.bool == true)
            #expect(try probe.send("evtchn-pending")["port"]?.int64 == ap)

            probe.kill()
            var state: String?
            for _ in 0..<200 {
                state = Self.port(sim, "beta", bp)?["state"]?.string
                if state == "unbound" { break }
                usleep(10_000)
            }
            #expect(state == "unbound")
            #expect(Self.port(sim, "alpha", UInt32(ap)) == nil)
            // The process died, not its domain.
            #expect(sim.ok("domain", "list")["domains"]?.array?.first { $0["name"]?.string == "alpha" }?["state"]?.string == "running")

            // evtchn_destroy: destroying gamma closes its ports, beta's goes unbound.
            let g = try Self.handle(sim, "gamma")
            let gp = try g.bindUnboundPort(remote: UInt16(beta))
            let bp2 = try b.bindInterdomain(remote: g.domain.rawValue, remotePort: gp)
            sim.ok("domain", "destroy", "gamma")
            #expect(Self.port(sim, "beta", bp2)?["state"]?.string == "unbound")
            #expect(Self.errno { try g.notify(gp) } != nil)
        }
    }

    @Test("kill -9 of the daemon: bindings come back from the journal; a handle is resumed with its key, its ports pending")
    func recovery() throws {
        let sim = try ChanctlHarness()
        defer { sim.stop() }
        try sim.start()
        sim.ok("domain", "create", "alpha", "--memory-mib", "1")
        let beta = sim.ok("domain", "create", "beta", "--memory-mib", "1")["domid"]!.int64!
        var a: SimEventChannel? = try Self.handle(sim, "alpha")
        let b = try Self.handle(sim, "beta")
        let ap = try a!.bindUnboundPort(remote: UInt16(beta))
        let bp = try b.bindInterdomain(remote: a!.domain.rawValue, remotePort: ap)
        let closed = try Self.handle(sim, "alpha")
        let cp = try closed.bindUnboundPort(remote: UInt16(beta))
        closed.close()
        let (aHandle, aKey) = (a!.handle, a!.key)
        func bindings() -> [String] {
            (sim.ok("evtchn", "list", "beta")["ports"]?.array ?? []).map { p in
                ["port", "state", "remote", "remote_port", "handle"].map { p[$0]?.serialized ?? "-" }.joined(separator: ":")
            }
        }
        let before = bindings()

        let pid = try #require(sim.daemonPID)
        Foundation.kill(pid, SIGKILL)
        var waited = 0
        while Foundation.kill(pid, 0) == 0 && waited < 200 { usleep(10_000); waited += 1 }
        try sim.start()

        #expect(Self.port(sim, "alpha", ap)?["state"]?.string == "interdomain")
        #expect(Self.port(sim, "alpha", cp) == nil)
        #expect(bindings() == before)
        a = nil
        let state = StateDirectory(path: sim.stateDir)
        #expect(Self.errno { _ = try SimEventChannel.resume(stateDirectory: state, token: Self.token(sim, "beta"),
                                                            handle: aHandle, key: aKey) } == "ENOENT")
        #expect(Self.errno { _ = try SimEventChannel.resume(stateDirectory: state, token: Self.token(sim, "alpha"),
                                                            handle: aHandle, key: "0") } == "ENOENT")
        let resumed = try SimEventChannel.resume(stateDirectory: state, token: Self.token(sim, "alpha"), handle: aHandle, key: aKey)
        #expect(resumed.waitReadable(timeoutMilliseconds: 2000))
        #expect(try resumed.pending() == ap)
        try resumed.unmask(ap)
        let b2 = try SimEventChannel.resume(stateDirectory: state, token: Self.token(sim, "beta"), handle: b.handle, key: b.key)
        #expect(try b2.pending() == bp)
        try b2.unmask(bp)
        try resumed.notify(ap)
        #expect(b2.waitReadable(timeoutMilliseconds: 2000))
        #expect(try b2.pending() == bp)
    }
}
