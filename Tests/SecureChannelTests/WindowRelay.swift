import Altp2m
import ChannelCrypto
import Testing
import Synchronization
@testable import SecureChannel

/// A man in the middle of the window. Each genuine endpoint maps a window
/// of its own; this relay, on a thread of its own, copies what each side
/// writes into the other's window frame by frame (and each side's state
/// line and consumer indices back), changing the frames `tamper` picks
/// before the reader can see them. It is the attacker that can write the
/// reader's window at any moment, made deterministic: which frame of which
/// phase is changed is the test's choice, not the scheduler's.
final class WindowRelay: @unchecked Sendable {
    // @unchecked: the relay thread owns every field but `stop`, `tampered`
    // and `frames` (atomics) until `finish()` joins it.

    /// A frame on its way: which ring, its number among that ring's frames
    /// (padding not counted), and its header as the genuine writer wrote it.
    struct Frame {
        var ring: Int
        var number: Int
        var header: FrameHeader
    }

    /// Changes the frame (at `bytes`, header included, in the reader's
    /// window) and returns true, or leaves it and returns false.
    typealias Tamper = (Frame, UnsafeMutableRawBufferPointer) -> Bool

    let initiatorWindow: TestWindow
    let responderWindow: TestWindow
    let tampered = Atomic<Int>(0)
    let frames = Atomic<Int>(0)
    private let stop = Atomic<Bool>(false)
    private let tamper: Tamper
    private var worker: ThreadResult<Void>?
    /// Every frame relayed, as the writer wrote it (for replays).
    private(set) var recorded: [(Frame, [UInt8])] = []

    init(pages: Int, oneWay: Bool = false, tamper: @escaping Tamper) throws {
        initiatorWindow = try TestWindow(pages: pages, oneWay: oneWay)
        responderWindow = try TestWindow(pages: pages, oneWay: oneWay)
        self.tamper = tamper
    }

    func start() {
        worker = ThreadResult { [self] in relay() }
    }

    /// Stops the relay and returns every frame it relayed.
    @discardableResult
    func finish() throws -> [(Frame, [UInt8])] {
        stop.store(true, ordering: .releasing)
        try worker?.value(within: .seconds(10), "the window relay")
        return recorded
    }

    private func relay() {
        let geometry = initiatorWindow.geometry
        var relayed = [UInt64](repeating: 0, count: geometry.ringCount)
        var numbers = [Int](repeating: 0, count: geometry.ringCount)
        while !stop.load(ordering: .acquiring) {
            // Each side's state line is read before its rings and handed on
            // after them: a writer publishes its frames before it sets
            // `closed`, and the reader must not see the flag before those
            // frames (copying the line after a stale ring snapshot would
            // show it a close with frames still missing).
            let initiatorLine = readLine(ControlPage.Offset.initiatorState, of: initiatorWindow)
            let responderLine = readLine(ControlPage.Offset.responderState, of: responderWindow)
            // A side's incarnation and session start go before its frames:
            // a writer publishes them before its session's first frame.
            writeIncarnation(initiatorLine, ControlPage.Offset.initiatorState, to: responderWindow)
            writeIncarnation(responderLine, ControlPage.Offset.responderState, to: initiatorWindow)
            for ring in 0..<geometry.ringCount {
                // Ring 0 carries initiator-to-responder frames, ring 1 the rest.
                let (writer, reader) = ring == 0 ? (initiatorWindow, responderWindow) : (responderWindow, initiatorWindow)
                let from = ControlPage(base: writer.base), to = ControlPage(base: reader.base)
                let produced = from.producer(ring: ring).pointee.load(ordering: .acquiring)
                var position = relayed[ring]
                while position != produced {
                    let offset = Int(position & UInt64(geometry.ringSize - 1))
                    let source = writer.base + geometry.ringOffsets[ring] + offset
                    // The writer is genuine: its headers are trusted here.
                    guard let header = FrameHeader.load(from: source) else { fatalError("the genuine writer wrote a bad header") }
                    let bytes = header.type == .padding
                        ? geometry.ringSize - offset : FrameHeader.frameBytes(payloadBytes: Int(header.length))
                    let target = reader.base + geometry.ringOffsets[ring] + offset
                    target.copyMemory(from: source, byteCount: bytes)
                    if header.type != .padding {
                        let frame = Frame(ring: ring, number: numbers[ring], header: header)
                        recorded.append((frame, Array(UnsafeRawBufferPointer(start: source, count: bytes))))
                        if tamper(frame, UnsafeMutableRawBufferPointer(start: target, count: bytes)) {
                            tampered.add(1, ordering: .relaxed)
                        }
                        numbers[ring] += 1
                        frames.add(1, ordering: .relaxed)
                    }
                    position &+= UInt64(bytes)
                }
                if position != relayed[ring] {
                    to.producer(ring: ring).pointee.store(position, ordering: .sequentiallyConsistent)
                    relayed[ring] = position
                }
                from.consumer(ring: ring).pointee.store(to.consumer(ring: ring).pointee.load(ordering: .acquiring),
                                                        ordering: .sequentiallyConsistent)
            }
            // Each side's state line (waiting, closed, liveness) to the other.
            writeLine(initiatorLine, ControlPage.Offset.initiatorState, to: responderWindow)
            writeLine(responderLine, ControlPage.Offset.responderState, to: initiatorWindow)
        }
    }

