import Altp2m
import ChannelCrypto
import Foundation
import Synchronization
import Testing
@testable import SecureChannel

/// The two ends of a one-way channel over one in-process window, opened
/// separately: the writer's open returns without the reader (one message,
/// no answer), which several tests rely on.
final class OneWaySetup: @unchecked Sendable {
    // @unchecked: keys and parameters are read-only after init; each end is
    // opened and used by one thread.
    let window: TestWindow
    let mode: ChannelMode
    let suite: ChannelSuite
    private let writerKey = Curve25519.KeyAgreement.PrivateKey()
    private let readerKey = Curve25519.KeyAgreement.PrivateKey()
    private let psk = SymmetricKey()

    init(pages: Int = 4, mode: ChannelMode = .encrypted, suite: ChannelSuite = .chachapoly) throws {
        window = try TestWindow(pages: pages, oneWay: true)
        self.mode = mode
        self.suite = suite
    }

    func parameters(_ side: ChannelSide, psk override: SymmetricKey? = nil) -> ChannelEndpoint.Parameters {
        ChannelEndpoint.Parameters(
            side: side, view: 3, geometry: window.geometry, mode: mode, suite: suite,
            notificationPort: 1, prologue: Array("one-way test".utf8),
            staticKey: side == .initiator ? writerKey : readerKey,
            peerStaticKey: side == .initiator ? readerKey.publicKey : writerKey.publicKey,
            presharedKey: override ?? psk)
    }

    /// Opens the writer (the initiator) on the calling thread.
    func openWriter(_ options: ChannelEndpoint.Options) throws -> ChannelEndpoint {
        try ChannelEndpoint(platform: LoopbackPlatform(domain: 1, channelView: 3, window: window), window: window.base,
                            parameters: parameters(.initiator), options: options)
    }

    /// Opens the reader (the responder) on the calling thread; waits for the
    /// writer's handshake frame.
    func openReader(_ options: ChannelEndpoint.Options, psk: SymmetricKey? = nil) throws -> ChannelEndpoint {
        try ChannelEndpoint(platform: LoopbackPlatform(domain: 2, channelView: 3, window: window), window: window.base,
                            parameters: parameters(.responder, psk: psk), options: options)
    }

    /// Both ends, each opened on its own OS thread.
    func open(writer: ChannelEndpoint.Options, reader: ChannelEndpoint.Options) throws -> (writer: ChannelEndpoint, reader: ChannelEndpoint) {
        let w = ThreadResult { UncheckedBox(try self.openWriter(writer)) }
        let r = ThreadResult { UncheckedBox(try self.openReader(reader)) }
        let readerResult = Result { try r.value() }
        let writerEnd = try w.value().value
        return (writerEnd, try readerResult.get().value)
    }

    /// The whole window as bytes.
    func snapshot() -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: window.base, count: window.geometry.windowBytes))
    }

    var consumerIndex: UInt64 {
        ControlPage(base: window.base).consumer(ring: 0).pointee.load(ordering: .acquiring)
    }

    var producerIndex: UInt64 {
        ControlPage(base: window.base).producer(ring: 0).pointee.load(ordering: .acquiring)
    }

    /// Where the next frame of ring 0 starts (tests that write few frames).
    var nextFrame: UnsafeMutableRawPointer {
        window.base + window.geometry.ringOffsets[0] + Int(producerIndex & UInt64(window.geometry.ringSize - 1))
    }
}

/// The error `body` throws, if any. Endpoint threads return what they saw
/// and the test thread checks it: an `#expect` on another thread is not
/// attributed to the running test.
func caught(_ body: () throws -> Void) -> ChannelError? {
    do { try body(); return nil } catch let error as ChannelError { return error } catch {
        return .platform("unexpected \(error)")
    }
}

/// A flag one thread sets and another reads.
final class TestFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// Message `index` of a test stream: its size and bytes are a function of
/// the index, so the reader can check each one.
func streamMessage(_ index: Int, size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ index &* 7 &+ size) }
}

/// FNV-1a over a message stream, fed message by message (length first).
struct StreamChecksum: Equatable {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325
    mutating func add(_ message: [UInt8]) {
        withUnsafeBytes(of: UInt32(message.count).littleEndian) { for b in $0 { mix(b) } }
        for b in message { mix(b) }
    }
    private mutating func mix(_ b: UInt8) {
        value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01B3
    }
}

