import Foundation
import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import SecureChannel

/// A value handed to another thread. @unchecked: each test hands a value
/// to exactly one thread and reads results only after joining it.
final class Handoff<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// Runs `body` on a dedicated OS thread (endpoints spin and block like vCPUs;
/// never on Swift concurrency's pool).
final class OSThread<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, any Error>?

    init(_ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            result = Result { try body() }
            done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// The body's result, waiting at most `limit` for it. Past the limit the
    /// test fails naming the caller's line, and the thread is left behind.
    func value(within limit: Duration = .seconds(60), sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
        guard done.wait(timeout: .now() + limit.seconds) == .success else {
            let error = DeadlineExceeded(what: "a test thread", limit: limit)
            Issue.record("\(error)", sourceLocation: sourceLocation)
            throw error
        }
        return try result!.get()
    }
}

final class TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/simplatform-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// An engine, a host, a grant module and two domains with a channel.
final class PlatformWorld {
    let directory = TemporaryDirectory()
    let engine: Altp2mEngine
    let host: EngineChannelHost
    let grants: GrantModule
    let alpha: DomainID
    let beta: DomainID
    let alphaKey = Curve25519.KeyAgreement.PrivateKey()
    let betaKey = Curve25519.KeyAgreement.PrivateKey()
    let lock = SimEngineLock()

    init(fileMemory: Bool, pages: Int = 8) throws {
        if fileMemory {
            let memory = try FileMachineMemory(path: directory.path + "/memory", frameCount: 16384)
            engine = Altp2mEngine(host: .default, memory: memory)
        } else {
            engine = try Altp2mEngine(host: .default, frameCount: 16384)
        }
        host = EngineChannelHost(engine: engine)
        grants = try GrantModule(host: host, stateDirectory: directory.path + "/grant")
        alpha = try engine.createDomain(DomainConfig(name: "alpha", vcpuCount: 1, pages: 64, altp2mMode: .external))
        beta = try engine.createDomain(DomainConfig(name: "beta", vcpuCount: 1, pages: 64, altp2mMode: .external))
        try grants.registerAgentKey(alphaKey.publicKey, forDomain: "alpha")
        try grants.registerAgentKey(betaKey.publicKey, forDomain: "beta")
        try grants.allow("alpha", "beta")
        _ = try grants.createChannel(ChannelRequest(name: "orders", between: "alpha", and: "beta", pageCount: pages))
    }

    func platform(_ domain: DomainID) throws -> SimGuestPlatform {
        SimGuestPlatform(guest: try SimGuest(engine: engine, domain: domain), descriptors: host, lock: lock)
    }
}