    private struct StateLine {
        var waiting: UInt32
        var closed: UInt32
        var liveness: UInt64
        var incarnation: UInt32
        var start: UInt64
    }

    private func readLine(_ offset: Int, of window: TestWindow) -> StateLine {
        let page = ControlPage(base: window.base)
        return StateLine(
            waiting: page.u32(at: offset + ControlPage.SideField.waiting).pointee.load(ordering: .sequentiallyConsistent),
            closed: page.u32(at: offset + ControlPage.SideField.closed).pointee.load(ordering: .sequentiallyConsistent),
            liveness: page.u64(at: offset + ControlPage.SideField.liveness).pointee.load(ordering: .relaxed),
            incarnation: page.u32(at: offset + ControlPage.SideField.incarnation).pointee.load(ordering: .acquiring),
            start: page.u64(at: offset + ControlPage.SideField.start).pointee.load(ordering: .acquiring))
    }

    private func writeIncarnation(_ line: StateLine, _ offset: Int, to window: TestWindow) {
        let page = ControlPage(base: window.base)
        page.u64(at: offset + ControlPage.SideField.start).pointee.store(line.start, ordering: .sequentiallyConsistent)
        page.u32(at: offset + ControlPage.SideField.incarnation).pointee.store(line.incarnation, ordering: .sequentiallyConsistent)
    }

    private func writeLine(_ line: StateLine, _ offset: Int, to window: TestWindow) {
        let page = ControlPage(base: window.base)
        page.u32(at: offset + ControlPage.SideField.waiting).pointee.store(line.waiting, ordering: .sequentiallyConsistent)
        page.u32(at: offset + ControlPage.SideField.closed).pointee.store(line.closed, ordering: .sequentiallyConsistent)
        page.u64(at: offset + ControlPage.SideField.liveness).pointee.store(line.liveness, ordering: .relaxed)
    }
}

/// The keys and parameters of one channel, for endpoints opened on windows
/// of their own (through a ``WindowRelay``).
struct SessionSetup: @unchecked Sendable {
    let a = Curve25519.KeyAgreement.PrivateKey()
    let b = Curve25519.KeyAgreement.PrivateKey()
    let psk = SymmetricKey()
    var mode: ChannelMode = .encrypted
    var suite: ChannelSuite = .chachapoly

    func parameters(_ side: ChannelSide, geometry: RingGeometry) -> ChannelEndpoint.Parameters {
        ChannelEndpoint.Parameters(
            side: side, view: 3, geometry: geometry, mode: mode, suite: suite,
            notificationPort: 1, prologue: Array("secure-channel attack test".utf8),
            staticKey: side == .initiator ? a : b,
            peerStaticKey: side == .initiator ? b.publicKey : a.publicKey, presharedKey: psk)
    }

    /// Opens `side` on `window` (runs its half of the handshake).
    func open(_ side: ChannelSide, on window: TestWindow, options: ChannelEndpoint.Options) throws -> ChannelEndpoint {
        let platform = LoopbackPlatform(domain: side == .initiator ? 1 : 2, channelView: 3, window: window)
        return try ChannelEndpoint(platform: platform, window: window.base,
                                   parameters: parameters(side, geometry: window.geometry), options: options)
    }
}
