import ArgumentParser
import Logging

/// `--log-level trace|debug|info|notice|warning|error|critical`: swift-log's
/// levels, by their names.
extension Logger.Level: @retroactive ExpressibleByArgument {}
