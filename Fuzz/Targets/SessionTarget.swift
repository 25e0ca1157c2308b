import Altp2m
import ChannelCrypto
import SecureChannel

/// Target `session`: two genuine `ChannelEndpoint`s through a whole session
/// (open with its handshake, data both ways, rekeys and fresh handshakes at
/// fuzzer-chosen intervals, half-close and close) on two threads that take
/// turns where the fuzzer says (`TurnScheduler`), while the fuzzer writes
/// into the window as a hostile third party at any of those points: before
/// either side opens, during the handshake, between a rekey and its frame,
/// during close.
///
/// Oracle: no trap and no access outside the window (address sanitizer);
/// every call returns or throws a `ChannelError`; and in encrypted mode each
/// side delivers only messages the other side sent, in order, none twice,
/// none skipped (a send that failed may or may not have gone out; a send
/// that returned must arrive before any later one). In isolated mode the
/// same holds for runs in which the fuzzer wrote nothing.
package enum SessionTarget {
    static let target = FuzzTarget(
        name: "session", summary: "two endpoints through a whole session, with a hostile writer at fuzzer-chosen points",
        run: { bytes throws(OracleViolation) in try run(bytes) }, seeds: seeds)

    enum Operation: UInt8, CaseIterable {
        case send, trySend, sendBuffer, receive, tryReceive, closeSending, close
    }

    /// What one run did, for tests that check the seeds reach deep code.
    package struct Report: Sendable {
        /// Messages each side delivered (initiator, responder).
        package var delivered: [Int]
        /// Whether the fuzzer wrote into the window.
        package var attacked: Bool
        /// Schedule points the run passed.
        package var points: Int
    }

    static func run(_ bytes: [UInt8]) throws(OracleViolation) {
        _ = try replay(bytes)
    }

    package static func replay(_ bytes: [UInt8]) throws(OracleViolation) -> Report {
        var header = FuzzInput(bytes)
        let shape = header.byte()
        let tuning = header.byte()
        let lengths = [Int(header.u16()), Int(header.u16())]
        // Three streams: what each side does, then when they switch and
        // what the hostile writer does (so a benign session is easy to
        // write down, and each part mutates on its own).
        var rest = Array(bytes.dropFirst(6))
        var scripts: [FuzzInput] = []
        for length in lengths {
            scripts.append(FuzzInput(Array(rest.prefix(length))))
            rest = Array(rest.dropFirst(length))
        }
        var schedule = FuzzInput(rest)
        let oneWay = shape & 4 != 0
        let mode: ChannelMode = shape & 8 == 0 ? .encrypted : .isolated
        let suite: ChannelSuite = shape & 16 != 0 && AEADAlgorithm.aesGCM.isAvailable ? .aesgcm : .chachapoly
        let geometry = try! RingGeometry(pageCount: 2 + Int(shape & 3), oneWay: oneWay)
        var options = ChannelEndpoint.Options(wait: .spin)
        options.rekeyInterval = 1 + UInt64(tuning & 7)
        options.rehandshakeAfterMessages = 2 + UInt64(tuning >> 3)
        options.handshakeTimeout = .milliseconds(50)

        let window = FuzzWindow(geometry: geometry)
        defer { window.release() }
        // What a hostile party wrote before either side opened.
        let attacksBeforeOpen = Int(schedule.byte() % 4)
        for _ in 0..<attacksBeforeOpen {
            WindowAttack(rawValue: schedule.byte() % WindowAttack.count)!.apply(to: window, &schedule)
        }
        let scheduler = TurnScheduler(scripts: scripts, schedule: schedule, window: window)
        let sides = [SessionSide(.initiator), SessionSide(.responder)]
        let tuned = options
        scheduler.run { me in
            sides[me].run(scheduler: scheduler, me: me, window: window, geometry: geometry,
                          mode: mode, suite: suite, options: tuned)
        }
        let report = Report(delivered: sides.map(\.delivered.count), attacked: scheduler.attacked || attacksBeforeOpen > 0,
                            points: scheduler.points)
        guard mode == .encrypted || !report.attacked else { return report }
        for me in 0..<2 {
            try sides[me].checkDelivered(from: sides[1 - me])
        }
        return report
    }

    /// Benign sessions of every shape: handshake, messages both ways past
    /// several rekeys and a fresh handshake, then close.
    package static func seeds() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for shape: UInt8 in [0, 1, 4, 8, 12, 16] {
            var sender: [UInt8] = [], receiver: [UInt8] = []
            for round in 0..<12 {
                let length = UInt16(16 + round * 45)
                sender += [Operation.send.rawValue, UInt8(length & 0xFF), UInt8(length >> 8), Operation.receive.rawValue]
                receiver += [Operation.receive.rawValue, Operation.send.rawValue, UInt8(length & 0xFF), UInt8(length >> 8)]
            }
            sender += [Operation.close.rawValue]
            receiver += [Operation.receive.rawValue, Operation.close.rawValue]
            // Rekey every 2 messages, a fresh handshake every 6; no schedule
            // bytes: the sides alternate at every point and nothing is written.
            seeds.append([shape, 0x21] + le16(sender.count) + le16(receiver.count) + sender + receiver)
        }
        return seeds
    }

    static func le16(_ value: Int) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF)] }
}