@Suite("SimGuestPlatform in process")
struct InProcessPlatformTests {
    /// Both ends open the channel on their own OS threads and exchange messages.
    func exchange(fileMemory: Bool, wait: WaitStrategy = .adaptive(spinFor: .microseconds(20))) throws {
        let world = try PlatformWorld(fileMemory: fileMemory)
        let a = try world.platform(world.alpha)
        let b = try world.platform(world.beta)
        #expect(try a.descriptorNames() == ["orders"])
        #expect(try b.descriptorNames() == ["orders"])
        let envelopeA = try a.readDescriptor(named: "orders")
        let envelopeB = try b.readDescriptor(named: "orders")
        #expect(envelopeA != envelopeB)
        #expect(throws: GuestPlatformError.noDescriptor("nope")) { try a.readDescriptor(named: "nope") }

        let hostKey = world.grants.hostPublicKey
        let left = Handoff((a, envelopeA, world.alphaKey))
        let right = Handoff((b, envelopeB, world.betaKey))
        let alphaThread = OSThread { () throws -> [String] in
            let (platform, envelope, key) = left.value
            var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
            let channel = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey, platform: platform,
                                                 options: .init(wait: wait), replayGuard: &replayGuard)
            var got: [String] = []
            for index in 0..<50 {
                try channel.send(Array("ping \(index)".utf8), timeout: .seconds(5))
                got.append(String(decoding: try channel.receive(timeout: .seconds(5)), as: UTF8.self))
            }
            try channel.close()
            return got
        }
        let betaThread = OSThread { () throws -> Int in
            let (platform, envelope, key) = right.value
            var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
            let channel = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey, platform: platform,
                                                 options: .init(wait: wait), replayGuard: &replayGuard)
            var count = 0
            for _ in 0..<50 {
                let message = String(decoding: try channel.receive(timeout: .seconds(5)), as: UTF8.self)
                try channel.send(Array(("re " + message).utf8), timeout: .seconds(5))
                count += 1
            }
            // Alpha closes; its close frame ends this side's receiving.
            do {
                _ = try channel.receive(timeout: .seconds(5))
                return -1
            } catch ChannelError.peerClosed {
                return count
            }
        }
        let replies: [String]
        do { replies = try alphaThread.value() } catch { Issue.record("alpha: \(error)"); replies = [] }
        do { #expect(try betaThread.value() == 50) } catch { Issue.record("beta: \(error)") }
        #expect(replies == (0..<50).map { "re ping \($0)" })
    }

    @Test("two in-process platforms open a channel and exchange messages (anonymous memory)")
    func exchangeAnonymous() throws { try exchange(fileMemory: false) }

    @Test("blocking endpoints exchange messages (futex wake and wait in the window)")
    func exchangeBlocking() throws { try exchange(fileMemory: true, wait: .block) }

    @Test("two in-process platforms open a channel and exchange messages (file memory, mmap'd window)")
    func exchangeFileMemory() throws { try exchange(fileMemory: true) }

    @Test("VMFUNC into a view that is hidden or absent fails; the channel view and view 0 succeed")
    func vmfuncVisibility() throws {
        let world = try PlatformWorld(fileMemory: false)
        let channelView = try world.grants.showChannel("orders").channel.initiator.view
        let hidden = try world.engine.createView(world.alpha, defaultAccess: .readWriteExecute)
        try world.engine.setVisibility(world.alpha, view: hidden, visible: false)
        let a = try world.platform(world.alpha)
        #expect(a.enterView(channelView))
        #expect(a.enterView(.hostOrView0))
        #expect(!a.enterView(hidden))
        #expect(!a.enterView(ViewID(9)))
        #expect(!a.enterView(ViewID(600)))
        #expect(a.inProcessView == .hostOrView0)
        // Made visible, it can be entered after a refresh.
        try world.engine.setVisibility(world.alpha, view: hidden, visible: true)
        a.refresh()
        #expect(a.enterView(hidden))
    }

    @Test("a guest never reads another domain's descriptor; an invalid window is refused")
    func isolation() throws {
        let world = try PlatformWorld(fileMemory: true)
        #expect(throws: XenErrno.notPermitted) {
            _ = try world.host.readDescriptor(for: world.alpha, name: "orders", as: world.beta)
        }
        let a = try world.platform(world.alpha)
        #expect(throws: GuestPlatformError.self) {
            _ = try a.mapWindow(view: ViewID(1), firstGFN: GFN(0x7000_0000), pageCount: 4)
        }
    }

    @Test("the peer sees peerDied quickly when the host tears the channel down for a dead domain")
    func peerDied() throws {
        let world = try PlatformWorld(fileMemory: true)
        let a = try world.platform(world.alpha)
        let b = try world.platform(world.beta)
        let hostKey = world.grants.hostPublicKey
        let left = Handoff((a, try a.readDescriptor(named: "orders"), world.alphaKey))
        let right = Handoff((b, try b.readDescriptor(named: "orders"), world.betaKey))
        let opened = DispatchSemaphore(value: 0)
        let alphaThread = OSThread { () throws -> (String, UInt64) in
            let (platform, envelope, key) = left.value
            var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
            let channel = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey, platform: platform,
                                                 options: .init(wait: .block), replayGuard: &replayGuard)
            opened.signal()
            do {
                _ = try channel.receive(timeout: .seconds(10))
                return ("received", 0)
            } catch {
                return ("\(error)", DispatchTime.now().uptimeNanoseconds)
            }
        }
        let betaThread = OSThread { () throws -> Bool in
            let (platform, envelope, key) = right.value
            var replayGuard = DescriptorReplayGuard()  // each domain opens this channel once
            _ = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey, platform: platform, replayGuard: &replayGuard)
            return true
        }
        #expect(try betaThread.value())
        try #require(opened.wait(timeout: .now() + 15) == .success, "alpha never opened its end")
        Thread.sleep(forTimeInterval: 0.05)
        let start = DispatchTime.now().uptimeNanoseconds
        try world.lock.withLock { () throws(GrantError) in
            _ = try world.grants.domainDied(world.beta)
        }
        let (outcome, at) = try alphaThread.value()
        #expect(outcome.contains("peer"), "\(outcome)")
        #expect(at > start && at - start < 100_000_000, "peerDied after \((at - start) / 1_000_000) ms")
    }

    @Test("the peer's agent process goes away: what it sent first is received, then peerDied; the channel stays")
    func peerProcessExited() throws {
        let world = try PlatformWorld(fileMemory: true)
        let a = try world.platform(world.alpha)
        let b = try world.platform(world.beta)
        let hostKey = world.grants.hostPublicKey
        let left = Handoff((a, try a.readDescriptor(named: "orders"), world.alphaKey))
        let right = Handoff((b, try b.readDescriptor(named: "orders"), world.betaKey))
        let sent = DispatchSemaphore(value: 0)
        let told = DispatchSemaphore(value: 0)
        let alphaThread = OSThread { () throws -> [String] in
            let (platform, envelope, key) = left.value
            var replayGuard = DescriptorReplayGuard()
            let channel = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey,
                                                 platform: platform, options: .init(wait: .block), replayGuard: &replayGuard)
            guard told.wait(timeout: .now() + 15) == .success else { return ["never told"] }
            var seen: [String] = []
            for _ in 0..<3 {
                do {
                    seen.append(String(decoding: try channel.receive(timeout: .seconds(5)), as: UTF8.self))
                } catch {
                    seen.append("\(error)")
                    break
                }
            }
            return seen
        }
        let betaThread = OSThread { () throws -> Bool in
            let (platform, envelope, key) = right.value
            var replayGuard = DescriptorReplayGuard()
            let channel = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey,
                                                 platform: platform, replayGuard: &replayGuard)
            try channel.send(Array("one".utf8))
            try channel.send(Array("two".utf8))
            sent.signal()
            return true
        }
        #expect(try betaThread.value())
        try #require(sent.wait(timeout: .now() + 15) == .success)
        // Beta's agent process goes away with its window mapped (any gfn range
        // covering it); the domain lives on.
        let names = try world.lock.withLock { () throws(GrantError) in
            try world.grants.agentProcessExited(world.beta, mapped: [(GFN(0), 1 << 40)])
        }
        #expect(names == ["orders"])
        told.signal()
        let seen = try alphaThread.value()
        #expect(seen.count == 3)
        #expect(seen.prefix(2) == ["one", "two"])
        #expect(seen.last?.contains("agent process went away") == true, "\(seen)")
        #expect(world.grants.listChannels().map(\.name) == ["orders"])
        // Another domain's process, or one that mapped nothing of the channel, tells no one.
        #expect(try world.grants.agentProcessExited(world.beta, mapped: []) == [])
        #expect(try world.grants.agentProcessExited(DomainID(rawValue: 77), mapped: [(GFN(0), 1 << 40)]) == [])
    }

    @Test("a peer that closes, then whose agent process is counted gone while this side already waits to reopen: the reopen pairs with its next incarnation instead of failing with peerDied")
    func processExitCountedAfterReopen() throws {
        let world = try PlatformWorld(fileMemory: true)
        let a = try world.platform(world.alpha)
        let b = try world.platform(world.beta)
        let hostKey = world.grants.hostPublicKey
        let left = Handoff((a, try a.readDescriptor(named: "orders"), world.alphaKey))
        let right = Handoff((b, try b.readDescriptor(named: "orders"), world.betaKey))
        let reopening = DispatchSemaphore(value: 0)
        let alphaThread = OSThread { () throws -> String in
            let (platform, envelope, key) = left.value
            var replayGuard = DescriptorReplayGuard()
            let first = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey,
                                               platform: platform, options: .init(wait: .block), replayGuard: &replayGuard)
            do { _ = try first.receive(timeout: .seconds(10)) } catch ChannelError.peerClosed {}
            try? first.close(timeout: .milliseconds(200))
            reopening.signal()
            // The same descriptor again: waits for beta's next incarnation.
            let again = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey,
                                               platform: platform, options: .init(wait: .block), replayGuard: &replayGuard)
            return String(decoding: try again.receive(timeout: .seconds(10)), as: UTF8.self)
        }
        let (platform, envelope, key) = right.value
        var betaGuard = DescriptorReplayGuard()
        let beta = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey,
                                          platform: platform, replayGuard: &betaGuard)
        try beta.close(timeout: .seconds(5))
        try #require(reopening.wait(timeout: .now() + 15) == .success)
        Thread.sleep(forTimeInterval: 0.2)
        // Beta's first process is counted gone only now, after alpha read the count at its reopen.
        let names = try world.lock.withLock { () throws(GrantError) in
            try world.grants.agentProcessExited(world.beta, mapped: [(GFN(0), 1 << 40)])
        }
        #expect(names == ["orders"])
        Thread.sleep(forTimeInterval: 0.1)
        var nextGuard = DescriptorReplayGuard()
        let next = try SecureChannel.open(channel: "orders", descriptor: envelope, agentKey: key, hostKey: hostKey,
                                          platform: platform, replayGuard: &nextGuard)
        try next.send(Array("after the restart".utf8))
        #expect(try alphaThread.value() == "after the restart")
    }
}
