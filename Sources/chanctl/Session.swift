import Altp2m
import Altp2mSim
#if canImport(Glibc)
import Glibc
#endif

/// One command's conversation with the simulator daemon.
struct Session {
    let options: GlobalOptions
    let client: SimClient

    /// Connects as the control domain, or, with `guest` set, as `domain`
    /// itself (reading its token from the state directory).
    init(_ options: GlobalOptions, guest: GuestCallerOptions? = nil, domain: String? = nil) throws(CommandFailure) {
        self.options = options
        let directory = options.stateDirectory
        do {
            if let guest, guest.isGuest, let domain {
                let token = try Self.token(for: domain, in: directory)
                client = try SimClient(stateDirectory: directory, token: token, guestUser: guest.asGuestUser)
            } else {
                client = try SimClient(stateDirectory: directory)
            }
        } catch let error as SimClientError {
            throw CommandFailure(error)
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw .failure("\(error)")
        }
    }

    /// Sends a request; a refusal becomes a ``CommandFailure``.
    func call(_ op: String, _ arguments: [String: JSONValue] = [:]) throws(CommandFailure) -> JSONValue {
        let log = options.log
        log.debug("request", metadata: ["op": "\(op)", "state_dir": "\(options.stateDirectory.path)"])
        log.trace("request arguments", metadata: ["op": "\(op)", "arguments": "\(JSONValue.object(arguments).serialized)"])
        let start = ContinuousClock.now
        do {
            let answer = try client.call(op, arguments)
            log.debug("answer", metadata: ["op": "\(op)", "elapsed": "\(ContinuousClock.now - start)"])
            return answer
        } catch {
            let failure = CommandFailure(error)
            log.error("refused", metadata: ["op": "\(op)", "error": "\(failure.text)"])
            throw failure
        }
    }

    /// Sends a request and prints the answer.
    func run(_ op: String, _ arguments: [String: JSONValue] = [:],
             text: ((JSONValue) -> String)? = nil) throws(CommandFailure) {
        let response = try call(op, arguments)
        emit(response, json: options.json, text: text)
    }

    /// The token `domain create` wrote for `domain` (a name, or an id that
    /// the daemon resolves to a name first).
    private static func token(for domain: String, in directory: StateDirectory) throws -> String {
        var name = domain
        if UInt16(domain) != nil {
            let list = try SimClient(stateDirectory: directory).call("domain.list")
            guard let match = list["domains"]?.array?.first(where: { $0["domid"]?.int64.map(String.init) == domain }),
                  let found = match["name"]?.string
            else {
                throw CommandFailure.failure("no domain with id \(domain); see chanctl domain list")
            }
            name = found
        }
        let path = directory.tokenPath(domain: name)
        guard let file = fopen(path, "r") else {
            throw CommandFailure.failure(
                "no token for domain \(name) at \(path); --as-guest needs a domain made by chanctl domain create")
        }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else {
            throw CommandFailure.failure("token file \(path) is empty")
        }
        let token = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return token.trimmingCharacters(in: " \n\r\t")
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s.removeFirst() }
        while let l = s.last, chars.contains(l) { s.removeLast() }
        return String(s)
    }
}
