import Foundation
import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import SecureChannel

/// Registry storage whose next save fails, or the save after a number of
/// good ones.
final class FailingRegistryStorage: RegistryStorage {
    let base: FileRegistryStorage
    var failNextSave = false
    /// Saves that still succeed before one fails (nil: none fails this way).
    var goodSavesBeforeFailure: Int?

    init(path: String) { base = FileRegistryStorage(path: path) }

    func load() throws(GrantError) -> [UInt8]? { try base.load() }

    func save(_ contents: [UInt8]) throws(GrantError) {
        if let left = goodSavesBeforeFailure {
            goodSavesBeforeFailure = left == 0 ? nil : left - 1
            if left == 0 { failNextSave = true }
        }
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
            let after = try SimSnapshot(world, grants: grants).ignoringGenerationUsedUp(since: before)
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
                    let after = try SimSnapshot(world, grants: grants).ignoringGenerationUsedUp(since: before)
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

extension SimSnapshot {
    /// This snapshot with `before`'s registry file if the two differ only
    /// in the generation counter: a creation that failed once its
    /// descriptors were about to be published leaves its generation used up
    /// (it may have reached an agent), and nothing else.
    func ignoringGenerationUsedUp(since before: SimSnapshot) -> SimSnapshot {
        func withoutCounter(_ file: [UInt8]?) -> String? {
            file.map { String(decoding: $0, as: UTF8.self).replacing(/"nextGeneration" *: *[0-9]+/, with: "") }
        }
        // No file says the same as a file with no channels and no domains.
        func holdsNothing(_ file: [UInt8]?) -> Bool {
            guard let file, let object = try? JSONSerialization.jsonObject(with: Data(file)) as? [String: Any] else { return false }
            return (object["channels"] as? [Any])?.isEmpty == true && (object["domains"] as? [Any])?.isEmpty == true
        }
        var copy = self
        if withoutCounter(registryFile) == withoutCounter(before.registryFile)
            || (before.registryFile == nil && holdsNothing(registryFile)) {
            copy.registryFile = before.registryFile
        }
        return copy
    }
}

@Suite("Failure injection: a generation is never published twice")
struct GenerationReuseTests {
    /// alpha and beta with a channel, over storage that can be made to fail.
    private func world() throws -> (SimWorld, GrantModule, FailingRegistryStorage, ChannelSummary) {
        let world = try SimWorld()
        try world.addDomain("alpha")
        try world.addDomain("beta")
        try world.grants.allow("alpha", "beta")
        world.grants = nil
        let storage = FailingRegistryStorage(path: world.directory.path + "/grant/channels.json")
        let grants = try world.makeGrants(host: world.host, registryStorage: storage)
        let channel = try grants.createChannel(ChannelRequest(name: "c", between: "alpha", and: "beta", pageCount: 2)).channel
        return (world, grants, storage, channel)
    }

    /// alpha opens what is published for c, recording it in `replayGuard`.
    private func open(_ world: SimWorld, _ grants: GrantModule, _ channel: ChannelSummary,
                      _ replayGuard: inout DescriptorReplayGuard) throws -> OpenedDescriptor {
        let alpha = world.agents["alpha"]!
        let envelope = try world.host.readDescriptor(for: alpha.domain, name: "c", as: alpha.domain)
        return try DescriptorOpener(hostKey: grants.hostPublicKey, agentKey: alpha.key, domain: alpha.domain)
            .open(envelope, named: "c", now: world.clock.now, replayGuard: &replayGuard)
    }

    @Test("a re-issue that published but could not record itself: the next re-issue is newer, and the agent that saw the first accepts it")
    func reissueCommitFails() throws {
        let (world, grants, storage, channel) = try world()
        var replayGuard = DescriptorReplayGuard()
        _ = try open(world, grants, channel, &replayGuard)

        // The reservation is written; the commit after publishing fails.
        storage.goodSavesBeforeFailure = 1
        #expect(throws: GrantError.self) { try grants.reissueDescriptors("c") }
        let lost = try open(world, grants, channel, &replayGuard)
        #expect(lost.descriptor.generation > channel.generation, "the failed re-issue's descriptors were published")
        #expect(try grants.showChannel("c").channel.generation == channel.generation, "but not recorded")

        let retried = try grants.reissueDescriptors("c")
        #expect(retried.generation > lost.descriptor.generation)
        let opened = try open(world, grants, channel, &replayGuard)
        #expect(opened.descriptor.generation == retried.generation)
    }

    @Test("a re-issue whose reservation cannot be written publishes nothing")
    func reissueReservationFails() throws {
        let (world, grants, storage, channel) = try world()
        let alpha = world.agents["alpha"]!
        let before = try world.host.readDescriptor(for: alpha.domain, name: "c", as: alpha.domain)
        storage.failNextSave = true
        #expect(throws: GrantError.self) { try grants.reissueDescriptors("c") }
        #expect(try world.host.readDescriptor(for: alpha.domain, name: "c", as: alpha.domain) == before)
        #expect(try grants.reissueDescriptors("c").generation > channel.generation)
    }

    @Test("a creation that published and then failed leaves its generation used up")
    func creationCommitFails() throws {
        let (world, grants, storage, _) = try world()
        // The reservation is written; the registry commit after publishing fails.
        storage.goodSavesBeforeFailure = 1
        #expect(throws: ChannelSetupError.self) {
            try grants.createChannel(ChannelRequest(name: "d", between: "alpha", and: "beta", pageCount: 2))
        }
        #expect(throws: GrantError.self) { try grants.showChannel("d") }
        let alpha = world.agents["alpha"]!.domain
        #expect(throws: XenErrno.noEntry, "the rollback revoked what was published") {
            try world.host.readDescriptor(for: alpha, name: "d", as: alpha)
        }
        let made = try grants.createChannel(ChannelRequest(name: "d", between: "alpha", and: "beta", pageCount: 2)).channel
        let c = try grants.showChannel("c").channel
        #expect(made.generation > c.generation + 1, "the failed creation's generation \(c.generation + 1) is not issued again")
    }
}
