import Foundation
import SecureChannel
import Testing

/// Closing (half and full) while the other side waits for room, and a channel
/// that sat idle past the key-age limit.
@Suite("Closing and idle channels", .serialized)
struct CloseAndIdleTests {
    /// Fills the initiator's sending ring with 1 KiB messages; returns how many went in.
    private func fill(_ pair: EndpointPair) throws -> Int {
        let message = [UInt8](repeating: 7, count: 1024)
        var sent = 0
        while try pair.initiator.trySend(message) { sent += 1 }
        return sent
    }

    @Test("a sender blocked on a full ring gets peerClosed as soon as the peer closes its end, not a timeout")
    func blockedSenderLearnsOfFullClose() throws {
        let pair = try EndpointPair.make(options: .init(wait: .block))
        let queued = try fill(pair)
        #expect(queued > 0)
        let started = ContinuousClock.now
        let blocked = ThreadResult { () throws -> ChannelError? in
            do { try pair.initiator.send([UInt8](repeating: 8, count: 1024), timeout: .seconds(10)) } catch let error as ChannelError { return error }
            return nil
        }
        usleep(50_000)
        try pair.responder.close(timeout: .seconds(5))   // reads nothing, closes both ways
        #expect(try blocked.value() == .peerClosed)
        #expect(ContinuousClock.now - started < .seconds(2))
    }

    @Test("a poller with a full ring (trySend) gets peerClosed once the peer closed its end, instead of false forever; a half-closed peer still reads, so there it stays false")
    func pollingSenderLearnsOfFullClose() throws {
        let pair = try EndpointPair.make(options: .init(wait: .block))
        try pair.responder.closeSending(timeout: .seconds(5))
        let queued = try fill(pair)
        #expect(queued > 0)
        // Full, the peer only half-closed: "no room now", not an error.
        let message = [UInt8](repeating: 8, count: 1024)
        #expect(try pair.initiator.trySend(message) == false)
        try pair.responder.close(timeout: .milliseconds(100))
        #expect(throws: ChannelError.peerClosed) { try pair.initiator.trySend(message) }
    }

    @Test("a peer that only half-closed still reads: a sender waiting for room completes, every message arrives")
    func halfClosedPeerKeepsReading() throws {
        let pair = try EndpointPair.make(options: .init(wait: .block))
        try pair.responder.closeSending(timeout: .seconds(5))
        let queued = try fill(pair)
        let extra = 50
        let sender = ThreadResult { () throws -> Int in
            for i in 0..<extra { try pair.initiator.send([UInt8](repeating: UInt8(i), count: 1024), timeout: .seconds(10)) }
            try pair.initiator.closeSending(timeout: .seconds(10))
            return extra
        }
        usleep(50_000)
        var received = 0
        while true {
            do { _ = try pair.responder.receive(timeout: .seconds(10)); received += 1 } catch ChannelError.peerClosed { break }
        }
        #expect(try sender.value() == extra)
        #expect(received == queued + extra)
    }

    @Test("both sides closing at the same moment both succeed quickly")
    func simultaneousClose() throws {
        let pair = try EndpointPair.make(options: .init(wait: .block))
        try pair.initiator.send([1], timeout: .seconds(5))
        #expect(try pair.responder.receive(timeout: .seconds(5)) == [1])
        let started = ContinuousClock.now
        let other = ThreadResult { () throws -> Bool in
            try pair.responder.close(timeout: .seconds(5))
            return true
        }
        try pair.initiator.close(timeout: .seconds(5))
        #expect(try other.value())
        #expect(ContinuousClock.now - started < .seconds(1))
    }

    @Test("a flush whose data the peer never read fails with peerClosed when the peer closes")
    func closeWithUnreadData() throws {
        let pair = try EndpointPair.make(options: .init(wait: .block))
        try pair.initiator.send([1, 2, 3], timeout: .seconds(5))
        let closer = ThreadResult { () throws -> ChannelError? in
            do { try pair.initiator.close(timeout: .seconds(10)) } catch let error as ChannelError { return error }
            return nil
        }
        usleep(50_000)
        try pair.responder.close(timeout: .seconds(5))
        #expect(try closer.value() == .peerClosed)
    }

    @Test("a channel idle past the key-age limit renews the keys on its next send instead of refusing it")
    func idlePastTheLimit() throws {
        let pair = try EndpointPair.make(options: .init(wait: .spin, rehandshakeAfter: .milliseconds(20), rejectAfter: .milliseconds(60)))
        try pair.initiator.send([0], timeout: .seconds(5))
        #expect(try pair.responder.receive(timeout: .seconds(5)) == [0])
        let before = pair.initiator.handshakeCount
        usleep(150_000)   // both idle, well past rejectAfter
        // Both directions work again, and the sessions are renewed on the way.
        for round in 1...20 {
            try pair.initiator.send([UInt8(round)], timeout: .seconds(5))
            #expect(try pair.responder.receive(timeout: .seconds(5)) == [UInt8(round)])
            try pair.responder.send([UInt8(round)], timeout: .seconds(5))
            #expect(try pair.initiator.receive(timeout: .seconds(5)) == [UInt8(round)])
        }
        #expect(pair.initiator.handshakeCount > before)
        #expect(pair.initiator.handshakeHash == pair.responder.handshakeHash)
    }
}
