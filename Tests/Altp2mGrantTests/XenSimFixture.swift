import Foundation
import Synchronization
import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import XenBackend
import XenGuest
import XenInterface

/// The xen-sim arm of ``BackendSuite``: a simulator daemon in this process,
/// `XenControl` over the simulator's libxenctrl, libxenstore and
/// libxenforeignmemory as dom0, and in each guest a `XenFrameFlowAgent`
/// over the simulator's guest libraries answering the frame flow, as the
/// agents of docs/XEN.md do on Xen. Every call the Xen backend makes goes
/// through the same code it runs on a Xen host.
final class XenSimFixture {
    let directory = TemporaryDirectory()
    let state: StateDirectory
    private let daemonThread: Thread
    private var agentThreads: [Thread] = []
    /// What the agents did, and their failures, for the test to assert on.
    let agents = AgentLog()

    final class AgentLog: Sendable {
        let stopping = Atomic<Bool>(false)
        let events = Mutex<[XenFrameFlowAgent.Event]>([])
    }

    init() throws {
        state = StateDirectory(path: directory.path + "/sim")
        let daemon = HandedOver(try SimDaemon(stateDirectory: state))
        daemonThread = Thread { try? daemon.value.run() }
        daemonThread.start()
        let deadline = Date().addingTimeInterval(10)
        while access(state.socketPath, F_OK) != 0 {
            guard Date() < deadline else { throw FixtureError("the in-process simulator did not listen within 10 s") }
            usleep(10_000)
        }
    }

    /// Creates an HVM domain with altp2m external and starts its agent.
    func addDomain(_ name: String) throws {
        let client = try SimClient(stateDirectory: state)
        defer { client.close() }
        _ = try client.call("domain.create", ["name": .string(name), "vcpus": 2, "memory_mib": 2,
                                              "altp2m": "external"])
        let libraries = try XenGuestLibraries.simulator(domain: name, stateDirectory: state.path, vcpu: 1)
        let platform = try XenGuestPlatform(libraries: libraries)
        let domain = platform.domain
        let agent = HandedOver((try XenFrameFlowAgent(domain: domain, libraries: libraries), platform))
        let log = agents
        let thread = Thread {
            while !log.stopping.load(ordering: .acquiring) {
                do {
                    let events = try agent.value.0.serve(timeoutMilliseconds: 100)
                    if !events.isEmpty { log.events.withLock { $0 += events } }
                } catch {
                    log.events.withLock { $0.append(.failed(peer: domain, "serve: \(error)")) }
                    usleep(100_000)
                }
            }
        }
        agentThreads.append(thread)
        thread.start()
    }

    /// `XenControl` over the simulator's dom0 libraries.
    func control() throws -> XenControl {
        var control = try XenControl(libraries: XenHostLibraries(
            control: try SimXenControlLibrary(stateDirectory: state),
            store: try SimXenStoreLibrary(stateDirectory: state),
            foreignMemory: try SimForeignMemoryLibrary(stateDirectory: state)))
        control.frameReportTimeoutMilliseconds = 15_000
        return control
    }

    /// Stops the agents and the daemon (`sim.stop`).
    func stop() {
        agents.stopping.store(true, ordering: .releasing)
        if let client = try? SimClient(stateDirectory: state) {
            _ = try? client.call("sim.stop")
            client.close()
        }
        let deadline = Date().addingTimeInterval(10)
        while !daemonThread.isFinished && Date() < deadline { usleep(10_000) }
    }

    struct FixtureError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

/// A value made on one thread and from then on used by the one thread it
/// is handed to.
struct HandedOver<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension XenSimFixture {
    /// The domains `left` and `right`, each with its agent.
    func addPair() throws {
        try addDomain("left")
        try addDomain("right")
    }

    /// A grant module over `host` (this simulator's XenControl, or a wrapper
    /// of it) with its state in `state` under the fixture's directory,
    /// allowing `left` and `right`, with an agent key for each.
    func pairGrants(over host: any ChannelHost, state: String) throws -> GrantModule {
        let grants = try GrantModule(host: host, stateDirectory: directory.path + "/" + state)
        try grants.allow("left", "right")
        for name in ["left", "right"] {
            try grants.registerAgentKey(Curve25519.KeyAgreement.PrivateKey().publicKey, forDomain: name)
        }
        return grants
    }
}
