import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto

/// Registry storage whose next save fails.
final class FailingRegistryStorage: RegistryStorage {
    let base: FileRegistryStorage
    var failNextSave = false

    init(path: String) { base = FileRegistryStorage(path: path) }

    func load() throws(GrantError) -> [UInt8]? { try base.load() }

    func save(_ contents: [UInt8]) throws(GrantError) {
        if failNextSave {
            failNextSave = false
            throw .stateDirectory("injected: the disk is full")
        }
        try base.save(contents)
    }
}

@Suite("Failure injection: a failed creation leaves no trace")
struct FailureInjectionTests {
    /// alpha and beta, allowed, with agents; a fault-injecting host and a
    /// grant module over it; optionally a channel already between alpha and
    /// gamma, so that alpha's channel view carries another channel (which
    /// must survive) while beta starts fresh.
    private func world(existingChannel: Bool) throws -> (SimWorld, FaultInjectingHost, GrantModule, FailingRegistryStorage) {
        let world = try SimWorld()
        try world.addDomain("alpha")
        try world.addDomain("beta")
        try world.grants.allow("alpha", "beta")
        if existingChannel {
            try world.addDomain("gamma")
            try world.grants.allow("alpha", "gamma")
            try world.grants.createChannel(ChannelRequest(name: "base", between: "alpha", and: "gamma", pageCount: 3))
        }
        world.grants = nil
        let faulty = FaultInjectingHost(world.host)
        let storage = FailingRegistryStorage(path: world.directory.path + "/grant/channels.json")
        let grants = try world.makeGrants(host: faulty, registryStorage: storage)
        return (world, faulty, grants, storage)
    }

    private func expectFailure(_ grants: GrantModule, step: SetupStep, cause: SetupFailure? = nil,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try grants.createChannel(ChannelRequest(name: "second", between: "alpha", and: "beta", pageCount: 4))
            Issue.record("the creation should have failed at \(step)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.failedStep == step, "\(error)", sourceLocation: sourceLocation)
            if let cause { #expect(error.cause == cause, "\(error)", sourceLocation: sourceLocation) }
            #expect(!error.detail.contains("left over"), "undo problems: \(error.detail)", sourceLocation: sourceLocation)
        }
    }

    @Test("no free view: all nine views of the responder are taken")
    func noFreeView() throws {
        let (world, _, grants, _) = try world(existingChannel: false)
        let beta = world.agents["beta"]!.domain
        try world.engine.setDomainState(beta, active: true)
        for _ in 1...9 { _ = try world.engine.createView(beta, defaultAccess: .default) }
        let before = try SimSnapshot(world, grants: grants)
        expectFailure(grants, step: .channelView, cause: .hypervisor(.invalid))
        let after = try SimSnapshot(world, grants: grants)
        #expect(after == before, "\(after.difference(from: before))")
    }

    @Test("a named step fails", arguments: [
        ("changeGFN", SetupStep.remapWindow, XenErrno.notFound),
        ("vcpuEnableNotify", SetupStep.enableNotify, XenErrno.notSupported),
        ("publishDescriptor", SetupStep.publish, XenErrno.noSpace),
        ("obtainSharedFrames", SetupStep.sharedFrames, XenErrno.noMemory),
        ("setSuppressVEMulti", SetupStep.suppressVE, XenErrno.invalid),
        ("allocateNotificationPort", SetupStep.notificationPort, XenErrno.noSpace),
    ] as [(String, SetupStep, XenErrno)])
    func namedStepFails(operation: String, step: SetupStep, errno: XenErrno) throws {
        for existing in [false, true] {
            let (world, faulty, grants, _) = try world(existingChannel: existing)
            let before = try SimSnapshot(world, grants: grants)
            faulty.failing[operation] = errno
            expectFailure(grants, step: step, cause: .hypervisor(errno))
            let after = try SimSnapshot(world, grants: grants)
            #expect(after == before, "existing channel: \(existing): \(after.difference(from: before))")
        }
    }

    @Test("the registry cannot be written")
    func registryWriteFails() throws {
        for existing in [false, true] {
            let (world, _, grants, storage) = try world(existingChannel: existing)
            let before = try SimSnapshot(world, grants: grants)
            storage.failNextSave = true
            expectFailure(grants, step: .registry)
            let after = try SimSnapshot(world, grants: grants)
            #expect(after == before, "existing channel: \(existing): \(after.difference(from: before))")
        }
    }

    @Test("every single hypervisor call of a creation fails in turn")
    func everyCall() throws {
        for existing in [false, true] {
            let (world, faulty, grants, _) = try world(existingChannel: existing)
            let before = try SimSnapshot(world, grants: grants)
            var call = 1
            while true {
                // A creation makes under 100 calls: one that keeps failing
                // past that fails for its own reason, not an injected one.
                guard call <= 400 else {
                    Issue.record("the creation still fails with no call failed (\(call - 1) tried); existing channel: \(existing)")
                    return
                }
                faulty.reset()
                faulty.failAtCall = call
                do {
                    try grants.createChannel(ChannelRequest(name: "second", between: "alpha", and: "beta", pageCount: 2))
                } catch {
                    let name = faulty.failedCall ?? "?"
                    #expect(!error.detail.contains("left over"), "call \(call) (\(name)): \(error)")
                    let after = try SimSnapshot(world, grants: grants)
                    #expect(after == before, "call \(call) (\(name)), existing \(existing): \(after.difference(from: before))")
                    call += 1
                    continue
                }
                // Past the last call: the creation succeeded. Destroying it
                // must restore the same state.
                faulty.failAtCall = nil
                let report = try grants.destroyChannel("second")
                #expect(report.problems.isEmpty)
                var after = try SimSnapshot(world, grants: grants)
                after.registryFile = before.registryFile   // the generation counter moved on
                #expect(after == before, "after destroy: \(after.difference(from: before))")
                break
            }
            #expect(call > 30, "a creation makes many calls (\(call - 1))")
            print("failure injection: each of the \(call - 1) calls of a creation failed in turn (existing channel: \(existing)); no trace left")
        }
    }
}
