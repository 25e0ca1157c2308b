import AgentServices
import ArgumentParser

/// `guest-agent config`: the configuration file's commands.
struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the agent's configuration file.",
        subcommands: [ConfigCheck.self])
}

/// `guest-agent config check`: what `run` would use, and where each value
/// comes from, without attaching to anything.
struct ConfigCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Print the settings guest-agent run would use and where each comes from (command line, FILE:LINE, default).",
        discussion: """
            Reads the configuration file as run does (--config FILE, the default \
            /etc/secure-channel/agent.conf, or none with --no-config) and resolves every \
            setting: the command line wins over the file, the file over the default. \
            Attaches to nothing and reads no key. Exit status 0 when run would start \
            with these settings, 2 when the file is bad or a required setting (domain, \
            key, host-key) is missing, 1 when the file cannot be read or is unsafe.
            """)

    @OptionGroup var arguments: AgentArguments
    @OptionGroup var runArguments: RunArguments

    @Flag(help: "Print one JSON object: {\"ok\":true,\"config\":...,\"settings\":{KEY:{\"value\":...,\"source\":...}}}.")
    var json = false

    func run() throws {
        let settings = ResolvedSettings(commandLine: arguments.commandLine.merging(runArguments.commandLine) { $1 },
                                        config: try arguments.loadConfig(), run: true)
        let file = settings.config.file?.file
        let table = settings.table()
        // The table first: what is missing or wrong is easier to see beside it.
        if json {
            let fields = table.map { ($0.key, JSONField.object([("value", .string($0.value)), ("source", .string($0.source))])) }
            var problem: AgentFailure? = nil
            do throws(AgentFailure) { _ = try AgentOptions(settings); _ = try RunSettings(settings) } catch { problem = error }
            print(jsonObject([("ok", .bool(problem == nil)), ("config", .string(file ?? "none")),
                              ("settings", .object(fields))] + (problem.map { [("error", .string($0.description))] } ?? [])))
            // Said once, in the object above.
            if let problem { throw ExitCode(problem.exitCode) }
            return
        }
        print("configuration file: \(file ?? "none; \(settings.config.note)")")
        let width = table.map(\.key.count).max() ?? 0
        let valueWidth = min(40, table.map(\.value.count).max() ?? 0)
        for row in table {
            let key = row.key + String(repeating: " ", count: width - row.key.count)
            let value = row.value + String(repeating: " ", count: max(0, valueWidth - row.value.count))
            print("  \(key) = \(value)  # \(row.source)")
        }
        _ = try AgentOptions(settings)
        _ = try RunSettings(settings)
    }
}
