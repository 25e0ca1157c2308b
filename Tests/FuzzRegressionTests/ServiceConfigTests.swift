#if canImport(Glibc)
import Glibc
#endif
import AgentServices
import Testing

/// guest-agent's `--services` rules (ServiceConfig): line ends.
@Suite struct ServiceConfigTests {
    @Test("a services file written with CRLF line ends is read line by line, each rule with its own line number")
    func crlfLineEnds() throws {
        let config = try ServiceConfig.parse("orders-*  sink\r\n# a comment\r\nweb-*  forward-unix /run/web.sock\r\n", file: "services")
        #expect(config.rules.map(\.pattern) == ["orders-*", "web-*"])
        #expect(config.rules.map(\.line) == [1, 3])
        #expect(config.service(for: "web-1").service == .forwardUnix(path: "/run/web.sock"))
        #expect(config.service(for: "orders-2").service == .sink)
    }
}

/// Reading configuration and services files whole (SmallFile).
@Suite struct SmallFileTests {
    private func pipe(with bytes: [UInt8]) -> Int32 {
        var fds: [Int32] = [0, 0]
        _ = fds.withUnsafeMutableBufferPointer { Glibc.pipe($0.baseAddress!) }
        _ = bytes.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
        close(fds[1])
        return fds[0]
    }

    @Test("a file within the limit is read whole; one past it is refused as too large, naming the limit and what was expected")
    func limit() throws {
        let small = pipe(with: Array("web-* sink\n".utf8))
        defer { close(small) }
        #expect(try SmallFile.readToEnd(small, limit: 64) == Array("web-* sink\n".utf8))
        let large = pipe(with: [UInt8](repeating: 0x61, count: 3000))
        defer { close(large) }
        #expect(throws: SmallFile.ReadError.tooLarge) { try SmallFile.readToEnd(large, limit: 2048) }
        #expect(SmallFile.ReadError.tooLarge.reason(limit: 2048, expected: "a services file") == "larger than 2 KiB; is it a services file?")
    }
}
