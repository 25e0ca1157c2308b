import Altp2m
import Altp2mSim
import ArgumentParser

/// `chanctl domain mem-set|memory-map|set-max-mem|populate|decrease`: a simulated domain's
/// memory (docs/SIMULATOR.md, "Domain memory").
extension DomainCommand {
    struct MemSet: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mem-set",
            abstract: "Balloon a domain to a memory target, as xl mem-set does (max = target + 1 MiB; the guest's balloon driver follows).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The target in MiB (at most the domain's creation size, memory/static-max).") var mib: UInt64

        func run() throws {
            let session = try Session(options)
            try session.run("domain.mem-set", ["domain": domainArgument(domain), "mib": .uint(mib)]) { r in
                var line = "\(domain): target \(mib) MiB, \(r["tot_pages"].map(renderScalar) ?? "?") pages"
                    + " (max \(r["max_pages"].map(renderScalar) ?? "?")); ballooned out \(r["ballooned_out"]?.array?.count ?? 0),"
                    + " in \(r["ballooned_in"]?.array?.count ?? 0)"
                if let stopped = r["balloon_stopped"]?.string { line += "; the balloon driver stopped: \(stopped)" }
                return line
            }
        }
    }

    struct MemoryMap: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "memory-map",
            abstract: "A domain's memory map (RAM, reserved ranges, holes), its reservation and ballooned pages.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String

        func run() throws {
            let session = try Session(options)
            try session.run("domain.memory-map", ["domain": domainArgument(domain)]) { r in
                var lines = ["FIRST_GFN        LAST_GFN         PAGES      TYPE      POPULATED"]
                for range in r["map"]?.array ?? [] {
                    func field(_ key: String, _ width: Int) -> String {
                        let s = renderScalar(range[key] ?? "")
                        return s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
                    }
                    lines.append(field("first_gfn", 17) + field("last_gfn", 17) + field("pages", 11) + field("type", 10)
                                 + (range["populated"].map(renderScalar) ?? ""))
                }
                lines.append("tot_pages \(r["tot_pages"].map(renderScalar) ?? "?"), max_pages \(r["max_pages"].map(renderScalar) ?? "?"), target \(r["target_kib"].map(renderScalar) ?? "?") KiB, ballooned \(r["ballooned"]?.array?.count ?? 0) pages")
                return lines.joined(separator: "\n")
            }
        }
    }

    struct SetMaxMem: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-max-mem",
            abstract: "Set a domain's max_pages (XEN_DOMCTL_max_mem, as xc_domain_setmaxmem).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The maximum in KiB.") var maxKiB: UInt64

        func run() throws {
            let session = try Session(options)
            try session.run("domain.set-max-mem", ["domain": domainArgument(domain), "max_kb": .uint(maxKiB)]) { r in
                "\(domain): max_pages \(r["max_pages"].map(renderScalar) ?? "?")"
            }
        }
    }

    /// `domain populate` and `domain decrease`: the reservation hypercalls
    /// on a domain's behalf, all or an error as libxenctrl's `_exact` calls.
    struct Populate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Populate gfns with new RAM pages (XENMEM_populate_physmap, order 0, as xc_domain_populate_physmap_exact: EBUSY past max_pages).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The gfns (hex 0x10 or decimal).") var gfns: [String]

        func run() throws {
            try DomainCommand.reservation("memory.populate", options, domain, gfns) { r in
                "\(domain): populated \(r["done"].map(renderScalar) ?? "?") pages, mfns \(r["mfns"].map(renderScalar) ?? "")"
            }
        }
    }

    struct Decrease: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give gfns back (XENMEM_decrease_reservation, order 0, as xc_domain_decrease_reservation_exact: EINVAL for a hole, MMIO or a grant mapping); a view whose remapped range holds one is reset.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The gfns (hex 0x10 or decimal).") var gfns: [String]

        func run() throws {
            try DomainCommand.reservation("memory.decrease", options, domain, gfns) { r in
                "\(domain): gave back \(r["done"].map(renderScalar) ?? "?") pages"
            }
        }
    }

    static func reservation(_ op: String, _ options: GlobalOptions, _ domain: String, _ gfns: [String],
                            text: @escaping (JSONValue) -> String) throws {
        guard !gfns.isEmpty else { throw ValidationError("give at least one gfn") }
        let frames = try gfns.map { JSONValue.string("0x" + String(try ArgumentValue.realGFN($0), radix: 16)) }
        let session = try Session(options)
        try session.run(op, ["domain": domainArgument(domain), "gfns": .array(frames)], text: text)
    }
}