@Suite("One-way channels", .serialized)
struct OneWayChannelTests {
    /// The sizes a stream walks through: every edge, then a sweep.
    static func sizes(maximum: Int) -> [Int] {
        var sizes = [0, 1, 15, 16, 17, 63, 64, 65, 1000, maximum - 1, maximum, 0]
        for i in 0..<400 { sizes.append((i &* 977) % (maximum + 1)) }
        sizes.append(maximum)
        return sizes
    }

    @Test("messages of 0 B to the largest size arrive in order and intact, both modes, every wait strategy",
          arguments: [ChannelMode.encrypted, .isolated], [WaitStrategy.spin, .block, .adaptive])
    func stream(mode: ChannelMode, wait: WaitStrategy) throws {
        let setup = try OneWaySetup(pages: 4, mode: mode)
        let (writer, reader) = try setup.open(writer: .init(wait: wait), reader: .init(wait: wait))
        #expect(writer.isOneWay && reader.isOneWay)
        #expect(writer.canSend && !writer.canReceive && reader.canReceive && !reader.canSend)
        #expect(writer.handshakeHash == reader.handshakeHash && writer.handshakeHash.count == 64)
        let sizes = Self.sizes(maximum: writer.maximumMessageBytes)
        let w = UncheckedBox(writer), r = UncheckedBox(reader)
        let sending = ThreadResult { () throws -> StreamChecksum in
            var sum = StreamChecksum()
            for (index, size) in sizes.enumerated() {
                let message = streamMessage(index, size: size)
                sum.add(message)
                try w.value.send(message, timeout: .seconds(10))
            }
            try w.value.closeSending(timeout: .seconds(10))
            return sum
        }
        let receiving = ThreadResult { () throws -> (StreamChecksum, Int, Int) in
            var sum = StreamChecksum()
            var count = 0, wrong = 0
            while true {
                let message: [UInt8]
                do { message = try r.value.receive(timeout: .seconds(10)) } catch ChannelError.peerClosed { break }
                sum.add(message)
                if count >= sizes.count || message != streamMessage(count, size: sizes[count]) { wrong += 1 }
                count += 1
            }
            return (sum, count, wrong)
        }
        let received = try receiving.value()
        let sent = try sending.value()
        #expect(received.1 == sizes.count)
        #expect(received.2 == 0, "messages out of order or altered")
        #expect(received.0 == sent)
    }

    @Test("AES-256-GCM one-way sessions work where the CPU has AES-NI", .enabled(if: AESGCM.isAvailable, "skipped: this CPU lacks AES-NI, so libsodium offers no AES-256-GCM"))
    func aesgcm() throws {
        let setup = try OneWaySetup(suite: .aesgcm)
        let (writer, reader) = try setup.open(writer: .init(wait: .spin), reader: .init(wait: .spin))
        let r = UncheckedBox(reader)
        try writer.send([1, 2, 3], timeout: .seconds(5))
        #expect(try ThreadResult { try r.value.receive(timeout: .seconds(5)) }.value() == [1, 2, 3])
    }

