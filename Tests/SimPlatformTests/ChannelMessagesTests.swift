import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import Foundation
import SecureChannel
import Testing

@Suite("Messages as an AsyncSequence", .serialized)
struct ChannelMessagesTests {
    @Test("a one-way reader iterates messages with for try await until the writer closes")
    func readerIterates() async throws {
        let world = try ChannelWorld(oneWay: true, pages: 3)
        let (writer, reader) = try world.openBoth(wait: .adaptive)
        let w = Unchecked(writer)
        let sending = OSThread { () throws -> Checksum in
            var sum = Checksum()
            for i in 0..<2_000 {
                let m = message(i, size: i % 300)
                sum.add(m)
                try w.value.send(m, timeout: .seconds(10))
            }
            try w.value.close(timeout: .seconds(10))
            return sum
        }
        let r = Unchecked(reader)
        let (sum, count) = try await within(.seconds(60), "reading 2 000 messages") { () async throws -> (Checksum, Int) in
            var sum = Checksum()
            var count = 0
            for try await m in r.value.messages(bufferLimit: 8) {
                sum.add(m)
                count += 1
            }
            return (sum, count)
        }
        #expect(count == 2_000)
        #expect(sum == (try sending.value()))
    }
    /// A peer that sends `count` messages then closes, on an OS thread.
    static func sender(_ channel: SecureChannel, count: Int, size: @escaping @Sendable (Int) -> Int = { $0 % 200 },
                       pause: (at: Int, until: DispatchSemaphore)? = nil) -> OSThread<Checksum> {
        let c = Unchecked(channel)
        let p = pause.map { Unchecked($0) }
        return OSThread { () throws -> Checksum in
            var sum = Checksum()
            for i in 0..<count {
                if let p, i == p.value.at {
                    guard p.value.until.wait(timeout: .now() + 30) == .success else {
                        throw DeadlineExceeded(what: "the sender's pause at message \(i)", limit: .seconds(30))
                    }
                }
                let m = message(i, size: size(i))
                sum.add(m)
                try c.value.send(m, timeout: .seconds(20))
            }
            try c.value.close(timeout: .seconds(20))
            return sum
        }
    }

    @Test("10 000 messages arrive in order through for try await, and the loop ends when the peer closes",
          arguments: [0, 16])
    func tenThousand(bufferLimit: Int) async throws {
        let world = try ChannelWorld(oneWay: false, pages: 5)
        let (alpha, beta) = try world.openBoth(wait: .adaptive)
        let sending = Self.sender(alpha, count: 10_000)
        let b = Unchecked(beta)
        let (sum, count, wrong) = try await within(.seconds(120), "reading 10 000 messages") { () async throws -> (Checksum, Int, Int) in
            var sum = Checksum()
            var count = 0, wrong = 0
            let channel = bufferLimit == 0 ? b.value.messages : b.value.messages(bufferLimit: bufferLimit)
            for try await m in channel {
                if m != message(count, size: count % 200) { wrong += 1 }
                sum.add(m)
                count += 1
            }
            return (sum, count, wrong)
        }
        #expect(count == 10_000)
        #expect(wrong == 0)
        #expect(sum == (try sending.value()))
        // After the clean end the channel reports the close as usual.
        #expect(channelError { _ = try beta.receive(timeout: .milliseconds(10)) } == .peerClosed)
    }

    @Test("the loop body may answer on the channel (request/response)", arguments: [0, 4])
    func requestResponse(bufferLimit: Int) async throws {
        let world = try ChannelWorld(oneWay: false, pages: 3)
        let (client, service) = try world.openBoth(wait: .block)
        let c = Unchecked(client)
        let asking = OSThread { () throws -> Int in
            var right = 0
            for i in 0..<300 {
                try c.value.send(message(i, size: i % 64), timeout: .seconds(10))
                if try c.value.receive(timeout: .seconds(10)) == message(i, size: i % 64).reversed() { right += 1 }
            }
            try c.value.close(timeout: .seconds(10))
            return right
        }
        let s = Unchecked(service)
        let served = try await within(.seconds(60), "serving 300 requests") { () async throws -> Int in
            var served = 0
            for try await request in s.value.messages(bufferLimit: bufferLimit) {
                try s.value.send(Array(request.reversed()), timeout: .seconds(10))
                served += 1
            }
            return served
        }
        #expect(served == 300)
        #expect(try asking.value() == 300)
    }

