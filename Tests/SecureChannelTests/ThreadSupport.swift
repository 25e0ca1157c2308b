import Foundation
import Testing

/// Runs `body` on a dedicated OS thread.
///
/// Channel endpoints spin and block like the vCPUs they stand for, so tests
/// must not run them on Swift concurrency's cooperative pool (two threads on
/// a two-core machine): a spinning side would starve its peer.
final class ThreadResult<T>: @unchecked Sendable {
    // @unchecked: `result` is written once by the worker before `done` is
    // signalled and read only after waiting on it.
    fileprivate let done = DispatchSemaphore(value: 0)
    fileprivate var result: Result<T, any Error>?

    init(_ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            result = Result { try body() }
            done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Waits for the thread and returns its value or rethrows its error.
    func value() throws -> T {
        done.wait()
        return try result!.get()
    }
}

extension ThreadResult {
    /// Waits for the thread at most `limit`; past it, the test fails by
    /// name (the stuck thread is left behind: it keeps what it uses alive,
    /// and the suite goes on instead of stalling behind it).
    func value(within limit: Duration, _ what: @autoclosure () -> String,
               sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
        guard waitForResult(limit) else {
            throw Watchdog.hang(what(), limit: limit, sourceLocation: sourceLocation)
        }
        // (The wait took the semaphore's one signal: read the result directly.)
        return try result!.get()
    }

    private func waitForResult(_ limit: Duration) -> Bool {
        let (s, a) = limit.components
        let nanoseconds = Int(s) * 1_000_000_000 + Int(a / 1_000_000_000)
        return done.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success
    }
}

/// Hang checks: a call that should return within its deadline runs under
/// a limit (its deadline plus a margin), and overrunning it fails the run
/// at that moment instead of stalling the suite.
enum Watchdog {
    /// Runs `body` on a thread of its own and returns its value, failing
    /// the run if it takes longer than `limit`.
    static func run<T>(_ what: @autoclosure () -> String, limit: Duration,
                       sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: @escaping @Sendable () throws -> T) throws -> T {
        try ThreadResult(body).value(within: limit, what(), sourceLocation: sourceLocation)
    }

    /// Records the hang as a failure of the running test, at the caller's
    /// line, and returns the error that ends the test.
    static func hang(_ what: String, limit: Duration, sourceLocation: SourceLocation) -> Hang {
        let message = "HANG: \(what) did not return within \(limit)"
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        FileHandle.standardError.write(Data((message + " (\(sourceLocation))\n").utf8))
        return Hang(description: message)
    }

    /// A call that did not return in time.
    struct Hang: Error, CustomStringConvertible {
        let description: String
    }
}
