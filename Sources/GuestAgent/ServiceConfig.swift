#if canImport(Glibc)
import Glibc
#endif

/// What `run` does with one channel.
enum ChannelService: Equatable, Sendable, CustomStringConvertible {
    /// Send every message back.
    case echo
    /// Read and discard; count messages and bytes.
    case sink
    /// Connect to the Unix stream socket at the (absolute) path once the
    /// channel is open and bridge bytes both ways.
    case forwardUnix(path: String)
    /// Never open the channel.
    case refuse

    var description: String {
        switch self {
        case .echo: "echo"
        case .sink: "sink"
        case .forwardUnix(let path): "forward-unix \(path)"
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
struct ServiceConfig: Sendable {
    struct Rule: Sendable, Equatable {
        var pattern: String
        var service: ChannelService
        /// 1-based line in the file, for the log.
        var line: Int
    }

    /// A mistake in the file's content: where and what.
    struct ContentError: Error, CustomStringConvertible {
        var file: String
        var line: Int
        var problem: String
        var description: String { "\(file):\(line): \(problem)" }
    }

    /// The file the rules came from (for the log); nil for the default.
    var file: String?
    var rules: [Rule]

    /// No file: echo on every channel.
    static let echoEverywhere = ServiceConfig(file: nil, rules: [])

    /// The service for `channel` and, unless it is the default, where the
    /// rule that chose it is ("FILE:LINE").
    func service(for channel: String) -> (service: ChannelService, rule: String?) {
        for rule in rules where ServiceConfig.matches(rule.pattern, channel) {
            return (rule.service, "\(file ?? "services"):\(rule.line)")
        }
        return (.echo, nil)
    }

    /// Reads and checks `path`: an unreadable file is a failure (exit 1),
    /// bad content a usage error (exit 2) naming FILE:LINE.
    static func load(_ path: String) throws(AgentFailure) -> ServiceConfig {
        let text: String
        do {
            text = try readSmallFile(path)
        } catch {
            throw .failure("cannot read the services file \(path): \(error.message); check the path and its permissions")
        }
        do {
            return try parse(text, file: path)
        } catch {
            throw .usage("bad services file \(error.description)")
        }
    }

    /// The rules in `text`; `file` names it in errors.
    static func parse(_ text: String, file: String) throws(ContentError) -> ServiceConfig {
        var rules: [Rule] = []
        var number = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
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
                guard path.utf8.count < UnixSockets.maximumPathBytes else {
                    throw fail("forward-unix path '\(path)' is longer than a socket address holds (at most \(UnixSockets.maximumPathBytes - 1) bytes)")
                }
                service = .forwardUnix(path: path)
            default:
                throw fail("unknown service '\(name)': expected echo, sink, forward-unix PATH or refuse")
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
    static func matches(_ pattern: String, _ name: String) -> Bool {
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

struct FileReadError: Error {
    var message: String
}

/// The whole of a small text file (at most 1 MiB: a services file is a few
/// lines; anything larger is a wrong path).
func readSmallFile(_ path: String) throws(FileReadError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileReadError(message: String(cString: strerror(errno))) }
    defer { close(fd) }
    var info = stat()
    if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { throw FileReadError(message: "it is a directory") }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw FileReadError(message: String(cString: strerror(errno)))
        }
        if n == 0 { break }
        bytes += chunk[0..<n]
        if bytes.count > 1 << 20 { throw FileReadError(message: "larger than 1 MiB; is it the right file?") }
    }
    return String(decoding: bytes, as: UTF8.self)
}