    @Test("the reader writes nothing into the window but its consumer index",
          arguments: [(ChannelMode.encrypted, WaitStrategy.block), (.isolated, .adaptive), (.encrypted, .spin)])
    func readerWritesOnlyItsIndex(mode: ChannelMode, wait: WaitStrategy) throws {
        let setup = try OneWaySetup(pages: 4, mode: mode)
        // The writer opens (its handshake frame goes into the ring), sends,
        // rekeys and starts fresh handshakes along the way, then goes idle.
        let writerOptions = ChannelEndpoint.Options(wait: wait, rekeyInterval: 3, rehandshakeAfterMessages: 10)
        let sent = 40
        let writerHandshakes = try ThreadResult { () throws -> Int in
            let writer = try setup.openWriter(writerOptions)
            for i in 0..<sent { try writer.send(streamMessage(i, size: i % 37), timeout: .seconds(5)) }
            return writer.handshakeCount
        }.value()
        #expect(writerHandshakes > 2)
        let before = setup.snapshot()
        let consumedBefore = setup.consumerIndex

        // The reader's whole life: open, receive everything, wait in vain
        // (sleeping when the strategy sleeps), poll, close.
        let readerOptions = ChannelEndpoint.Options(wait: wait, livenessTimeout: .seconds(30))
        struct ReaderLife: Sendable {
            var wrong = 0
            var errors: [ChannelError?] = []
            var polled: Int?? = .none
            var handshakes = 0
        }
        let life = try ThreadResult { () throws -> ReaderLife in
            var life = ReaderLife()
            let reader = try setup.openReader(readerOptions)
            for i in 0..<sent where try reader.receive(timeout: .seconds(5)) != streamMessage(i, size: i % 37) {
                life.wrong += 1
            }
            life.errors.append(caught { _ = try reader.receive(timeout: .milliseconds(40)) })
            life.errors.append(caught { _ = try reader.withNextMessage(timeout: .milliseconds(20)) { $0.count } })
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
            defer { buffer.deallocate() }
            life.polled = .some(try reader.tryReceive(into: buffer))
            life.errors.append(caught { try reader.send([1]) })
            try reader.close()
            life.handshakes = reader.handshakeCount
            return life
        }.value()
        #expect(life.wrong == 0)
        #expect(life.errors == [.timeout, .timeout, .receiveOnly])
        #expect(life.polled == .some(nil))
        #expect(life.handshakes == writerHandshakes)

        let after = setup.snapshot()
        let line = ControlPage.Offset.ring0Consumer..<(ControlPage.Offset.ring0Consumer + 64)
        var changed: [Int] = []
        for offset in before.indices where before[offset] != after[offset] && !line.contains(offset) {
            changed.append(offset)
        }
        #expect(changed.isEmpty, "the reader wrote at window offsets \(changed.prefix(16).map { String($0, radix: 16) })")
        // It did consume (so the comparison above covers a reader that worked).
        #expect(setup.consumerIndex != consumedBefore)
        #expect(setup.consumerIndex == setup.producerIndex)
    }

    @Test("a full ring: trySend returns false, send waits (and times out), and resumes once the reader consumes")
    func fullRing() throws {
        let setup = try OneWaySetup(pages: 2)
        let (writer, reader) = try setup.open(writer: .init(wait: .block), reader: .init(wait: .block))
        let w = UncheckedBox(writer), r = UncheckedBox(reader)
        let message = [UInt8](repeating: 0x33, count: 300)
        let (filled, fullSend) = try ThreadResult { () throws -> (Int, ChannelError?) in
            var n = 0
            while try w.value.trySend(message) { n += 1 }
            return (n, caught { try w.value.send(message, timeout: .milliseconds(50)) })
        }.value()
        #expect(filled > 0)
        #expect(fullSend == .timeout)
        let done = TestFlag()
        let blocked = ThreadResult { () throws in
            try w.value.send(message, timeout: .seconds(10))
            done.set()
        }
        usleep(100_000)
        let returnedEarly = done.isSet
        #expect(!returnedEarly, "send returned although the ring is full")
        let drained = try ThreadResult { () throws -> Int in
            var n = 0
            for _ in 0...filled where try r.value.receive(timeout: .seconds(5)) == message { n += 1 }
            return n
        }.value()
        try blocked.value()
        let returned = done.isSet
        #expect(returned)
        #expect(drained == filled + 1)
    }

    @Test("a flipped ciphertext bit in the ring is authenticationFailed on the reader, and stays so")
    func tamper() throws {
        let setup = try OneWaySetup()
        let (writer, reader) = try setup.open(writer: .init(wait: .spin), reader: .init(wait: .spin))
        let r = UncheckedBox(reader)
        let frame = setup.nextFrame
        try writer.send([UInt8](repeating: 0x41, count: 100), timeout: .seconds(5))
        (frame + 16 + 7).storeBytes(of: (frame + 16 + 7).load(as: UInt8.self) ^ 0x10, as: UInt8.self)
        let errors = ThreadResult {
            [caught { _ = try r.value.receive(timeout: .seconds(1)) }, caught { _ = try r.value.receive(timeout: .seconds(1)) }]
        }
        #expect(try errors.value() == [.authenticationFailed, .authenticationFailed])
    }

