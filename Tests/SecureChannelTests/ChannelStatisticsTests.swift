import Glibc
import Testing
@testable import SecureChannel

@Suite("Channel statistics", .serialized)
struct ChannelStatisticsTests {
    @Test("messages, bytes, handshakes and rekeys are counted on both ends", arguments: [ChannelMode.encrypted, .isolated])
    func traffic(mode: ChannelMode) throws {
        let pair = try EndpointPair.make(mode: mode, options: .init(wait: .spin, rekeyInterval: 3))
        for i in 0..<10 {
            try pair.initiator.send([UInt8](repeating: UInt8(i), count: 100))
            _ = try pair.responder.receive(timeout: .seconds(5))
        }
        try pair.responder.send([1, 2, 3])
        #expect(try pair.initiator.receive(timeout: .seconds(5)) == [1, 2, 3])
        let sent = pair.initiator.statistics, received = pair.responder.statistics
        #expect(sent.messagesSent == 10 && sent.bytesSent == 1000, "\(sent)")
        #expect(sent.messagesReceived == 1 && sent.bytesReceived == 3, "\(sent)")
        #expect(received.messagesReceived == 10 && received.bytesReceived == 1000, "\(received)")
        #expect(received.messagesSent == 1 && received.bytesSent == 3, "\(received)")
        #expect(sent.handshakes == 1 && received.handshakes == 1)
        // Rekeys are an encrypted session's: after messages 3, 6 and 9.
        let rekeys: UInt64 = mode == .encrypted ? 3 : 0
        #expect(sent.rekeys == rekeys && received.rekeys == rekeys, "\(sent) \(received)")
        #expect(sent.protocolViolations == 0 && sent.authenticationFailures == 0)
        #expect(sent.nanosecondsSinceHandshake < 60_000_000_000)
    }

    @Test("zero-copy sends and receives are counted too")
    func zeroCopy() throws {
        let pair = try EndpointPair.make(mode: .isolated)
        try pair.initiator.withSendBuffer(capacity: 64) { buffer in
            buffer.initializeMemory(as: UInt8.self, repeating: 7)
            return 40
        }
        let length = try pair.responder.withNextMessage(timeout: .seconds(5)) { $0.count }
        #expect(length == 40)
        #expect(pair.initiator.statistics.messagesSent == 1 && pair.initiator.statistics.bytesSent == 40)
        #expect(pair.responder.statistics.messagesReceived == 1 && pair.responder.statistics.bytesReceived == 40)
    }

    @Test("fresh handshakes are counted as handshakes")
    func rehandshakes() throws {
        let pair = try EndpointPair.make(options: .init(wait: .spin, rehandshakeAfter: .milliseconds(5)))
        for i in 0..<100 {
            try pair.initiator.send([UInt8(truncatingIfNeeded: i)], timeout: .seconds(5))
            _ = try pair.responder.receive(timeout: .seconds(5))
            try pair.responder.send([1], timeout: .seconds(5))
            _ = try pair.initiator.receive(timeout: .seconds(5))
            if i % 10 == 0 { usleep(2_000) }
        }
        #expect(pair.initiator.statistics.handshakes > 1)
        #expect(pair.initiator.statistics.handshakes == UInt64(pair.initiator.handshakeCount))
    }

    @Test("an authentication failure and a protocol violation are each counted once")
    func failures() throws {
        let tampered = try EndpointPair.make()
        let frame = tampered.nextFrame(ring: 0)
        try tampered.initiator.send([UInt8](repeating: 0x41, count: 100))
        (frame + 16 + 5).storeBytes(of: (frame + 16 + 5).load(as: UInt8.self) ^ 1, as: UInt8.self)
        for _ in 0..<2 { #expect(throws: ChannelError.authenticationFailed) { _ = try tampered.responder.receive(timeout: .seconds(1)) } }
        #expect(tampered.responder.statistics.authenticationFailures == 1)
        #expect(tampered.responder.statistics.messagesReceived == 0)

        let replayed = try EndpointPair.make()
        let first = replayed.nextFrame(ring: 0)
        try replayed.initiator.send([1])
        let second = replayed.nextFrame(ring: 0)
        try replayed.initiator.send([2])
        let firstSequence = (first + 8).load(as: UInt64.self)
        _ = try replayed.responder.receive(timeout: .seconds(1))
        (second + 8).storeBytes(of: firstSequence, as: UInt64.self)
        #expect(throws: ChannelError.self) { _ = try replayed.responder.receive(timeout: .seconds(1)) }
        #expect(replayed.responder.statistics.protocolViolations == 1)
        #expect(replayed.responder.statistics.messagesReceived == 1)
    }

    @Test("a blocking receiver counts its waits and sleeps; the sender counts the wake-up")
    func waits() throws {
        let pair = try EndpointPair.make(options: .init(wait: .block))
        let receiver = ThreadResult { () throws -> [UInt8] in try pair.responder.receive(timeout: .seconds(10)) }
        usleep(100_000)
        try pair.initiator.send([9])
        #expect(try receiver.value() == [9])
        let waiting = pair.responder.statistics
        #expect(waiting.waits >= 1 && waiting.sleeps >= 1, "\(waiting)")
        #expect(pair.initiator.statistics.wakeupsSent >= 1, "\(pair.initiator.statistics)")
    }
}
