import Foundation
import Testing

/// A wait in a test that ran out of time. Every wait in these tests has a
/// limit: a check that stops working must fail the test by name, not leave
/// a loop waiting for a message that never comes until the runner is killed.
struct DeadlineExceeded: Error, CustomStringConvertible {
    var what: String
    var limit: Duration
    var description: String { "\(what) did not finish within \(limit)" }
}

extension Duration {
    /// For the Dispatch and Foundation calls that take seconds.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Runs `body` in a task and waits for it at most `limit`. Past the limit it
/// fails the test naming `what`, cancels the task (a loop over
/// `messages` stops within a second), and throws ``DeadlineExceeded``
/// without waiting for `body` to notice.
func within<T: Sendable>(_ limit: Duration, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    do {
        return try await withCheckedThrowingContinuation { continuation in
            let race = Race(continuation)
            // Created here, the task inherits the test's context, so its
            // expectations count for this test.
            let task = Task {
                do { race.finish(.success(try await body())) } catch { race.finish(.failure(error)) }
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + limit.seconds) {
                if race.finish(.failure(DeadlineExceeded(what: what, limit: limit))) { task.cancel() }
            }
        }
    } catch let error as DeadlineExceeded where error.what == what {
        Issue.record("\(error)", sourceLocation: sourceLocation)
        throw error
    }
}

/// Resumes a continuation once: with the body's result or the deadline's
/// error, whichever comes first.
private final class Race<T: Sendable>: @unchecked Sendable {
    // @unchecked: `continuation` is only touched under `lock`.
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?

    init(_ continuation: CheckedContinuation<T, any Error>) { self.continuation = continuation }

    /// Whether this call was the first (and resumed the waiter).
    @discardableResult
    func finish(_ result: Result<T, any Error>) -> Bool {
        let waiting: CheckedContinuation<T, any Error>? = lock.withLock {
            defer { continuation = nil }
            return continuation
        }
        waiting?.resume(with: result)
        return waiting != nil
    }
}