    @Test("sending on the reader and receiving on the writer throw clear errors")
    func wrongDirection() throws {
        let setup = try OneWaySetup()
        let (writer, reader) = try setup.open(writer: .init(wait: .spin), reader: .init(wait: .spin))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
        defer { buffer.deallocate() }
        #expect(throws: ChannelError.receiveOnly) { try reader.send([1]) }
        #expect(throws: ChannelError.receiveOnly) { _ = try reader.trySend([1]) }
        #expect(throws: ChannelError.receiveOnly) { try reader.withSendBuffer(capacity: 8) { _ in 8 } }
        #expect(throws: ChannelError.receiveOnly) { try reader.closeSending() }
        #expect(throws: ChannelError.sendOnly) { _ = try writer.receive(timeout: .milliseconds(10)) }
        #expect(throws: ChannelError.sendOnly) { _ = try writer.tryReceive(into: buffer) }
        #expect(throws: ChannelError.sendOnly) { _ = try writer.receive(into: buffer, timeout: .milliseconds(10)) }
        #expect(throws: ChannelError.sendOnly) { _ = try writer.withNextMessage(timeout: .milliseconds(10)) { $0.count } }
        #expect(ChannelError.receiveOnly.description.contains("only receives"))
        #expect(ChannelError.sendOnly.description.contains("only sends"))
        // Nothing was written by the refused calls: the ring holds only the handshake.
        #expect(setup.producerIndex == setup.consumerIndex)
    }

    @Test("a wrong pre-shared key fails the reader's open with authenticationFailed; the writer cannot tell")
    func wrongPSK() throws {
        let setup = try OneWaySetup()
        try ThreadResult { _ = try setup.openWriter(.init(wait: .spin)) }.value()
        let error = ThreadResult {
            caught { _ = try setup.openReader(.init(wait: .spin, handshakeTimeout: .seconds(2)), psk: SymmetricKey()) }
        }
        #expect(try error.value() == .authenticationFailed)
    }

    @Test("the writer's close flushes every message; the reader then sees peerClosed")
    func writerClose() throws {
        let setup = try OneWaySetup(pages: 2)
        let (writer, reader) = try setup.open(writer: .init(wait: .adaptive), reader: .init(wait: .adaptive))
        let w = UncheckedBox(writer), r = UncheckedBox(reader)
        let receiving = ThreadResult { () throws -> Int in
            var n = 0
            while true {
                do { _ = try r.value.receive(timeout: .seconds(10)); n += 1 } catch ChannelError.peerClosed { return n }
            }
        }
        let afterClose = try ThreadResult { () throws -> ChannelError? in
            for i in 0..<200 { try w.value.send(streamMessage(i, size: 200), timeout: .seconds(10)) }
            try w.value.close(timeout: .seconds(10))
            return caught { try w.value.send([1]) }
        }.value()
        #expect(afterClose == .closed)
        #expect(try receiving.value() == 200)
        #expect(setup.consumerIndex == setup.producerIndex, "close returned before the reader consumed everything")
    }

    @Test("the reader's close only stops reading; the writer's flush then times out")
    func readerClose() throws {
        let setup = try OneWaySetup()
        let (writer, reader) = try setup.open(writer: .init(wait: .block), reader: .init(wait: .block))
        try reader.close()
        #expect(throws: ChannelError.closed) { _ = try reader.receive(timeout: .milliseconds(10)) }
        let w = UncheckedBox(writer)
        let flush = try ThreadResult { () throws -> ChannelError? in
            try w.value.send([1, 2, 3], timeout: .seconds(1))
            return caught { try w.value.close(timeout: .milliseconds(100)) }
        }.value()
        #expect(flush == .timeout)
    }

