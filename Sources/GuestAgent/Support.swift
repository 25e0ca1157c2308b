import AgentPlatform
import AgentReplayGuard
import Altp2m
import Altp2mSim
import ArgumentParser
import ChannelCrypto
import Foundation
import LineLog
import Logging
import SecureChannel
import XenGuest
#if canImport(Glibc)
import Glibc
#endif

/// A failure with its exit code (1 failure, 2 usage) and a message that names
/// the problem and the fix.
struct AgentFailure: Error, CustomStringConvertible {
    static let usageExitCode: Int32 = 2
    var exitCode: Int32
    var description: String

    static func failure(_ message: String) -> AgentFailure { AgentFailure(exitCode: 1, description: message) }
    static func usage(_ message: String) -> AgentFailure { AgentFailure(exitCode: usageExitCode, description: message) }

    func report(json: Bool) {
        if json {
            print(jsonObject(["ok": .bool(false), "error": .string(description)]))
        } else {
            writeStandardError("guest-agent: \(description)\n")
        }
    }
}

func writeStandardError(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

// MARK: JSON output (flat objects only)

enum JSONField {
    case string(String)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case bool(Bool)
    case object([(String, JSONField)])
    case array([JSONField])

    var serialized: String {
        switch self {
        case .string(let s): return JSONValue.quoted(s)
        case .int(let v): return String(v)
        case .uint(let v): return String(v)
        case .double(let v): return v.isFinite ? String(v) : "null"
        case .bool(let b): return b ? "true" : "false"
        case .object(let fields): return jsonObject(fields)
        case .array(let items): return "[" + items.map(\.serialized).joined(separator: ",") + "]"
        }
    }
}

/// One JSON object, keys in the given order.
func jsonObject(_ fields: [(String, JSONField)]) -> String {
    "{" + fields.map { JSONValue.quoted($0.0) + ":" + $0.1.serialized }.joined(separator: ",") + "}"
}

func jsonObject(_ fields: KeyValuePairs<String, JSONField>) -> String {
    jsonObject(fields.map { ($0.key, $0.value) })
}

// MARK: Options shared by run, ping and cat

enum WaitArgument: String, ExpressibleByArgument, CaseIterable, Sendable {
    case spin, block, adaptive

    var strategy: WaitStrategy {
        switch self {
        case .spin: .spin
        case .block: .block
        case .adaptive: .adaptive
        }
    }
}

extension GuestBackend: ExpressibleByArgument {}

/// How the simulator polices this process's access to channel windows.
enum EnforcementArgument: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// The window is plain shared memory; staying out of it outside the
    /// channel view is the library's contract.
    case software
    /// The window is the guest-physical window, mapped only while the vCPU
    /// is in the channel view: a stray access is a SIGSEGV.
    case mprotect

    var simulator: SimGuest.Enforcement {
        switch self {
        case .software: .software
        case .mprotect: .mprotect
        }
    }
}

/// Who the agent is: its domain, its key, the pinned host key, the backend;
/// resolved from the command line, the configuration file and the defaults
/// (``AgentArguments``), so every command uses the same values.
struct AgentOptions {
    let domain: String
    let key: String
    let hostKey: String
    let backend: GuestBackend
    let stateDir: String?
    /// Nil unless given (on the command line or in the file): Xen refuses one.
    let enforcement: EnforcementArgument?
    let logLevel: Logger.Level
    /// Where each value came from, for messages about values not typed.
    let settings: ResolvedSettings

    init(_ settings: ResolvedSettings) throws(AgentFailure) {
        self.settings = settings
        domain = try settings.required("domain", valueName: "domain")
        key = try settings.required("key", valueName: "file")
        hostKey = try settings.required("host-key", valueName: "hex")
        backend = try settings.typed("backend") ?? .sim
        stateDir = settings.value("state-dir")
        enforcement = settings.source("enforcement") == .defaultValue ? nil : try settings.typed("enforcement")
        logLevel = try settings.typed("log-level") ?? .info
        guard hostKey.count == 64, hostKey.allSatisfy(\.isHexDigit) else {
            throw .usage("bad --host-key '\(hostKey)'\(settings.origin("host-key")): expected 64 hex digits (the public_key printed by chanctl keys show)")
        }
        if backend == .xen, let enforcement {
            throw .usage("--enforcement \(enforcement.rawValue)\(settings.origin("enforcement")) applies to the simulator only, and the backend is xen\(settings.origin("backend")): on Xen the EPT enforces the views; drop enforcement or use backend sim")
        }
    }

    /// The pinned host key.
    func hostPublicKey() throws(AgentFailure) -> Curve25519.Signing.PublicKey {
        do {
            return try Curve25519.Signing.PublicKey(hex: hostKey)
        } catch {
            throw .usage("bad --host-key\(settings.origin("host-key")): \(error); pass the public_key printed by chanctl keys show")
        }
    }