/// One side of a session run: its endpoint's life, driven by the fuzzer's
/// bytes whenever this side holds the turn, and what it sent and delivered.
final class SessionSide: @unchecked Sendable {
    // @unchecked: used by one thread at a time (see `TurnScheduler`).
    struct Sent { var message: [UInt8]; var certain: Bool }

    let side: ChannelSide
    private(set) var sent: [Sent] = []
    private(set) var delivered: [[UInt8]] = []

    init(_ side: ChannelSide) { self.side = side }

    func run(scheduler: TurnScheduler, me: Int, window: FuzzWindow, geometry: RingGeometry,
             mode: ChannelMode, suite: ChannelSuite, options: ChannelEndpoint.Options) {
        let platform = TurnPlatform(scheduler: scheduler, me: me, window: window)
        let mine = side == .initiator ? FixedKeys.initiator : FixedKeys.responder
        let theirs = side == .initiator ? FixedKeys.responder : FixedKeys.initiator
        let parameters = ChannelEndpoint.Parameters(
            side: side, view: TurnPlatform.channelView, geometry: geometry, mode: mode, suite: suite,
            notificationPort: 0, prologue: Array("fuzz session".utf8), staticKey: mine,
            peerStaticKey: theirs.publicKey, presharedKey: FixedKeys.presharedKey)
        guard let endpoint = try? ChannelEndpoint(platform: platform, window: window.base,
                                                  parameters: parameters, options: options) else { return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(endpoint.maximumMessageBytes, 1), alignment: 16)
        defer { buffer.deallocate() }
        for _ in 0..<48 {
            let code = scheduler.scripts[me].isExhausted ? SessionTarget.Operation.close.rawValue : scheduler.scripts[me].byte()
            guard let operation = SessionTarget.Operation(rawValue: code % UInt8(SessionTarget.Operation.allCases.count)) else { continue }
            if perform(operation, me: me, on: endpoint, scheduler: scheduler, buffer: buffer) { return }
        }
        _ = try? endpoint.close(timeout: .milliseconds(20))
    }

