import Altp2m
import Altp2mGrant
import ArgumentParser
import Logging
import ServiceNotify
import Synchronization
import XenBackend
import XenInterface
#if canImport(Glibc)
import Glibc
#endif

/// Stop signals received (SIGTERM, SIGINT): the watch loop looks at the
/// count between bounded waits, so it unwatches and exits 0.
private let watchStopSignals = Atomic<Int>(0)

extension DomainCommand {
    /// `chanctl domain watch`: dom0's service that tears down the channels
    /// of dead domains on Xen (secure-channel-dom0.service).
    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tear down the channels of every domain that dies (Xen backends; runs until stopped).",
            discussion: """
                With --backend xen or xen-sim the grant module runs in chanctl's own \
                process, so nothing else notices a domain that crashes, shuts down or is \
                destroyed: its channels would stay (its peer waiting, its frames locked \
                out) until chanctl channel destroy. This command is what notices. At \
                start it sweeps once: every domain that carries a channel and is gone, \
                dying or shut down (any reason but suspend) has its channels torn down, \
                so deaths while it was not running are not missed. Then it watches \
                @releaseDomain in xenstore, which xenstored fires when a domain shuts \
                down or is released, and after each event checks every domain that \
                carries a channel again (one event may stand for several deaths). Each \
                teardown is one line on standard error (at info; --log-level picks \
                another level) and a channel.teardown record in the audit log (chanctl \
                audit show), and each peer sees peerDied.

                The grant state is opened for each sweep only, so chanctl channel \
                create and the other grant commands are not locked out between events; \
                a grant command that meets a sweep waits for it (--lock-wait, 10 s by \
                default), and a sweep that meets a command waits the same way and, if \
                the command outlasts that, is tried again a second later.

                As a Type=notify service (secure-channel-dom0.service) it sends READY=1 \
                once the watch is registered and the first sweep done, WATCHDOG=1 every \
                half of WatchdogSec=, and STOPPING=1 on SIGTERM or SIGINT, after which it \
                removes its watch and exits 0. It exits 1 if xenstore goes away.

                With --backend sim it is not needed: the simulator daemon runs the grant \
                module and tears down a dead domain's channels itself; it exits 2.
                """)

        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions

        func run() throws {
            guard backend.usesXenBackend else {
                throw CommandFailure.usage("with --backend sim the simulator daemon tears down a dead domain's channels itself; domain watch is for --backend xen (or xen-sim)")
            }
            let log = CommandLog.logger(level: options.logLevel ?? .info)
            let notifier: ServiceManagerNotifier?
            do { notifier = try ServiceManagerNotifier.fromEnvironment() } catch {
                throw CommandFailure.failure(error.description)
            }
            Self.installSignals()
            let control = try backend.openXenControl(options)
            let watcher = DeadDomainSweeper(control: control, directory: backend.grantDirectory(options),
                                            lockWaitMilliseconds: backend.lockWait * 1000, log: log)
            try DomainWatchLoop(store: control.storeLibrary, sweeper: watcher, notifier: notifier, log: log).run()
        }

        private static func installSignals() {
            // Touch the global first: its lazy initialisation must not run
            // for the first time inside a signal handler.
            _ = watchStopSignals.load(ordering: .relaxed)
            // A parent may have blocked them (test runners do): unblocked,
            // so SIGTERM always reaches the handler.
            var stops = sigset_t()
            sigemptyset(&stops)
            for signal in [SIGTERM, SIGINT] {
                sigaddset(&stops, signal)
                var action = sigaction()
                action.__sigaction_handler.sa_handler = { _ in _ = watchStopSignals.add(1, ordering: .relaxed) }
                sigemptyset(&action.sa_mask)
                // No SA_RESTART: poll returns EINTR and the loop sees the stop at once.
                action.sa_flags = 0
                sigaction(signal, &action, nil)
            }
            sigprocmask(SIG_UNBLOCK, &stops, nil)
        }
    }
}

/// The watch itself: `@releaseDomain` registered on the backend's xenstore
/// connection, one sweep at start, one after each batch of events, the
/// service manager told, every wait bounded.
struct DomainWatchLoop {
    let store: any XenStoreLibrary
    let sweeper: DeadDomainSweeper
    let notifier: ServiceManagerNotifier?
    let log: Logger
    /// The token names this process, so its events are told from any other
    /// watch on the same connection.
    let token = "chanctl-domain-watch-\(getpid())"
    /// A sweep that could not finish (the grant state busy past
    /// `--lock-wait`, the domain list unreadable) is tried again this often.
    static let retryMilliseconds: UInt64 = 1000

