import CSecureChannelABI
import SecureChannel

extension OpenChannel {
    /// sc_statistics: the channel's counters as a `sc_stats`, truncated to or
    /// zero-padded up to the caller's `sizeof`, so a program built against
    /// an older or newer header gets exactly the fields it knows.
    func copyStatistics(to out: UnsafeMutableRawBufferPointer) -> Int32 {
        let s = channel.statistics
        var record = sc_stats(
            messages_sent: s.messagesSent, bytes_sent: s.bytesSent,
            messages_received: s.messagesReceived, bytes_received: s.bytesReceived,
            handshakes: s.handshakes, rekeys: s.rekeys,
            protocol_violations: s.protocolViolations, authentication_failures: s.authenticationFailures,
            waits: s.waits, sleeps: s.sleeps, wakeups_sent: s.wakeupsSent,
            ns_since_handshake: s.nanosecondsSinceHandshake)
        withUnsafeBytes(of: &record) { bytes in
            let known = min(bytes.count, out.count)
            out.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<known]))
            if out.count > known {
                UnsafeMutableRawBufferPointer(rebasing: out[known...]).initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
        return 0
    }
}