    /// Returns true when the side is done (it closed).
    private func perform(_ operation: SessionTarget.Operation, me: Int, on endpoint: ChannelEndpoint,
                         scheduler: TurnScheduler, buffer: UnsafeMutableRawBufferPointer) -> Bool {
        switch operation {
        case .send, .trySend, .sendBuffer:
            let message = nextMessage(length: Int(scheduler.scripts[me].u16()), limit: endpoint.maximumMessageBytes)
            sent.append(Sent(message: message, certain: false))
            do {
                switch operation {
                case .send:
                    try endpoint.send(message, timeout: .milliseconds(20))
                case .trySend:
                    guard try endpoint.trySend(message) else { sent.removeLast(); return false }
                default:
                    try endpoint.withSendBuffer(capacity: message.count, timeout: .milliseconds(20)) { out in
                        message.withUnsafeBytes { out.copyMemory(from: $0) }
                        return message.count
                    }
                }
                sent[sent.count - 1].certain = true
            } catch {
                // Failed: it may have gone out (owed control frames first) or not.
            }
        case .receive:
            if let count = try? endpoint.receive(into: buffer, timeout: .milliseconds(20)) {
                delivered.append(Array(buffer[0..<count]))
            }
        case .tryReceive:
            if let count = (try? endpoint.tryReceive(into: buffer)) ?? nil {
                delivered.append(Array(buffer[0..<count]))
            }
        case .closeSending:
            _ = try? endpoint.closeSending(timeout: .milliseconds(20))
        case .close:
            _ = try? endpoint.close(timeout: .milliseconds(20))
            return true
        }
        return false
    }

    /// A message no other message of the run equals: the side, its number,
    /// then filler up to the length the fuzzer chose.
    private func nextMessage(length: Int, limit: Int) -> [UInt8] {
        let number = UInt32(sent.count)
        var message: [UInt8] = [side == .initiator ? 0xA1 : 0xB2] + withUnsafeBytes(of: number.littleEndian) { Array($0) }
        let total = min(max(length % 4096, message.count), limit)
        while message.count < total { message.append(UInt8(truncatingIfNeeded: message.count &+ Int(number))) }
        return Array(message.prefix(max(total, 0)))
    }

    /// The oracle: what this side delivered is what `peer` sent, in order;
    /// a send that failed may be missing, one that returned may not.
    func checkDelivered(from peer: SessionSide) throws(OracleViolation) {
        var next = 0
        for (index, message) in delivered.enumerated() {
            while next < peer.sent.count, !peer.sent[next].certain, peer.sent[next].message != message { next += 1 }
            guard next < peer.sent.count else {
                throw OracleViolation("\(side) delivered message \(index) (\(message.count) bytes) that the peer never sent")
            }
            guard peer.sent[next].message == message else {
                throw OracleViolation("\(side) delivered message \(index) (\(message.count) bytes) where the peer's message \(next) was due")
            }
            next += 1
        }
    }
}

/// The platform under each endpoint of the session target: VMFUNC succeeds
/// into view 0 and the channel view and is a schedule point; waits do not
/// sleep (the other thread can only run at a schedule point), they yield.
final class TurnPlatform: GuestPlatform, @unchecked Sendable {
    static let channelView = ViewID(1)

    let domain: DomainID
    private let scheduler: TurnScheduler
    private let me: Int
    private let window: FuzzWindow

    init(scheduler: TurnScheduler, me: Int, window: FuzzWindow) {
        self.scheduler = scheduler
        self.me = me
        self.window = window
        domain = DomainID(rawValue: UInt16(1 + me))
    }

    func enterView(_ view: ViewID) -> Bool {
        scheduler.point(me)
        return view == Self.channelView || view == .hostOrView0
    }

    func mapWindow(view: ViewID, firstGFN: GFN, pageCount: Int) throws(GuestPlatformError) -> UnsafeMutableRawPointer {
        window.base
    }

    func unmapWindow(_ base: UnsafeMutableRawPointer, pageCount: Int) {}

    func notify(_ wake: WakeTarget) {}

    func wait(_ wake: WakeTarget, expected: UInt32, timeoutNanoseconds: UInt64?) {
        scheduler.point(me)
    }

    func descriptorNames() throws(GuestPlatformError) -> [String] { [] }

    func readDescriptor(named name: String) throws(GuestPlatformError) -> [UInt8] { throw .noDescriptor(name) }
}