    @Test("rekeys and fresh Kpsk0 handshakes from the writer alone keep both ends in step")
    func rehandshake() throws {
        let setup = try OneWaySetup(pages: 2)
        let options = ChannelEndpoint.Options(wait: .spin, rekeyInterval: 5, rehandshakeAfter: .milliseconds(10),
                                              rejectAfter: .milliseconds(50))
        let (writer, reader) = try setup.open(writer: options, reader: options)
        let firstHash = writer.handshakeHash
        let w = UncheckedBox(writer), r = UncheckedBox(reader)
        let receiving = ThreadResult { () throws -> (Int, Int) in
            var n = 0, wrong = 0
            while true {
                do {
                    let message = try r.value.receive(timeout: .seconds(5))
                    if message != streamMessage(n, size: n % 50) { wrong += 1 }
                    n += 1
                } catch ChannelError.peerClosed { return (n, wrong) }
            }
        }
        let sent = try ThreadResult { () throws -> Int in
            let end = ContinuousClock.now + .milliseconds(400)
            var n = 0
            while ContinuousClock.now < end {
                try w.value.send(streamMessage(n, size: n % 50), timeout: .seconds(5))
                n += 1
                // Idle gaps longer than the hard limit: the writer renews
                // before sending again instead of refusing.
                if n % 500 == 0 { usleep(60_000) }
            }
            try w.value.closeSending(timeout: .seconds(5))
            return n
        }.value()
        let (received, wrong) = try receiving.value()
        #expect(received == sent)
        #expect(wrong == 0)
        #expect(writer.handshakeCount > 3)
        #expect(writer.handshakeCount == reader.handshakeCount)
        #expect(writer.handshakeHash == reader.handshakeHash)
        #expect(writer.handshakeHash != firstHash)
    }

    @Test("a writer with a liveness timeout reports a reader that consumes nothing")
    func livenessOfReader() throws {
        let setup = try OneWaySetup(pages: 2)
        let (writer, _) = try setup.open(writer: .init(wait: .adaptive, livenessTimeout: .milliseconds(100)),
                                         reader: .init(wait: .spin))
        let w = UncheckedBox(writer)
        let message = [UInt8](repeating: 1, count: 200)
        let (error, waited) = try ThreadResult { () throws -> (ChannelError?, Duration) in
            while try w.value.trySend(message) {}
            let started = ContinuousClock.now
            let error = caught { try w.value.send(message, timeout: .seconds(5)) }
            return (error, ContinuousClock.now - started)
        }.value()
        #expect(error == .peerDied("the reader consumed nothing for 0.1 seconds"))
        #expect(waited < .seconds(1))
    }

    @Test("a blocking reader is woken by a blocking writer (latency well under the 10 ms re-check)")
    func wakeUp() throws {
        let setup = try OneWaySetup()
        let (writer, reader) = try setup.open(writer: .init(wait: .block), reader: .init(wait: .block))
        let w = UncheckedBox(writer), r = UncheckedBox(reader)
        let count = 100
        let latencies = ThreadResult { () throws -> [UInt64] in
            var result: [UInt64] = []
            for _ in 0..<count {
                let message = try r.value.receive(timeout: .seconds(5))
                let sentAt = message.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                result.append(DispatchTime.now().uptimeNanoseconds &- sentAt)
            }
            return result
        }
        try ThreadResult {
            for _ in 0..<count {
                usleep(3_000)   // the reader is asleep by now
                let now = DispatchTime.now().uptimeNanoseconds
                try w.value.send(withUnsafeBytes(of: now) { Array($0) }, timeout: .seconds(5))
            }
        }.value()
        let sorted = try latencies.value().sorted()
        let median = sorted[sorted.count / 2]
        #expect(median < 3_000_000, "median wake-up latency \(median) ns: the writer does not wake a sleeping reader")
    }

    @Test("zero-copy receive on the reader in isolated mode lends the bytes in the window")
    func isolatedInPlace() throws {
        let setup = try OneWaySetup(pages: 2, mode: .isolated)
        let (writer, reader) = try setup.open(writer: .init(wait: .spin), reader: .init(wait: .spin))
        let frame = setup.nextFrame
        try writer.send([9, 8, 7], timeout: .seconds(5))
        let r = UncheckedBox(reader)
        let (address, bytes) = try ThreadResult { () throws -> (UInt, [UInt8]) in
            try r.value.withNextMessage(timeout: .seconds(5)) { (UInt(bitPattern: $0.baseAddress), Array($0)) }
        }.value()
        #expect(address == UInt(bitPattern: frame + 16))
        #expect(bytes == [9, 8, 7])
    }
}
