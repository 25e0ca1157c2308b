import Altp2m
import Altp2mSim
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `chanctl sim guest-probe DOM` (hidden): a guest process for tests and
/// demonstrations. It attaches as one vCPU of DOM and then obeys one command
/// per line on standard input, answering each with one JSON line:
///
///     vmfunc INDEX [EAX]            local VMFUNC
///     view                          the current view
///     read GFN OFFSET COUNT         guest read (accessor)
///     write GFN OFFSET TEXT         guest write (accessor)
///     raw-read GFN OFFSET COUNT     load through the mprotect window (may fault)
///     raw-write GFN OFFSET TEXT     store through the mprotect window (may fault)
///     probe GFN r|w                 would the window fault? (no fault taken)
///     sync                          take in dom0's changes (a VM exit)
///     notify DOMID PORT | counter PORT | wait PORT SEEN MS | state DOMID
///     evtchn-bind-unbound REMOTE | evtchn-bind REMOTE PORT | evtchn-notify PORT
///     evtchn-pending | evtchn-unmask PORT | evtchn-wait MS
///                                   an event-channel handle of this process
///                                   (opened at the first evtchn command)
///     detach                        detach and exit 0
///     exit                          exit without detaching (the domain crashes)
///
/// A raw access that the window forbids kills the process with SIGSEGV, as
/// the CPU's EPT violation would stop the instruction.
struct GuestProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guest-probe",
        abstract: "Run a scripted guest process attached to DOM (commands on standard input).",
        shouldDisplay: false)

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The domain (name).") var domain: String
    @Option(help: "The vCPU this process runs as.", transform: ArgumentValue.vcpu) var vcpu: UInt32 = 0
    @Option(help: "software or mprotect.") var enforcement: String = "software"

    func validate() throws {
        guard SimGuest.Enforcement(rawValue: enforcement) != nil else {
            throw ValidationError("bad --enforcement '\(enforcement)': expected software or mprotect")
        }
    }

    func run() throws {
        let guest: SimGuest
        do {
            guest = try SimGuest.attach(domain: domain, stateDirectory: options.stateDirectory, vcpu: VCPUID(vcpu),
                                        enforcement: SimGuest.Enforcement(rawValue: enforcement)!)
        } catch {
            throw CommandFailure.failure(error.description)
        }
        Self.reply(["ok": true, "attached": .string(guest.name), "domid": .int(Int64(guest.domain.rawValue)),
                    "pid": .int(Int64(getpid())), "window_gfns": .int(Int64(guest.windowGFNCount))])
        var events: SimEventChannel?
        while let line = readLine() {
            let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard let command = words.first else { continue }
            if command.hasPrefix("evtchn-") {
                Self.reply(Self.eventChannel(command, Array(words.dropFirst()), &events, domain: domain, options: options))
                continue
            }
            if command == "detach" {
                guest.detach()
                Self.reply(["ok": true, "detached": true])
                Glibc.exit(0)
            }
            if command == "exit" {
                Glibc._exit(0)
            }
            Self.reply(Self.perform(command, Array(words.dropFirst()), guest))
        }
        guest.detach()
    }

    static func perform(_ command: String, _ args: [String], _ guest: SimGuest) -> JSONValue {
        func gfn(_ i: Int) -> GFN? { args.count > i ? ArgumentValue.integer(args[i]).map { GFN(rawValue: $0) } : nil }
        func int(_ i: Int) -> Int? { args.count > i ? ArgumentValue.integer(args[i]).map { Int($0) } : nil }
        func faultJSON(_ fault: GuestMemoryFault) -> JSONValue {
            var fields: [String: JSONValue] = ["ok": false, "fault": .string(faultName(fault)), "message": .string(fault.description)]
            if case .virtualizationException(let info) = fault {
                fields["gpa"] = .string("0x" + String(info.guestPhysicalAddress, radix: 16))
                fields["eptp_index"] = .int(Int64(info.eptpIndex))
            }
            return .object(fields)
        }
        switch command {
        case "vmfunc":
            guard let index = int(0) else { return usage("vmfunc INDEX [EAX]") }
            let outcome = guest.vmfunc(UInt32(truncatingIfNeeded: index), eax: UInt32(truncatingIfNeeded: int(1) ?? 0))
            let view = guest.currentView.map { JSONValue.int(Int64($0.rawValue)) } ?? .null
            switch outcome {
            case .switched: return ["ok": true, "outcome": "ok", "view": view]
            case .invalidOpcode: return ["ok": true, "outcome": "ud", "view": view]
            case .vcpuNotRunning: return ["ok": true, "outcome": "not_running", "view": view]
            }
        case "view":
            return ["ok": true, "view": guest.currentView.map { .int(Int64($0.rawValue)) } ?? .null]
        case "sync":
            guest.synchronize()
            return ["ok": true]
        case "read":
            guard let g = gfn(0), let offset = int(1), let count = int(2) else { return usage("read GFN OFFSET COUNT") }
            do {
                let bytes = try guest.read(gfn: g, offset: offset, count: count)
                return ["ok": true, "text": .string(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))]
            } catch {
                return faultJSON(error)
            }
        case "write":
            guard let g = gfn(0), let offset = int(1), args.count > 2 else { return usage("write GFN OFFSET TEXT") }
            do {
                try guest.write(gfn: g, offset: offset, bytes: Array(args[2...].joined(separator: " ").utf8))
                return ["ok": true]
            } catch {
                return faultJSON(error)
            }
        case "raw-read", "raw-write":
            guard let window = guest.window, let g = gfn(0), let offset = int(1), args.count > 2,
                  g.rawValue < UInt64(guest.windowGFNCount), offset >= 0, offset < 4096
            else { return usage("\(command) GFN OFFSET COUNT|TEXT (needs --enforcement mprotect)") }
            guest.synchronize()
            let address = window + Int(g.rawValue) * 4096 + offset
            if command == "raw-read" {
                let count = min(int(2) ?? 0, 4096 - offset)
                let bytes = (0..<count).map { address.load(fromByteOffset: $0, as: UInt8.self) }
                return ["ok": true, "text": .string(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))]
            }
            let bytes = Array(args[2...].joined(separator: " ").utf8).prefix(4096 - offset)
            for (i, byte) in bytes.enumerated() { address.storeBytes(of: byte, toByteOffset: i, as: UInt8.self) }
            return ["ok": true]
        case "probe":
            guard let g = gfn(0), args.count > 1, ["r", "w"].contains(args[1]) else { return usage("probe GFN r|w") }
            let result = guest.probe(gfn: g, kind: args[1] == "r" ? .read : .write)
            return ["ok": true, "result": .string(result.description), "allowed": .bool(result == .allowed)]
        case "notify":
            guard let d = int(0), let port = int(1) else { return usage("notify DOMID PORT") }
            return ["ok": .bool(guest.events.notify(domain: DomainID(rawValue: UInt16(truncatingIfNeeded: d)),
                                                    port: UInt32(truncatingIfNeeded: port)))]
        case "counter":
            guard let port = int(0) else { return usage("counter PORT") }
            return ["ok": true, "counter": .int(Int64(guest.events.counter(domain: guest.domain, port: UInt32(truncatingIfNeeded: port))))]
        case "wait":
            guard let port = int(0), let seen = int(1), let ms = int(2) else { return usage("wait PORT SEEN MS") }
            let now = guest.events.wait(domain: guest.domain, port: UInt32(truncatingIfNeeded: port),
                                        seen: UInt32(truncatingIfNeeded: seen), timeoutNanoseconds: Int64(ms) * 1_000_000)
            return ["ok": true, "counter": .int(Int64(now)), "woken": .bool(now != UInt32(truncatingIfNeeded: seen))]
        case "state":
            guard let d = int(0) else { return usage("state DOMID") }
            let state = guest.events.state(of: DomainID(rawValue: UInt16(truncatingIfNeeded: d)))
            return ["ok": true, "state": .string("\(state)")]
        default:
            return usage("unknown command '\(command)'")
        }
    }

    /// The event-channel commands, through a handle of this process.
    static func eventChannel(_ command: String, _ args: [String], _ events: inout SimEventChannel?,
                             domain: String, options: GlobalOptions) -> JSONValue {
        func int(_ i: Int) -> UInt32? { args.count > i ? ArgumentValue.integer(args[i]).map { UInt32(truncatingIfNeeded: $0) } : nil }
        do {
            if events == nil {
                let path = options.stateDirectory.tokenPath(domain: domain)
                events = try SimEventChannel(stateDirectory: options.stateDirectory, token: SimGuest.readToken(path))
            }
            let handle = events!
            switch command {
            case "evtchn-bind-unbound":
                guard let remote = int(0) else { return usage("evtchn-bind-unbound REMOTE") }
                return ["ok": true, "port": .int(Int64(try handle.bindUnboundPort(remote: UInt16(truncatingIfNeeded: remote))))]
            case "evtchn-bind":
                guard let remote = int(0), let port = int(1) else { return usage("evtchn-bind REMOTE PORT") }
                let local = try handle.bindInterdomain(remote: UInt16(truncatingIfNeeded: remote), remotePort: port)
                return ["ok": true, "port": .int(Int64(local))]
            case "evtchn-notify":
                guard let port = int(0) else { return usage("evtchn-notify PORT") }
                try handle.notify(port)
                return ["ok": true]
            case "evtchn-unmask":
                guard let port = int(0) else { return usage("evtchn-unmask PORT") }
                try handle.unmask(port)
                return ["ok": true]
            case "evtchn-pending":
                return ["ok": true, "port": try handle.pending().map { .int(Int64($0)) } ?? .null]
            case "evtchn-wait":
                guard let ms = int(0) else { return usage("evtchn-wait MS") }
                return ["ok": true, "readable": .bool(handle.waitReadable(timeoutMilliseconds: Int32(ms)))]
            default:
                return usage("unknown command '\(command)'")
            }
        } catch let error as SimClientError {
            return ["ok": false, "errno": error.json["errno"] ?? .null, "error": .string(error.description)]
        } catch {
            return ["ok": false, "error": .string("\(error)")]
        }
    }

    static func faultName(_ fault: GuestMemoryFault) -> String {
        switch fault {
        case .virtualizationException: "ve"
        case .vmEvent: "vm_event"
        case .noMapping: "no_mapping"
        case .domainCrashed: "domain_crashed"
        case .vcpuPaused: "vcpu_paused"
        case .faultSwallowed: "fault_swallowed"
        case .outsidePage: "outside_page"
        case .simulatorUnavailable: "simulator_unavailable"
        }
    }

    static func usage(_ text: String) -> JSONValue { ["ok": false, "error": .string("usage: \(text)")] }

    static func reply(_ value: JSONValue) {
        let line = Array((value.serialized + "\n").utf8)
        _ = line.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
    }
}
