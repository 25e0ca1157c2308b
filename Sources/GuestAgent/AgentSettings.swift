import AgentServices
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// Where a setting's value came from.
enum SettingSource: Equatable, CustomStringConvertible {
    case commandLine
    case file(path: String, line: Int)
    case defaultValue

    var description: String {
        switch self {
        case .commandLine: "command line"
        case .file(let path, let line): "\(path):\(line)"
        case .defaultValue: "default"
        }
    }
}

/// The configuration file as this process uses it: the file read, or none
/// and why (said when a required option is missing).
struct LoadedConfig {
    var file: AgentConfigFile?
    var note: String

    /// `--config FILE`, `--config none`, `--no-config`, or the default file
    /// if it exists. A file given explicitly must exist; a bad or unsafe file
    /// is refused wherever it came from.
    static func load(explicit: String?, disabled: Bool) throws(AgentFailure) -> LoadedConfig {
        if disabled || explicit == "none" {
            return LoadedConfig(file: nil, note: "\(disabled ? "--no-config" : "--config none"): no configuration file is read")
        }
        let path = explicit ?? AgentConfigFile.defaultPath
        do {
            let file = try AgentConfigFile.load(path, runningAsRoot: geteuid() == 0)
            return LoadedConfig(file: file, note: "\(path) does not set it")
        } catch {
            switch error {
            case .content:
                throw .usage(error.description)
            case .missing where explicit == nil:
                // No file is the plain command-line setup of before.
                return LoadedConfig(file: nil, note: "there is no \(path); write one, or pass --config FILE")
            case .unreadable(_, let reason) where explicit == nil:
                // A user without access to the service's file can still
                // give everything on the command line.
                return LoadedConfig(file: nil, note: "\(path) exists but cannot be read (\(reason)); pass --no-config, or run as its owner")
            case .missing, .unreadable, .unsafe:
                throw .failure(error.description)
            }
        }
    }
}

/// Every setting of one command, resolved in one place: the command line
/// wins over the configuration file, the file over the default.
struct ResolvedSettings {
    struct Setting {
        var value: String
        var source: SettingSource
    }

    let config: LoadedConfig
    private(set) var settings: [String: Setting] = [:]
    /// The keys this command uses, in the documentation's order.
    let keys: [String]

    /// Built-in defaults, as the command line would spell them; a key
    /// without one is unset unless given (required, or optional like services).
    static let defaults: [String: String] = [
        "backend": "sim", "enforcement": "software", "log-level": "info",
        "wait": "adaptive", "poll-ms": "50", "handshake-timeout": "30",
    ]

    /// - Parameters:
    ///   - commandLine: the values given as options, spelled as on the command line.
    ///   - run: whether the command is `run` (the run-only keys apply).
    init(commandLine: [String: String], config: LoadedConfig, run: Bool) {
        self.config = config
        keys = AgentConfigFile.keys.filter { run || !$0.runOnly }.map(\.name)
        for key in keys {
            if let value = commandLine[key] {
                settings[key] = Setting(value: value, source: .commandLine)
            } else if let entry = config.file?.entry(key) {
                settings[key] = Setting(value: Self.spelled(entry.value), source: .file(path: config.file!.file, line: entry.line))
            } else if let value = Self.defaults[key] {
                settings[key] = Setting(value: value, source: .defaultValue)
            }
        }
    }

    static func spelled(_ value: AgentConfigFile.Value) -> String {
        switch value {
        case .text(let text): text
        case .integer(let n): String(n)
        case .seconds(let s): s == s.rounded() && s < 1e9 ? String(Int(s)) : String(s)
        }
    }

    func value(_ key: String) -> String? { settings[key]?.value }
    func source(_ key: String) -> SettingSource? { settings[key]?.source }

    /// " (from FILE:LINE)" when the value of `key` came from the file: said in
    /// messages about a value the operator did not type.
    func origin(_ key: String) -> String {
        if case .file = source(key) { return " (from \(source(key)!))" }
        return ""
    }

    /// A required setting, or the option's missing-argument message naming the file.
    func required(_ key: String, valueName: String) throws(AgentFailure) -> String {
        guard let value = value(key) else {
            throw .usage("Missing expected argument '--\(key) <\(valueName)>': give it on the command line or as '\(key) = ...' in the configuration file (\(config.note))")
        }
        return value
    }

    /// The setting as `T` (a command-line option type); nil when unset.
    /// The file's values are checked when it is read, so a failure here is a
    /// value the two disagree about, and names its source.
    func typed<T: ExpressibleByArgument>(_ key: String, as type: T.Type = T.self) throws(AgentFailure) -> T? {
        guard let setting = settings[key] else { return nil }
        guard let value = T(argument: setting.value) else {
            let expected = T.allValueStrings.isEmpty ? "" : ": expected one of " + T.allValueStrings.joined(separator: ", ")
            throw .usage("bad \(key) '\(setting.value)' (\(setting.source))\(expected)")
        }
        return value
    }

    /// One line per key: value and where it came from (`config check`).
    func table() -> [(key: String, value: String, source: String)] {
        keys.map { key in
            guard let setting = settings[key] else { return (key, "(unset)", "-") }
            return (key, setting.value, setting.source.description)
        }
    }
}
