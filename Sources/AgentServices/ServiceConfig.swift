#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What `run` does with one channel.
package enum ChannelService: Equatable, Sendable, CustomStringConvertible {
    /// Send every message back.
    case echo
    /// Read and discard; count messages and bytes.
    case sink
    /// Connect to the Unix stream socket at the (absolute) path once the
    /// channel is open and bridge bytes both ways.
    case forwardUnix(path: String)
    /// Connect to HOST:PORT over TCP for each connection the peer opens.
    case forwardTCP(host: String, port: UInt16)
    /// Never open the channel.
    case refuse

    package var description: String {
        switch self {
        case .echo: "echo"
        case .sink: "sink"
        case .forwardUnix(let path): "forward-unix \(path)"
        case .forwardTCP(let host, let port): host.contains(":") ? "forward-tcp [\(host)]:\(port)" : "forward-tcp \(host):\(port)"
        case .refuse: "refuse"
        }
    }
}

/// The `--services` file of `run`: one rule per line, `PATTERN SERVICE
/// [ARGUMENT]`, the first rule whose pattern matches a channel's name wins,
/// and a channel no rule matches is served with echo.
///
/// The whole file is checked when it is read, so a mistake stops the agent
/// before it attaches (or, on a reload, keeps the rules in force) instead of
/// surfacing when some channel happens to match the broken line.
package struct ServiceConfig: Sendable {
    package struct Rule: Sendable, Equatable {
        package var pattern: String
        package var service: ChannelService
        /// 1-based line in the file, for the log.
        package var line: Int
    }

    /// A mistake in the file's content: where and what.
    package struct ContentError: Error, CustomStringConvertible {
        package var file: String
        package var line: Int
        package var problem: String
        package var description: String { "\(file):\(line): \(problem)" }
    }

    /// The file the rules came from (for the log); nil for the default.
    package var file: String?
    package var rules: [Rule]

    /// Bytes in a Unix socket address's path, its terminating zero included.
    package static var socketPathCapacity: Int { MemoryLayout.size(ofValue: sockaddr_un().sun_path) }

    /// No file: echo on every channel.
    package static let echoEverywhere = ServiceConfig(file: nil, rules: [])

    /// The service for `channel` and, unless it is the default, where the
    /// rule that chose it is ("FILE:LINE").
    package func service(for channel: String) -> (service: ChannelService, rule: String?) {
        for rule in rules where ServiceConfig.matches(rule.pattern, channel) {
            return (rule.service, "\(file ?? "services"):\(rule.line)")
        }
        return (.echo, nil)
    }

    /// The rules in `text`; `file` names it in errors.
    package static func parse(_ text: String, file: String) throws(ContentError) -> ServiceConfig {
        var rules: [Rule] = []
        var number = 0
        // "\r\n" is one Character in Swift: split on it too, or a file
        // written with CRLF line ends would be read as one long line.
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            number += 1
            func fail(_ problem: String) -> ContentError { ContentError(file: file, line: number, problem: problem) }
            var words: [Substring] = []
            for word in rawLine.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }) {
                // '#' opens a comment at the start of a word, so a path may
                // still contain one in the middle.
                if word.hasPrefix("#") { break }
                words.append(word)
            }
            if words.isEmpty { continue }
            let pattern = String(words[0])
            guard words.count >= 2 else {
                throw fail("'\(pattern)' has no service: write PATTERN SERVICE [ARGUMENT], e.g. '\(pattern) echo'")
            }
            guard pattern.allSatisfy(isPatternCharacter) else {
                throw fail("bad pattern '\(pattern)': use channel-name characters (letters, digits, '_', '-'; no '.') and the wildcards * and ?")
            }
            let name = String(words[1])
            let arguments = words.dropFirst(2).map(String.init)
            let service: ChannelService
            switch name {
            case "echo", "sink", "refuse":
                guard arguments.isEmpty else {
                    throw fail("\(name) takes no argument (got '\(arguments.joined(separator: " "))')")
                }
                service = name == "echo" ? .echo : name == "sink" ? .sink : .refuse
            case "forward-unix":
                guard let path = arguments.first else {
                    throw fail("forward-unix needs the path of a Unix stream socket, e.g. 'forward-unix /run/service.sock'")
                }
                guard arguments.count == 1 else {
                    throw fail("forward-unix takes one argument, the socket path (got '\(arguments.joined(separator: " "))')")
                }
                guard path.hasPrefix("/") else {
                    throw fail("forward-unix path '\(path)' is relative; give an absolute path (the agent's working directory is not a reliable anchor)")
                }
                guard path.utf8.count < ServiceConfig.socketPathCapacity else {
                    throw fail("forward-unix path '\(path)' is longer than a socket address holds (at most \(ServiceConfig.socketPathCapacity - 1) bytes)")
                }
                service = .forwardUnix(path: path)
            case "forward-tcp":
                guard arguments.count == 1, let target = arguments.first, let colon = target.lastIndex(of: ":") else {
                    throw fail("forward-tcp takes one argument, HOST:PORT, e.g. 'forward-tcp 127.0.0.1:8080' or 'forward-tcp [::1]:8080'")
                }
                var host = String(target[..<colon])
                if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                guard !host.isEmpty, host.utf8.count <= 255, !host.contains(where: { $0.isWhitespace || $0 == "[" || $0 == "]" }),
                      let port = UInt16(target[target.index(after: colon)...]), port > 0 else {
                    throw fail("forward-tcp target '\(target)' is not HOST:PORT with a port 1...65535 (an IPv6 host in brackets)")
                }
                service = .forwardTCP(host: host, port: port)
            default:
                throw fail("unknown service '\(name)': expected echo, sink, forward-unix PATH, forward-tcp HOST:PORT or refuse")
            }
            rules.append(Rule(pattern: pattern, service: service, line: number))
        }
        return ServiceConfig(file: file, rules: rules)
    }

    private static func isPatternCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "-" || c == "*" || c == "?")
    }

    /// Glob match: `*` any run of characters (empty too), `?` exactly one,
    /// everything else itself. Channel names are ASCII, so bytes will do.
    package static func matches(_ pattern: String, _ name: String) -> Bool {
        let p = Array(pattern.utf8), n = Array(name.utf8)
        var pi = 0, ni = 0
        // The last `*` seen and the name position it was tried at: on a
        // mismatch it takes one more character (linear backtracking).
        var star: Int? = nil, starName = 0
        while ni < n.count {
            if pi < p.count, p[pi] == UInt8(ascii: "?") || p[pi] == n[ni] {
                pi += 1; ni += 1
            } else if pi < p.count, p[pi] == UInt8(ascii: "*") {
                star = pi; starName = ni; pi += 1
            } else if let s = star {
                pi = s + 1; starName += 1; ni = starName
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
