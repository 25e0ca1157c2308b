import Foundation
import PackagePlugin

/// Writes `BuildFacts.swift` into the target before every build: the git
/// revision the sources come from and the Xen libraries' version they are
/// built against (scripts/build-facts.sh finds both, with "unknown" outside a
/// git checkout or without pkg-config). A prebuild command runs on every
/// build, so a new commit is seen without a clean build; the script leaves
/// the file alone when nothing changed, so nothing is recompiled then.
@main
struct BuildFacts: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        let script = context.package.directoryURL.appending(path: "scripts/build-facts.sh")
        return [.prebuildCommand(displayName: "Recording the git revision and the Xen libraries' version",
                                 executable: URL(fileURLWithPath: "/bin/sh"),
                                 arguments: [script.path, context.package.directoryURL.path, output.path],
                                 outputFilesDirectory: output)]
    }
}
