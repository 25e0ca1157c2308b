import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Stop signals received (SIGTERM, SIGINT, and SIGHUP where it means stop).
/// A counter, not a flag: `run` treats a second one as "exit now".
private let stopSignalCount = Atomic<Int>(0)
/// SIGHUPs received where SIGHUP means "re-read the configuration".
private let hangupSignalCount = Atomic<Int>(0)
/// SIGUSR1s received: "write the statistics snapshots now".
private let statsSignalCount = Atomic<Int>(0)

/// Signal handling shared by the commands that hold a channel open.
///
/// A signal only bumps a counter: the threads that own channels look at it
/// between bounded waits, close their channel politely and detach. The
/// default action (the process dies) would leave without a close frame:
/// the domain keeps running, but the peers see `peerDied` instead of a
/// polite close.
enum AgentSignals {
    /// How many stop signals arrived so far.
    static var stopCount: Int { stopSignalCount.load(ordering: .relaxed) }

    static var stopRequested: Bool { stopCount > 0 }

    /// How many reload (SIGHUP) signals arrived so far.
    static var hangupCount: Int { hangupSignalCount.load(ordering: .relaxed) }

    /// How many statistics requests (SIGUSR1) arrived so far.
    static var statsRequestCount: Int { statsSignalCount.load(ordering: .relaxed) }

    /// SIGTERM and SIGINT request a stop; SIGUSR1 asks for the statistics
    /// snapshots at once; SIGHUP too, unless `hangupReloads`,
    /// in which case it counts as a reload request instead.
    static func install(hangupReloads: Bool) {
        // Touch both globals first: their lazy initialisation must not run
        // for the first time inside a signal handler.
        _ = stopSignalCount.load(ordering: .relaxed)
        _ = hangupSignalCount.load(ordering: .relaxed)
        _ = statsSignalCount.load(ordering: .relaxed)
        handle(SIGUSR1) { _ in _ = statsSignalCount.add(1, ordering: .relaxed) }
        for signal in [SIGTERM, SIGINT] { handle(signal) { _ in _ = stopSignalCount.add(1, ordering: .relaxed) } }
        if hangupReloads {
            handle(SIGHUP) { _ in _ = hangupSignalCount.add(1, ordering: .relaxed) }
        } else {
            handle(SIGHUP) { _ in _ = stopSignalCount.add(1, ordering: .relaxed) }
        }
    }

    private static func handle(_ signal: Int32, _ handler: @convention(c) (Int32) -> Void) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        sigemptyset(&action.sa_mask)
        // No SA_RESTART: a blocking poll or accept returns EINTR and the
        // loop around it looks at the counters at once.
        action.sa_flags = 0
        sigaction(signal, &action, nil)
    }
}