    /// This agent's key pair.
    func agentKey() throws(AgentFailure) -> Curve25519.KeyAgreement.PrivateKey {
        do {
            return try Curve25519.KeyAgreement.PrivateKey(keyFile: key)
        } catch {
            if access(key, F_OK) != 0 {
                throw .failure("no key file at \(key)\(settings.origin("key")); create one with: guest-agent keygen --out \(key), then register it with: chanctl keys register \(domain) <public key>")
            }
            throw .failure("cannot read the agent key \(key): \(error); make a new one with: guest-agent keygen --out FILE")
        }
    }

    func logger(_ label: String) -> Logger {
        bootstrapLogging()
        var logger = Logger(label: label)
        logger.logLevel = logLevel
        logger[metadataKey: "domain"] = "\(domain)"
        return logger
    }

    /// On the Xen backends, answers the host's frame-flow requests on a
    /// thread of its own (docs/XEN.md, "The frame flow"), woken by its
    /// xenstore watch, until a stop signal; each answer is logged. Every
    /// command that waits for a channel starts it, so the host can create
    /// the channel while the agent waits.
    func startFrameFlow(log: Logger) throws(AgentFailure) {
        let made: XenFrameFlowAgent?
        do { made = try backend.frameFlowAgent(domain: domain, stateDirectory: resolvedStateDir) } catch {
            throw .failure(error.description)
        }
        guard let made else { return }
        let flow = HandedOver(made)
        let thread = Thread {
            while !AgentSignals.stopRequested {
                do {
                    for event in try flow.value.serve(timeoutMilliseconds: 250) {
                        if case .failed(let peer, let reason) = event {
                            log.error("frame flow with \(peer) failed: \(reason)")
                        } else {
                            log.info("frame flow: \(event)")
                        }
                    }
                } catch {
                    log.warning("frame flow: \(error)")
                    usleep(250_000)
                }
            }
        }
        thread.name = "frame-flow"
        thread.start()
    }

    /// Attaches as (one vCPU of) the domain.
    func platform(vcpu: UInt32 = 0) throws(AgentFailure) -> GuestPlatform {
        try spec.platform(vcpu: vcpu)
    }

    var spec: PlatformSpec {
        PlatformSpec(backend: backend, domain: domain, stateDir: resolvedStateDir, enforcement: (enforcement ?? .software).simulator,
                     origin: settings.source("domain").map { if case .file = $0 { $0.description } else { "" } } ?? "")
    }

    /// On the simulator, the state directory chosen now (a user's temporary
    /// default is said on standard error once); on Xen, `--state-dir` as given.
    var resolvedStateDir: String? {
        backend.isSimulated ? StateDirectory.resolveForTool(explicit: stateDir, tool: "guest-agent").path : stateDir
    }
}

/// How to attach: plain values, so a channel thread can attach on its own.
struct PlatformSpec: Sendable {
    let backend: GuestBackend
    let domain: String
    let stateDir: String?
    let enforcement: SimGuest.Enforcement
    /// "FILE:LINE" when the domain came from the configuration file.
    var origin = ""

    func platform(vcpu: UInt32 = 0) throws(AgentFailure) -> GuestPlatform {
        do {
            return try backend.attach(domain: domain, stateDirectory: stateDir, vcpu: vcpu, enforcement: enforcement,
                                      option: "--backend")
        } catch {
            // Said when the domain is the file's, so a stale file is found.
            throw .failure(error.description + (origin.isEmpty ? "" : "; the domain '\(domain)' is from \(origin) (--domain overrides it)"))
        }
    }
}

nonisolated(unsafe) private var loggingBootstrapped = false

/// Logs go to standard error, one line per event (the journal's format
/// under systemd): `LineLogHandler`, shared with chanctl and the simulator.
func bootstrapLogging() {
    if loggingBootstrapped { return }
    loggingBootstrapped = true
    LineLogHandler.bootstrap()
}

/// Waits (polling) until a descriptor named `name` is published for this
/// domain; nil after `timeout` seconds.
func waitForDescriptor(_ name: String, platform: GuestPlatform, timeout: Double) throws(AgentFailure) -> [UInt8]? {
    let deadline = monotonicNanoseconds() + UInt64(max(0, timeout) * 1e9)
    while true {
        do {
            return try platform.readDescriptor(named: name)
        } catch .noDescriptor {
            // not yet
        } catch {
            throw .failure("cannot read descriptor \(name): \(error)")
        }
        if monotonicNanoseconds() >= deadline { return nil }
        usleep(20_000)
    }
}

func unknownChannel(_ name: String, domain: String, platform: GuestPlatform) -> AgentFailure {
    let names = (try? platform.descriptorNames()) ?? []
    let published = names.isEmpty ? "none" : names.sorted().joined(separator: ", ")
    return .failure("no channel named '\(name)' is published for domain \(domain) (published: \(published)); create it with chanctl channel create \(name) --between \(domain) PEER")
}

