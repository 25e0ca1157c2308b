import AgentServices
import Altp2m
import ArgumentParser
import ChannelCrypto
import Foundation
import Logging
import Altp2mSim
import SecureChannel
import Synchronization

/// `guest-agent run`: serves every channel published for the domain, each
/// with the service its `--services` rule names (echo by default).
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve every channel published for this domain (echo, or a per-channel service; one thread per channel).",
        discussion: """
            Polls the descriptors published for the domain, opens each new channel on a \
            thread of its own (attached as its own vCPU) and serves it: echo (every \
            message is sent back) unless --services names another service. A peer that \
            goes away (closes, dies, or the channel is destroyed) is logged and its \
            channel dropped.

            --services FILE: one rule per line, PATTERN SERVICE [ARGUMENT]. PATTERN is a \
            channel name or a glob (* any characters, ? one); the first matching rule \
            wins; a channel no rule matches is served with echo. '#' at the start of a \
            word starts a comment. Services: echo; sink (read and discard, log the \
            message and byte counts when the peer closes); forward-unix PATH (serve the \
            connections a peer's forward --listen opens, connecting to the Unix stream \
            socket at the absolute PATH for each, like forward --connect unix:PATH); \
            forward-tcp HOST:PORT (the same over TCP, like forward --connect tcp:HOST:PORT); refuse (never open the \
            channel; logged once). Example:
              orders-*   forward-unix /run/orders.sock
              web-*      forward-tcp 127.0.0.1:8080
              metrics    sink
              legacy-*   refuse
              *          echo

            The whole file is checked before the agent attaches: bad content exits 2 with \
            FILE:LINE and the problem, an unreadable file exits 1. SIGHUP re-reads it: \
            channels opened afterwards (and channels refused so far) follow the new rules; \
            a file that no longer checks out is logged and the old rules stay.

            The configuration file (see guest-agent help) may hold services, wait, \
            poll-ms and handshake-timeout besides the agent's keys; it is read once at \
            start (restart the agent after changing it): SIGHUP re-reads only the \
            services file.

            SIGTERM or SIGINT: every open channel is closed politely (the peers see the \
            close, not a dead peer), the agent detaches and exits 0, within about a second. \
            A channel still in its handshake is waited for (at most --handshake-timeout); \
            a second signal exits at once: the domain keeps running, and the peers see \
            peerDied instead of a polite close.

            Statistics: each channel's counters go to STATE/agent-stats-DOMAIN/CHANNEL.json \
            every second (a forward-unix channel's while it is idle), when a session ends, and \
            at once on SIGUSR1; guest-agent stats prints them.

            Under a service manager ($NOTIFY_SOCKET set, as by a Type=notify systemd unit \
            such as secure-channel-agent.service): READY=1 once the agent has attached \
            and every channel published at its start has finished its handshake (or \
            failed it); WATCHDOG=1 every half of $WATCHDOG_USEC; STOPPING=1 on SIGTERM.
            """)

    @OptionGroup var arguments: AgentArguments
    @OptionGroup var runArguments: RunArguments

    func run() throws {
        // Everything that can be wrong with the arguments fails before the
        // agent attaches: the configuration file, the services file, then the keys.
        let (agent, settings) = try RunArguments.resolve(arguments, runArguments)
        let wait = settings.wait, pollMilliseconds = settings.pollMilliseconds, servicesFile = settings.servicesFile
        var services = ServiceConfig.echoEverywhere
        if let servicesFile { services = try ServiceConfig.load(servicesFile) }
        let log = agent.logger("guest-agent.run")
        let agentKey = try agent.agentKey()
        let hostKey = try agent.hostPublicKey()
        AgentSignals.install(hangupReloads: true)
        let readiness = try ServiceReadiness(log: log)
        let watcher = try agent.platform(vcpu: 0)
        let vcpuCount = (watcher as? SimPlatformInfo)?.vcpuCount ?? 1
        log.info("agent running", metadata: ["config": "\(agent.settings.config.file?.file ?? "none")","wait": "\(wait.rawValue)", "vcpus": "\(vcpuCount)",
                                             "enforcement": "\((watcher as? SimPlatformInfo)?.enforcementName ?? "hardware")",
                                             "services": "\(servicesFile.map { "\($0) (\(services.rules.count) rules)" } ?? "echo on every channel")"])

        try agent.startFrameFlow(log: log)

        let served = ServedTable()
        var nextVCPU: UInt32 = 0
        var failingSince: UInt64? = nil
        var hangupsSeen = 0
        while !AgentSignals.stopRequested {
            let hangups = AgentSignals.hangupCount
            if hangups != hangupsSeen {
                hangupsSeen = hangups
                services = reload(services, from: servicesFile, served: served, log: log)
            }
            let names: [String]
            do {
                names = try watcher.descriptorNames()
                failingSince = nil
            } catch {
                let now = monotonicNanoseconds()
                if failingSince == nil { failingSince = now; log.warning("cannot list descriptors: \(error)") }
                if now - failingSince! > 3_000_000_000 {
                    throw AgentFailure.failure("lost the hypervisor: \(error); restart the agent once the simulator (chanctl sim start) or Xen is back")
                }
                usleep(UInt32(pollMilliseconds) * 1000)
                continue
            }
            var toStart: [(String, [UInt8])] = []
            let current = served.table.withLock { $0 }
            for name in names {
                if let entry = current[name], entry.phase.isRunning { continue }
                guard let envelope = try? watcher.readDescriptor(named: name) else { continue }
                if let entry = current[name], entry.envelope == envelope { continue }  // done with this descriptor
                toStart.append((name, envelope))
            }
            readiness.listed(started: toStart.map(\.0))
            var jobs: [ChannelJob] = []
            var refused: [(String, String?)] = []
            for (name, envelope) in toStart {
                let (service, rule) = services.service(for: name)
                if service == .refuse {
                    refused.append((name, rule))
                    continue
                }
                let vcpu = nextVCPU % UInt32(max(1, vcpuCount))
                nextVCPU &+= 1
                jobs.append(ChannelJob(name: name, envelope: envelope, spec: agent.spec, agentKey: agentKey, hostKey: hostKey,
                                       vcpu: vcpu, wait: wait.strategy, handshakeTimeout: settings.handshakeTimeout, log: log,
                                       service: service, rule: rule,
                                       stats: ChannelStatsDirectory(stateDirectory: agent.resolvedStateDir, domain: agent.domain),
                                       domain: agent.domain,
                                       opened: { served.table.withLock { $0[name]?.phase = .serving } },
                                       reopened: { open in served.table.withLock { $0[name]?.phase = open ? .serving : .reopening } }))
            }
            served.table.withLock { table in
                for name in table.keys where !names.contains(name) && !table[name]!.phase.isRunning { table[name] = nil }
                for (name, envelope) in toStart {
                    let isRefused = refused.contains { $0.0 == name }
                    table[name] = Served(envelope: envelope, phase: isRefused ? .refused : .opening)
                }
            }
            for (name, rule) in refused {
                // Logged once per descriptor: the entry keeps it from coming back.
                log.notice("refused by \(rule ?? "rule"): the channel is not opened", metadata: ["channel": "\(name)"])
            }
            for job in jobs {
                let name = job.name
                log.debug("starting a thread for the channel", metadata: ["channel": "\(name)", "vcpu": "\(job.vcpu)",
                                                                         "service": "\(job.service)"])
                let thread = Thread {
                    job.serve()
                    served.table.withLock { $0[name]?.phase = .finished }
                }
                thread.name = "serve-\(name)"
                thread.start()
            }
            let table = served.table.withLock { $0 }
            readiness.turn(now: monotonicNanoseconds()) { table[$0]?.phase }
            // A signal cuts the sleep short (the handlers do not restart it).
            usleep(readiness.sleepMicroseconds(upTo: UInt32(pollMilliseconds) * 1000, now: monotonicNanoseconds()))
        }
        readiness.stopping()
        try shutDown(served, handshakeTimeout: settings.handshakeTimeout, log: log)
        _ = watcher  // detaches last, once every channel thread has
    }

    /// SIGHUP: the new rules, or the old ones if the file no longer checks out.
    private func reload(_ old: ServiceConfig, from servicesFile: String?, served: ServedTable, log: Logger) -> ServiceConfig {
        guard let servicesFile else {
            log.notice("SIGHUP: no --services file to re-read; still echoing on every channel")
            return old
        }
        do {
            let new = try ServiceConfig.load(servicesFile)
            // Refused channels were never opened: give them to the new rules.
            served.table.withLock { table in
                for (name, entry) in table where entry.phase == .refused { table[name] = nil }
            }
            log.notice("SIGHUP: re-read \(servicesFile) (\(new.rules.count) rules); new channels follow them")
            return new
        } catch {
            log.error("SIGHUP: \(error.description); keeping the previous rules")
            return old
        }
    }

    /// After a stop signal: waits for every channel thread to close its
    /// channel and detach. Serving threads notice within a turn; a thread
    /// still in its handshake cannot be interrupted and is waited for up to
    /// the handshake timeout. Exiting with a thread still attached would
    /// crash the domain, so only a second signal (or a thread that overruns
    /// its bound) ends the wait early.
    private func shutDown(_ served: ServedTable, handshakeTimeout: Double, log: Logger) throws(AgentFailure) {
        let running = served.table.withLock { $0.filter(\.value.phase.isRunning).count }
        log.info("stopping: closing \(running) open channel(s)")
        let start = monotonicNanoseconds()
        let servingBound: UInt64 = 3_000_000_000
        let openingBound = UInt64((handshakeTimeout + 1) * 1e9)
        var toldAboutHandshakes = false
        while true {
            let table = served.table.withLock { $0 }
            let serving = table.filter { $0.value.phase == .serving }.keys.sorted()
            let opening = table.filter { $0.value.phase == .opening || $0.value.phase == .reopening }.keys.sorted()
            if serving.isEmpty && opening.isEmpty { break }
            let elapsed = monotonicNanoseconds() - start
            if AgentSignals.stopCount > 1 || (elapsed > servingBound && !serving.isEmpty) || elapsed > openingBound {
                let left = (serving + opening).joined(separator: ", ")
                throw .failure("stopped without closing \(left): \(AgentSignals.stopCount > 1 ? "a second signal" : "they did not finish in time"); their vCPUs are still attached, so the simulator crashes the domain")
            }
            if !opening.isEmpty, serving.isEmpty, !toldAboutHandshakes, elapsed > 500_000_000 {
                toldAboutHandshakes = true
                log.notice("stopping: waiting for \(opening.joined(separator: ", ")) to finish the handshake (at most \(Int(handshakeTimeout)) s); a second signal exits at once")
            }
            usleep(10_000)
        }
        log.info("stopped: every channel closed", metadata: ["seconds": "\(String(format1: Double(monotonicNanoseconds() - start) / 1e9))"])
    }
}

enum ServedPhase: Sendable, Equatable {
    /// A thread is attaching and opening the channel (handshake).
    case opening
    /// The channel is open and its service runs.
    case serving
    /// A session ended (the peer restarted or closed, or a re-issue) and the
    /// thread is opening the channel again: it has been open before, so
    /// readiness does not wait for it.
    case reopening
    /// The thread ended (the peer went away, or it failed to open).
    case finished
    /// A `refuse` rule matched: never opened.
    case refused

    var isRunning: Bool { self == .opening || self == .serving || self == .reopening }
}

struct Served: Sendable {
    var envelope: [UInt8]
    var phase: ServedPhase
}

/// The channels being (or done being) served, by name.
final class ServedTable: Sendable {
    let table = Mutex<[String: Served]>([:])
}

/// What the simulator platform can tell about its domain and itself.
protocol SimPlatformInfo {
    var vcpuCount: Int { get }
    /// How the window is policed in this process, as attached (software or mprotect).
    var enforcementName: String { get }
}

extension SimGuestPlatform: SimPlatformInfo {
    var vcpuCount: Int { guest.vcpuCount }
    var enforcementName: String { enforcement.rawValue }
}


