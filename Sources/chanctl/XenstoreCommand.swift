import Altp2m
import Altp2mSim
import ArgumentParser

/// `chanctl xenstore ...`: the simulator's xenstore, as dom0 (every node is
/// reachable; relative paths are under /local/domain/0, as for xenstored).
struct XenstoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xenstore",
        abstract: "The simulator's xenstore as dom0: read, write, ls, rm, perms, set-perms.",
        subcommands: [Read.self, Write.self, List.self, Remove.self, Perms.self, SetPerms.self]
    )

    struct Read: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A node's value (xs_read).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The path.") var path: String
        func run() throws {
            try Session(options).run("xs.read", ["path": .string(path)]) { r in r["value"]?.string ?? "" }
        }
    }

    struct Write: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a value, creating missing nodes (xs_write).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The path.") var path: String
        @Argument(help: "The value.") var value: String
        func run() throws {
            try Session(options).run("xs.write", ["path": .string(path), "value": .string(value)]) { _ in "written" }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "A node's children (xs_directory).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The path.") var path: String
        func run() throws {
            try Session(options).run("xs.directory", ["path": .string(path)]) { r in
                (r["children"]?.array ?? []).compactMap(\.string).joined(separator: "\n")
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a node and everything below it (xs_rm).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The path.") var path: String
        func run() throws {
            try Session(options).run("xs.rm", ["path": .string(path)]) { _ in "removed" }
        }
    }

    struct Perms: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A node's permissions (xs_get_permissions): owner first.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The path (or @releaseDomain, @introduceDomain).") var path: String
        func run() throws {
            try Session(options).run("xs.get-perms", ["path": .string(path)]) { r in
                (r["perms"]?.array ?? []).compactMap(\.string).joined(separator: " ")
            }
        }
    }

    struct SetPerms: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-perms",
            abstract: "Set a node's permissions (xs_set_permissions): n|r|w|b then a domain id, the owner first (its letter is everyone else's access).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The path (or @releaseDomain, @introduceDomain).") var path: String
        @Argument(help: "Permissions such as n0 r5.") var perms: [String]
        func run() throws {
            try Session(options).run("xs.set-perms", ["path": .string(path), "perms": .array(perms.map { .string($0) })]) { _ in "set" }
        }
    }
}