    func run() throws(CommandFailure) {
        do { try store.watch("@releaseDomain", token: token) } catch {
            throw .failure("cannot watch @releaseDomain in xenstore (xs_watch): \(error); chanctl domain watch needs dom0's xenstore (xenstored running, and root)")
        }
        log.info("watching @releaseDomain", metadata: ["token": "\(token)"])
        var retryAt: UInt64? = sweeper.sweep(after: "start") ? nil : Self.now() + Self.retryMilliseconds * 1_000_000
        tell("READY=1", "STATUS=watching @releaseDomain")
        var nextWatchdog: UInt64 = 0
        var failure: CommandFailure?
        while watchStopSignals.load(ordering: .relaxed) == 0 {
            if let interval = notifier?.watchdogInterval, Self.now() >= nextWatchdog {
                tell("WATCHDOG=1")
                nextWatchdog = Self.now() + UInt64(interval.components.seconds) * 1_000_000_000
                    + UInt64(interval.components.attoseconds / 1_000_000_000)
            }
            let fired: Bool
            do { fired = try waitForEvents(milliseconds: 200) } catch {
                failure = .failure("xenstore failed while watching @releaseDomain: \(error); restart chanctl domain watch once xenstored runs")
                break
            }
            if fired || retryAt.map({ Self.now() >= $0 }) == true {
                retryAt = sweeper.sweep(after: fired ? "@releaseDomain" : "retry")
                    ? nil : Self.now() + Self.retryMilliseconds * 1_000_000
            }
        }
        if failure == nil { tell("STOPPING=1", "STATUS=stopping") }
        do { try store.unwatch("@releaseDomain", token: token) } catch {
            log.warning("could not remove the @releaseDomain watch: \(error)")
        }
        if let failure {
            log.error("\(failure.text)")
            throw failure
        }
        log.info("stopped")
    }

    /// Waits up to `milliseconds` for the xenstore connection, then takes
    /// every event that waits: true when one of them is this watch's.
    /// Events are never counted: one may stand for several deaths, and
    /// several for one.
    private func waitForEvents(milliseconds: Int32) throws(XenErrno) -> Bool {
        var ready = pollfd(fd: store.fileDescriptor, events: Int16(POLLIN), revents: 0)
        let polled = poll(&ready, 1, milliseconds)
        guard polled > 0 else { return false }
        var fired = false
        var taken = 0
        // Bounded: a flood of events must not keep the loop from its keep-alive.
        while taken < 1024, let event = try store.checkWatch() {
            taken += 1
            if event.path == "@releaseDomain" && event.token == token { fired = true }
        }
        if taken == 0 && ready.revents & Int16(POLLHUP | POLLERR) != 0 { throw .notConnected }
        return fired
    }

    private func tell(_ lines: String...) {
        guard let notifier else { return }
        do { try notifier.notify(lines) } catch {
            log.warning("could not tell the service manager \(lines.joined(separator: " ")): \(error)")
        }
    }

    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}

/// One sweep: the grant state opened (waiting for another chanctl to let
/// go), every domain that carries a channel looked up in Xen's domain list,
/// the channels of each dead one torn down and audited, the state closed
/// again so other grant commands can run.
struct DeadDomainSweeper {
    let control: XenControl
    let directory: String
    let lockWaitMilliseconds: Int
    let log: Logger

    /// True when every dead domain was dealt with; false when the sweep
    /// must be tried again.
    func sweep(after cause: String) -> Bool {
        let grants: GrantModule
        do {
            grants = try GrantModule(host: control, stateDirectory: directory, lockWaitMilliseconds: lockWaitMilliseconds)
        } catch {
            log.error("sweep after \(cause) postponed: \(error)")
            return false
        }
        let known = grants.domainsWithChannels
        guard !known.isEmpty else { return true }
        let dead: [DomainID: DomainDeath]
        do { dead = try control.deadDomains(among: known.keys) } catch {
            log.error("sweep after \(cause) postponed: cannot list Xen domains (xc_domain_getinfolist): \(error)")
            return false
        }
        var complete = true
        for (domain, death) in dead.sorted(by: { $0.key < $1.key }) {
            let who = "\(known[domain] ?? "?") (\(domain))"
            do {
                for teardown in try grants.domainDied(domain) {
                    log.info("tore down channel \(teardown.name): \(who) is \(death)",
                             metadata: ["channel": "\(teardown.name)", "domain": "\(who)", "cause": "\(cause)",
                                        "problems": "\(teardown.problems.count)"])
                    for problem in teardown.problems { log.warning("\(teardown.name): \(problem)") }
                    for note in teardown.notes { log.notice("\(teardown.name): \(note)") }
                }
            } catch {
                log.error("tearing down the channels of \(who), which is \(death): \(error)")
                complete = false
            }
            if let problem = grants.lastAuditFailure {
                log.warning("the teardown of \(who)'s channels was done, but its audit record is missing: \(problem)")
            }
        }
        return complete
    }
}
