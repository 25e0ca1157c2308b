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
