import AgentServices

/// Target `mux-frames`: the forwarder's frame parser (`MuxCodec.parse`,
/// docs/PROTOCOL.md "Forwarding"), fed one channel message as a peer could
/// send it.
///
/// Oracle: parsing never traps; the frames it hands out lie inside the
/// message, one after another from its start, each with a payload size its
/// type allows (HELLO exactly the hello, OPEN/OPENED/FIN none, CREDIT 4
/// bytes, REFUSED/RESET at most the reason limit, DATA at least one byte),
/// and writing each frame back (header and payload) gives the bytes it was
/// read from. A message that parses whole is covered by its frames exactly;
/// one that fails is refused with a reason.
enum MuxFramesTarget {
    static let target = FuzzTarget(
        name: "mux-frames", summary: "forwarding-protocol messages (guest-agent forward)",
        run: { bytes throws(OracleViolation) in try run(bytes) }, seeds: seeds)

    static func run(_ bytes: [UInt8]) throws(OracleViolation) {
        let result: Result<Int, OracleViolation> = bytes.withUnsafeBytes { message in
            var covered = 0
            var violation: OracleViolation? = nil
            do throws(MuxProtocolError) {
                try MuxCodec.parse(message) { (frame) throws(MuxProtocolError) in
                    guard violation == nil else { return }
                    violation = check(frame, message: message, at: covered)
                    covered += MuxCodec.headerBytes + frame.payload.count
                }
            } catch {
                if let violation { return .failure(violation) }
                guard !error.description.isEmpty else { return .failure(OracleViolation("refused a message without a reason")) }
                return .success(-1)
            }
            if let violation { return .failure(violation) }
            return .success(covered)
        }
        let covered = try result.get()
        if covered >= 0, covered != bytes.count {
            throw OracleViolation("parsed whole, but its frames cover \(covered) of \(bytes.count) bytes")
        }
    }

    /// The frame read at `offset` of `message`: where it lies, its size
    /// rule, and its bytes written back.
    static func check(_ frame: MuxFrame, message: UnsafeRawBufferPointer, at offset: Int) -> OracleViolation? {
        let count = frame.payload.count
        guard let base = message.baseAddress, let payload = frame.payload.baseAddress ?? (count == 0 ? base + offset + MuxCodec.headerBytes : nil),
              payload == base + offset + MuxCodec.headerBytes, offset + MuxCodec.headerBytes + count <= message.count else {
            return OracleViolation("\(frame.type) frame for \(frame.id) at offset \(offset) does not lie where it was read from")
        }
        let allowed: Bool
        switch frame.type {
        case .hello: allowed = count == MuxCodec.helloBytes
        case .open, .opened, .fin: allowed = count == 0
        case .credit: allowed = count == 4
        case .refused, .reset: allowed = count <= MuxCodec.maximumReasonBytes
        case .data: allowed = count > 0
        }
        guard allowed else { return OracleViolation("accepted a \(frame.type) frame with a \(count)-byte payload") }
        var rewritten = [UInt8](repeating: 0, count: MuxCodec.headerBytes + count)
        rewritten.withUnsafeMutableBytes { out in
            MuxCodec.writeHeader(frame.type, id: frame.id, length: count, out, 0)
            if count > 0 { (out.baseAddress! + MuxCodec.headerBytes).copyMemory(from: payload, byteCount: count) }
        }
        guard rewritten.elementsEqual(message[offset..<offset + rewritten.count]) else {
            return OracleViolation("\(frame.type) frame for \(frame.id) at offset \(offset) does not write back to the bytes it was read from")
        }
        return nil
    }

    static func seeds() -> [[UInt8]] {
        func frame(_ type: MuxFrameType, _ id: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: MuxCodec.headerBytes)
            bytes.withUnsafeMutableBytes { MuxCodec.writeHeader(type, id: id, length: payload.count, $0, 0) }
            return bytes + payload
        }
        let hello = frame(.hello, 0, MuxCodec.helloPayload(listening: true, window: 256 * 1024))
        return [
            hello,
            hello + frame(.open, 1) + frame(.open, 2),
            frame(.opened, 1) + frame(.credit, 1, [0, 1, 0, 0]) + frame(.data, 1, Array("GET / HTTP/1.1\r\n\r\n".utf8)),
            frame(.data, 2, [UInt8](repeating: 0x61, count: 300)) + frame(.fin, 2) + frame(.reset, 3, Array("connection refused".utf8)),
            frame(.refused, 4, Array("cannot connect to tcp:127.0.0.1:80: Connection refused".utf8)),
        ]
    }
}
