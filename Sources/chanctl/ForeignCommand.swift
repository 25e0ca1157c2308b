import Altp2m
import Altp2mSim
import ArgumentParser

/// `chanctl foreign map`: dom0 maps a guest's gfns as
/// `xenforeignmemory_map` does (privcmd, per-frame errors) and shows each
/// frame: its machine frame and first bytes, or its error.
struct ForeignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "foreign",
        abstract: "dom0's foreign mappings of a guest's memory (xenforeignmemory_map): per-frame errors and contents.",
        subcommands: [Map.self]
    )

    struct Map: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Map gfns of a domain read-only and show each frame's mfn and first bytes, or its error (-EINVAL for a hole, MMIO or a grant mapping).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The gfns (hex 0x10 or decimal).") var gfns: [String]
        @Option(help: "Bytes to show from the start of each mapped frame (0...4096).") var bytes = 16

        func validate() throws {
            guard !gfns.isEmpty else { throw ValidationError("give at least one gfn") }
            guard (0...4096).contains(bytes) else { throw ValidationError("--bytes must be 0...4096, not \(bytes)") }
            for gfn in gfns { _ = try ArgumentValue.realGFN(gfn) }
        }

        func run() throws {
            let session = try Session(options)
            let domid = try Self.resolve(domain, session)
            let frames = try gfns.map { GFN(try ArgumentValue.realGFN($0)) }
            let mapping: SimForeignMemory.Mapping
            let memory: SimForeignMemory
            do {
                memory = try SimForeignMemory(stateDirectory: options.stateDirectory)
                mapping = try memory.map(domain: domid, writable: false, gfns: frames)
            } catch {
                throw CommandFailure(error)
            }
            defer { memory.unmap(mapping) }
            var rows: [JSONValue] = []
            for index in 0..<mapping.count {
                var row: [String: JSONValue] = ["gfn": .string("0x" + String(frames[index].rawValue, radix: 16)),
                                                "error": .int(Int64(mapping.errors[index]))]
                if let mfn = mapping.mfns[index] {
                    let start = mapping.pointer + index * 4096
                    let shown = (0..<bytes).map { start.load(fromByteOffset: $0, as: UInt8.self) }
                    row["mfn"] = .string("0x" + String(mfn.rawValue, radix: 16))
                    row["bytes"] = .string(shown.map { String(format2: $0) }.joined())
                } else {
                    row["errno"] = .string(mapping.error(at: index)?.name ?? "?")
                }
                rows.append(.object(row))
            }
            emit(["domid": .int(Int64(domid.rawValue)), "frames": .array(rows)], json: options.json) { r in
                (r["frames"]?.array ?? []).map { row in
                    if let mfn = row["mfn"]?.string {
                        return "gfn \(row["gfn"]?.string ?? "?"): mfn \(mfn) \(row["bytes"]?.string ?? "")"
                    }
                    return "gfn \(row["gfn"]?.string ?? "?"): \(row["errno"]?.string ?? "?") (\(row["error"].map(renderScalar) ?? "?"))"
                }.joined(separator: "\n")
            }
        }

        /// A domain name or id as its id (`domain.list`).
        static func resolve(_ domain: String, _ session: Session) throws(CommandFailure) -> DomainID {
            if let id = UInt16(domain) { return DomainID(rawValue: id) }
            let list = try session.call("domain.list")
            guard let match = list["domains"]?.array?.first(where: { $0["name"]?.string == domain }),
                  let id = match["domid"]?.int64 else {
                throw .failure("no domain named '\(domain)'; see chanctl domain list")
            }
            return DomainID(rawValue: UInt16(truncatingIfNeeded: id))
        }
    }
}

private extension String {
    /// Two lowercase hex digits.
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}
