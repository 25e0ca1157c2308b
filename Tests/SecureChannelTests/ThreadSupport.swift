import Foundation

/// Runs `body` on a dedicated OS thread.
///
/// Channel endpoints spin and block like the vCPUs they stand for, so tests
/// must not run them on Swift concurrency's cooperative pool (two threads on
/// a two-core machine): a spinning side would starve its peer.
final class ThreadResult<T>: @unchecked Sendable {
    // @unchecked: `result` is written once by the worker before `done` is
    // signalled and read only after waiting on it.
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, any Error>?

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