    @Test("the host's word that the peer died ends the loop with peerDied, after the messages before it")
    func peerDeath() async throws {
        let world = try ChannelWorld(oneWay: false, pages: 3)
        let window = try world.window()
        let (alpha, beta) = try world.openBoth(wait: .block)
        let a = Unchecked(alpha)
        try OSThread { for i in 0..<10 { try a.value.send(message(i, size: 10), timeout: .seconds(5)) } }.value()
        // What the grant module writes first when a domain dies: the host
        // line says closed, reason "initiator died".
        let control = ControlPage(base: window)
        let killer = OSThread { () throws in
            Thread.sleep(forTimeInterval: 0.1)
            control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.reason).pointee.store(1, ordering: .relaxed)
            control.u32(at: ControlPage.Offset.hostState + ControlPage.HostField.closed).pointee.store(1, ordering: .releasing)
        }
        let b = Unchecked(beta)
        let (count, ended) = try await within(.seconds(30), "the loop until the peer died") { () async -> (Int, ChannelError?) in
            var count = 0
            do {
                for try await _ in b.value.messages { count += 1 }
                return (count, nil)
            } catch {
                return (count, error as? ChannelError)
            }
        }
        try killer.value()
        #expect(count == 10)
        #expect(ended == .peerDied("the peer's domain died"))
    }

    @Test("the grant module tearing the channel down for a dead peer ends the loop with an error, never a clean end")
    func peerTornDown() async throws {
        let world = try ChannelWorld(oneWay: false, pages: 3)
        let (_, beta) = try world.openBoth(wait: .block)
        let killer = OSThread { () throws in
            Thread.sleep(forTimeInterval: 0.1)
            try world.lock.withLock { () throws(GrantError) in _ = try world.grants.domainDied(world.domains[0]) }
        }
        let b = Unchecked(beta)
        let ended = try await within(.seconds(30), "the loop until the channel was torn down") { () async -> ChannelError? in
            do {
                for try await _ in b.value.messages {}
                return nil
            } catch {
                return error as? ChannelError
            }
        }
        try killer.value()
        // In process the frames are scrubbed right after the host line is
        // written, so the reader may see the zeroed ring (an impossible
        // producer index) before the host line: either way it stops.
        switch ended {
        case .peerDied?, .protocolViolation?: break
        default: Issue.record("expected peerDied or a protocol violation, got \(String(describing: ended))")
        }
    }

    @Test("a tampered frame ends the loop with authenticationFailed, after the intact messages before it")
    func tamper() async throws {
        let world = try ChannelWorld(oneWay: false, pages: 3)
        let window = try world.window()
        let (alpha, beta) = try world.openBoth(wait: .spin)
        let control = ControlPage(base: window)
        let ring0 = UInt(bitPattern: window) + UInt(try RingGeometry(pageCount: 3, oneWay: false).ringOffsets[0])
        let ringMask = UInt64(try RingGeometry(pageCount: 3, oneWay: false).ringSize - 1)
        let a = Unchecked(alpha)
        let frame = try OSThread { () throws -> UInt in
            for i in 0..<5 { try a.value.send(message(i, size: 40), timeout: .seconds(5)) }
            let produced = control.producer(ring: 0).pointee.load(ordering: .acquiring)
            try a.value.send(message(5, size: 40), timeout: .seconds(5))
            return ring0 + UInt(produced & ringMask)
        }.value()
        // Flip a ciphertext bit of the sixth frame before anyone reads it.
        let byte = UnsafeMutablePointer<UInt8>(bitPattern: frame + 16 + 3)!
        byte.pointee ^= 0x01
        let b = Unchecked(beta)
        let (count, ended) = try await within(.seconds(30), "the loop over a tampered frame") { () async -> (Int, ChannelError?) in
            var count = 0
            do {
                for try await m in b.value.messages(bufferLimit: 2) {
                    if m == message(count, size: 40) { count += 1 }
                }
                return (count, nil)
            } catch {
                return (count, error as? ChannelError)
            }
        }
        #expect(count == 5)
        #expect(ended == .authenticationFailed)
    }

    @Test("cancelling a loop that waits for a message stops it within 1 s; later messages are received once, in order")
    func cancelWhileWaiting() async throws {
        let world = try ChannelWorld(oneWay: false, pages: 3)
        let (alpha, beta) = try world.openBoth(wait: .block)
        let resume = DispatchSemaphore(value: 0)
        let sending = Self.sender(alpha, count: 100, size: { _ in 32 }, pause: (50, resume))
        let b = Unchecked(beta)
        let gotFifty = DispatchSemaphore(value: 0)
        let task = Task { () throws -> [[UInt8]] in
            var got: [[UInt8]] = []
            for try await m in b.value.messages(bufferLimit: 4) {
                got.append(m)
                if got.count == 50 { gotFifty.signal() }
            }
            return got
        }
        let reached = await withCheckedContinuation { c in
            DispatchQueue.global().async { c.resume(returning: gotFifty.wait(timeout: .now() + 30)) }
        }
        try #require(reached == .success, "the loop never received 50 messages")
        try await Task.sleep(for: .milliseconds(50))   // the loop now waits for message 50
        let cancelled = ContinuousClock.now
        task.cancel()
        let first = try await within(.seconds(10), "the cancelled loop") { try await task.value }
        let stopTime = ContinuousClock.now - cancelled
        #expect(stopTime < .seconds(1), "the iteration took \(stopTime) to stop")
        #expect(first == (0..<50).map { message($0, size: 32) })
        // The rest is still there for the channel's own receive, once each.
        resume.signal()
        let rest = try OSThread { () throws -> [[UInt8]] in
            var rest: [[UInt8]] = []
            while true {
                do { rest.append(try b.value.receive(timeout: .seconds(10))) } catch ChannelError.peerClosed { return rest }
            }
        }.value()
        #expect(rest == (50..<100).map { message($0, size: 32) })
        _ = try sending.value()
    }

    @Test("cancelling a loop whose thread received ahead keeps the buffered messages receivable, in order")
    func cancelWithBuffer() async throws {
        let world = try ChannelWorld(oneWay: false, pages: 5)
        let (alpha, beta) = try world.openBoth(wait: .adaptive)
        let sending = Self.sender(alpha, count: 200, size: { _ in 100 })
        let b = Unchecked(beta)
        let task = Task { () throws -> [[UInt8]] in
            var got: [[UInt8]] = []
            for try await m in b.value.messages(bufferLimit: 8) {
                got.append(m)
                if got.count == 10 {
                    // Let the thread fill its buffer, then get cancelled
                    // in the loop body.
                    while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(5)) }
                }
            }
            return got
        }
        try await Task.sleep(for: .milliseconds(200))
        let cancelled = ContinuousClock.now
        task.cancel()
        let first = try await within(.seconds(10), "the cancelled loop") { try await task.value }
        #expect(ContinuousClock.now - cancelled < .seconds(1))
        #expect(first == (0..<10).map { message($0, size: 100) })
        // Iterating again picks up exactly where the first loop stopped.
        let rest = try await within(.seconds(30), "the second loop") { () async throws -> [[UInt8]] in
            var rest: [[UInt8]] = []
            for try await m in b.value.messages(bufferLimit: 3) { rest.append(m) }
            return rest
        }
        #expect(rest.count == 190)
        #expect(rest == (10..<200).map { message($0, size: 100) })
        _ = try sending.value()
    }

    @Test("a slow consumer holds back the sender: the thread stops receiving at the buffer limit")
    func backPressure() async throws {
        let world = try ChannelWorld(oneWay: false, pages: 2)
        let (alpha, beta) = try world.openBoth(wait: .block)
        let a = Unchecked(alpha)
        let size = 200
        // Each frame takes 16 + 200 + 16 rounded to 240 bytes of a 2 KiB ring.
        let it = Handoff(beta.messages(bufferLimit: 4).makeAsyncIterator())
        let next = { (what: String) async throws -> [UInt8]? in
            try await within(.seconds(10), what) { try await it.value.next() }
        }
        let firstWaiting = OSThread { () throws in try a.value.send(message(0, size: size), timeout: .seconds(5)) }
        #expect(try await next("message 0") == message(0, size: size))
        try firstWaiting.value()
        // The consumer now stalls. The sender fills what the ring and the
        // thread's buffer hold, and then the ring stays full.
        let sent = try OSThread { () throws -> Int in
            var n = 1
            let end = ContinuousClock.now + .milliseconds(300)
            while ContinuousClock.now < end {
                if try a.value.trySend(message(n, size: size)) { n += 1 } else { usleep(1_000) }
            }
            return n
        }.value()
        let ringFrames = 2048 / 240
        #expect(sent - 1 <= ringFrames + 4 + 1, "\(sent - 1) messages went out while the consumer stalled")
        #expect(sent - 1 >= 4, "the thread did not receive ahead at all")
        // Nothing was dropped: everything arrives in order.
        for i in 1..<sent {
            #expect(try await next("message \(i)") == message(i, size: size))
        }
        try OSThread { try a.value.close(timeout: .seconds(5)) }.value()
        #expect(try await next("the end after the close") == nil)
    }

    @Test("leaving the loop early: the channel's next receive gets the rest, once each")
    func breakOut() async throws {
        let world = try ChannelWorld(oneWay: false, pages: 5)
        let (alpha, beta) = try world.openBoth(wait: .adaptive)
        let sending = Self.sender(alpha, count: 300, size: { _ in 50 })
        let b = Unchecked(beta)
        let first = try await within(.seconds(30), "the first 100 messages") { () async throws -> [[UInt8]] in
            var first: [[UInt8]] = []
            for try await m in b.value.messages(bufferLimit: 16) {
                first.append(m)
                if first.count == 100 { break }
            }
            return first
        }
        let rest = try OSThread { () throws -> [[UInt8]] in
            var rest: [[UInt8]] = []
            while true {
                do { rest.append(try b.value.receive(timeout: .seconds(10))) } catch ChannelError.peerClosed { return rest }
            }
        }.value()
        #expect(first == (0..<100).map { message($0, size: 50) })
        #expect(rest == (100..<300).map { message($0, size: 50) })
        _ = try sending.value()
    }
}
