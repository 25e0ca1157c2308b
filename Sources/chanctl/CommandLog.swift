import ArgumentParser
import LineLog
import Logging

/// `--log-level`: swift-log's levels, by their names.
extension Logger.Level: @retroactive ExpressibleByArgument {}

/// chanctl's log: one line per event on standard error (swift-log through
/// `LineLogHandler`), only when `--log-level` asks for it, so a command's output
/// and its error message stay as they are by default.
enum CommandLog {
    nonisolated(unsafe) private static var bootstrapped = false

    /// A logger at `level`, or one that logs nothing when `level` is nil.
    static func logger(level: Logger.Level?) -> Logger {
        guard let level else { return Logger(label: "chanctl", factory: { _ in SwiftLogNoOpLogHandler() }) }
        if !bootstrapped {
            bootstrapped = true
            LineLogHandler.bootstrap()
        }
        var logger = Logger(label: "chanctl")
        logger.logLevel = level
        return logger
    }
}