/// Opens the channel `name`, waiting up to `timeout` seconds for its descriptor.
func openChannel(_ name: String, options: AgentOptions, platform: GuestPlatform, wait: WaitStrategy,
                 timeout: Double) throws(AgentFailure) -> SecureChannel {
    let hostKey = try options.hostPublicKey()
    let agentKey = try options.agentKey()
    guard let envelope = try waitForDescriptor(name, platform: platform, timeout: timeout) else {
        throw unknownChannel(name, domain: options.domain, platform: platform)
    }
    let opened: OpenedDescriptor
    switch try acceptDescriptor(envelope, named: name, agentKey: agentKey, hostKey: hostKey, platform: platform,
                                spec: options.spec) {
    case .success(let descriptor): opened = descriptor
    case .failure(let refusal): throw .failure("cannot open channel \(name): \(refusalMessage(refusal))")
    }
    do {
        return try SecureChannel.open(opened, platform: platform,
                                      options: .init(wait: wait, handshakeTimeout: .seconds(max(1, timeout))))
    } catch {
        throw .failure("cannot open channel \(name): \(error)\(fixHint(error))")
    }
}

/// Checks the envelope stored as `name` and records it in the domain's
/// replay guard (the file every agent process of the domain shares); the
/// handshake comes after, without the guard's lock.
/// - Returns: the opened descriptor, or why it was refused.
/// - Throws: when the guard file cannot be used.
func acceptDescriptor(_ envelope: [UInt8], named name: String, agentKey: Curve25519.KeyAgreement.PrivateKey,
                      hostKey: Curve25519.Signing.PublicKey, platform: GuestPlatform,
                      spec: PlatformSpec) throws(AgentFailure) -> Result<OpenedDescriptor, DescriptorError> {
    let file = ReplayGuardFile(directory: ReplayGuardFile.directory(onSimulator: spec.backend.isSimulated, stateDir: spec.stateDir),
                               domain: platform.domain)
    do {
        return try file.open(envelope, named: name,
                             with: DescriptorOpener(hostKey: hostKey, agentKey: agentKey, domain: platform.domain))
    } catch {
        throw .failure(error.description)
    }
}

/// Why a descriptor was refused, with what it likely means and the fix.
func refusalMessage(_ refusal: DescriptorError) -> String {
    let hint: String
    switch refusal {
    case .badSignature:
        // A signature that does not verify is either the wrong pinned key or
        // an envelope altered on its way from dom0; only the second is an attack.
        hint = "; the envelope was altered between dom0 and this agent (its storage or transport) or --host-key is not this host's key (compare with chanctl keys show); do not use this channel: destroy and re-create it"
    case .nameMismatch, .replayed, .expired:
        hint = ""  // the description says what happened and what to do
    case .notForThisKey, .malformed, .wrongRecipient, .unsupportedVersion:
        hint = "; check that --key is the key registered for this domain (chanctl keys register) and --host-key is chanctl keys show's public_key"
    }
    return "descriptor rejected: \(refusal)\(hint)"
}

extension DescriptorError {
    /// A short name of the check that failed, for logs to be searched by.
    var kind: String {
        switch self {
        case .badSignature: "bad_signature"
        case .notForThisKey: "not_for_this_key"
        case .malformed: "malformed"
        case .wrongRecipient: "wrong_recipient"
        case .nameMismatch: "name_mismatch"
        case .expired: "expired"
        case .replayed: "replayed"
        case .unsupportedVersion: "unsupported_version"
        }
    }
}

func fixHint(_ error: ChannelError) -> String {
    switch error {
    case .timeout:
        return "; the peer agent did not open its end: start guest-agent run in the peer domain"
    case .authenticationFailed:
        return "; the peer holds other keys: re-register its key and recreate the channel"
    default:
        return ""
    }
}

@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A time in nanoseconds as "812 ns", "12.3 us", "4.56 ms".
func formatNanoseconds(_ ns: UInt64) -> String {
    let v = Double(ns)
    if ns < 1_000 { return "\(ns) ns" }
    if ns < 1_000_000 { return String(format1: v / 1e3) + " us" }
    if ns < 1_000_000_000 { return String(format1: v / 1e6) + " ms" }
    return String(format1: v / 1e9) + " s"
}

extension String {
    /// A number with up to 3 significant digits after scaling (no Foundation).
    init(format1 value: Double) {
        let digits = value >= 100 ? 0 : value >= 10 ? 1 : 2
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = String(rounded)
        if digits == 0, text.hasSuffix(".0") { text.removeLast(2) }
        self = text
    }
}

/// A value made on one thread and from then on used only by the thread it
/// is handed to.
struct HandedOver<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
