import Altp2m
import Altp2mSim
import ArgumentParser

/// `chanctl gnttab ...`: Xen grant tables of the simulator. Shares and
/// mappings belong to the process (gntalloc/gntdev handle) that made them,
/// so a one-shot command can only look: `list` shows a domain's grants and
/// mappings.
struct GnttabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gnttab",
        abstract: "Xen grant tables of the simulator: inspect a domain's grants and grant mappings.",
        subcommands: [List.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A domain's grant entries (ref, peer, gfn, read-only, in use, deferred end, handle) and the grants it maps (gfn, granter, ref, frame).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String

        func run() throws {
            let session = try Session(options)
            try session.run("gnttab.list", ["domain": domainArgument(domain)]) { r in
                var lines: [String] = []
                for grant in r["grants"]?.array ?? [] {
                    var line = "grant \(grant["ref"].map(renderScalar) ?? "?"): to \(grant["peer"].map(renderScalar) ?? "?")"
                        + " gfn \(grant["gfn"].map(renderScalar) ?? "?")"
                    if grant["readonly"]?.bool == true { line += " readonly" }
                    if grant["writing"]?.bool == true { line += " writing" } else if grant["reading"]?.bool == true { line += " reading" }
                    if grant["end_deferred"]?.bool == true { line += " end-deferred" }
                    if let handle = grant["handle"]?.int64 { line += " handle \(handle)" }
                    lines.append(line)
                }
                for mapping in r["mappings"]?.array ?? [] {
                    var line = "mapping at \(mapping["gfn"].map(renderScalar) ?? "?"): \(mapping["granter"].map(renderScalar) ?? "?")"
                        + " ref \(mapping["ref"].map(renderScalar) ?? "?") mfn \(mapping["mfn"].map(renderScalar) ?? "?")"
                    if mapping["readonly"]?.bool == true { line += " readonly" }
                    if let handle = mapping["handle"]?.int64 { line += " handle \(handle)" }
                    lines.append(line)
                }
                return lines.isEmpty ? "no grants, no mappings" : lines.joined(separator: "\n")
            }
        }
    }
}
