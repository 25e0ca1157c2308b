import Altp2m
import Altp2mSim
import ArgumentParser

/// `chanctl domain ...`: create, list, crash and destroy domains; the altp2m param.
struct DomainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "domain",
        abstract: "Create, list, crash and destroy domains; set their parameters and memory.",
        subcommands: [Create.self, List.self, Crash.self, Destroy.self, Watch.self, SetParam.self, GetParam.self, MemSet.self,
                      MemoryMap.self, SetMaxMem.self, Populate.self, Decrease.self]
    )

    enum Altp2mModeArgument: String, ExpressibleByArgument, CaseIterable {
        case disabled, mixed, external, limited
    }

    enum KindArgument: String, ExpressibleByArgument, CaseIterable {
        case hvm, pv
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a domain; prints its domid and token.",
            discussion: """
                The token (also written to STATE/domains/NAME.token, mode 0600) lets a \
                guest process attach as the domain. Guest-physical memory is gfns \
                0 up to MiB*256, mapped p2m_ram_rw with access rwx.
                """)

        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions

        @Argument(help: "The domain's name: letters, digits, '-', '_' or '.', up to 64.")
        var name: String

        @Option(help: "Number of vCPUs (1...128).")
        var vcpus: UInt32 = 2

        @Option(name: .customLong("memory-mib"), help: "Guest memory in MiB (gfns 0 up to MiB*256).")
        var memoryMiB: UInt64 = 2

        @Option(help: "The altp2m mode: disabled, mixed, external or limited.")
        var altp2m: Altp2mModeArgument = .disabled

        @Option(help: "Number of altp2m views (Xen 4.21 profile only; 1...512).")
        var views: UInt16?

        @Option(name: .customLong("type"), help: "hvm or pv.")
        var kind: KindArgument = .hvm

        @Flag(name: .customLong("nested-virt"), help: "Enable nested virtualization (incompatible with altp2m).")
        var nestedVirt = false

        func validate() throws {
            guard !name.isEmpty, name.count <= 64,
                  name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }),
                  name != ".", name != ".."
            else {
                throw ValidationError("bad domain name '\(name)': use 1 to 64 letters, digits, '-', '_' or '.'")
            }
            guard memoryMiB >= 1, memoryMiB <= 4096 else {
                throw ValidationError("bad --memory-mib \(memoryMiB): expected 1...4096")
            }
        }

        func run() throws {
            if backend.backend == .xen {
                throw CommandFailure.usage("on Xen, create domains with xl create (altp2m=\"external\" in the xl.cfg, see docs/XEN.md); then use chanctl with --backend xen")
            }
            var arguments: [String: JSONValue] = [
                "name": .string(name), "vcpus": .int(Int64(vcpus)), "memory_mib": .int(Int64(memoryMiB)),
                "altp2m": .string(altp2m.rawValue), "type": .string(kind.rawValue), "nested_virt": .bool(nestedVirt),
            ]
            if let views { arguments["views"] = .int(Int64(views)) }
            let session = try Session(options)
            try session.run("domain.create", arguments) { r in
                "created domain \(name) (domid \(renderScalar(r["domid"] ?? .null))); token in \(renderScalar(r["token_path"] ?? .null))\ntoken: \(renderScalar(r["token"] ?? .null))"
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List domains (dom0 first).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions

        func run() throws {
            if backend.usesXenBackend {
                emit(try XenBridge.call("domain.list", [:], backend: backend, options), json: options.json, text: Self.table)
                return
            }
            let session = try Session(options)
            try session.run("domain.list", text: Self.table)
        }

        static func table(_ r: JSONValue) -> String {
                var lines = ["DOMID  NAME                 TYPE  VCPUS  PAGES    STATE     ALTP2M     ACTIVE"]
                for d in r["domains"]?.array ?? [] {
                    func field(_ key: String, _ width: Int) -> String {
                        let s = renderScalar(d[key] ?? .null)
                        return s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
                    }
                    lines.append(field("domid", 7) + field("name", 21) + field("type", 6) + field("vcpus", 7)
                                 + field("pages", 9) + field("state", 10) + field("altp2m", 11) + field("altp2m_active", 6))
                }
                return lines.joined(separator: "\n")
        }
    }

    struct Destroy: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Destroy a domain and free its memory.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String

        func run() throws {
            if backend.backend == .xen {
                throw CommandFailure.usage("on Xen, destroy domains with xl destroy; chanctl tears down their channels with: chanctl channel destroy NAME --backend xen")
            }
            let session = try Session(options)
            try session.run("domain.destroy", ["domain": domainArgument(domain)]) { _ in "destroyed \(domain)" }
        }
    }

    struct Crash: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Crash a domain, as Xen's domain_crash: its vCPUs stop, its channels are torn down.",
            discussion: """
                What xc_domain_shutdown(domid, SHUTDOWN_crash) does: the domain is shut down \
                with reason crash, its vCPUs stop, @releaseDomain fires in xenstore, and its \
                channels are torn down (each peer sees peerDied): by the simulator daemon's \
                grant module with --backend sim, by chanctl domain watch with --backend \
                xen-sim. The domain stays, crashed, until chanctl domain destroy. A guest \
                process exiting or being killed never does this: the domain keeps running.
                """)
        @OptionGroup var options: GlobalOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String

        func run() throws {
            if backend.backend == .xen {
                throw CommandFailure.usage("on Xen, crash a domain with xl's toolstack (xc_domain_shutdown with SHUTDOWN_crash); chanctl domain watch --backend xen (secure-channel-dom0.service) then tears down its channels, or by hand: chanctl channel destroy NAME --backend xen")
            }
            let session = try Session(options)
            try session.run("domain.crash", ["domain": domainArgument(domain)]) { r in
                r["already"]?.bool == true ? "\(domain) had crashed already" : "crashed \(domain)"
            }
        }
    }

    struct SetParam: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-param",
            abstract: "Set HVM_PARAM_ALTP2M (Xen 4.17: once, 0 -> mode; from 4.19: always EEXIST).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The parameter: altp2m.") var param: String
        @Argument(help: "The mode: disabled, mixed, external, limited, or 0...3 (other numbers are passed through).")
        var value: String

        func validate() throws {
            guard param == "altp2m" else {
                throw ValidationError("unknown parameter '\(param)': the only parameter is altp2m (HVM_PARAM_ALTP2M)")
            }
            guard Altp2mMode(value) != nil || UInt64(value) != nil else {
                throw ValidationError("bad mode '\(value)': expected disabled, mixed, external, limited or a number")
            }
        }

        func run() throws {
            let raw: UInt64 = Altp2mMode(value).map { UInt64($0.rawValue) } ?? UInt64(value)!
            if backend.usesXenBackend {
                emit(try XenBridge.call("domain.set-param", ["domain": domainArgument(domain), "value": .uint(raw)],
                                        backend: backend, options),
                     json: options.json) { _ in "HVM_PARAM_ALTP2M of \(domain) set to \(value)" }
                return
            }
            let session = try Session(options, guest: caller, domain: domain)
            try session.run("domain.set-param", ["domain": domainArgument(domain), "value": .uint(raw)]) { _ in
                "HVM_PARAM_ALTP2M of \(domain) set to \(value)"
            }
        }
    }

    struct GetParam: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "get-param", abstract: "Read HVM_PARAM_ALTP2M.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The parameter: altp2m.") var param: String

        func validate() throws {
            guard param == "altp2m" else {
                throw ValidationError("unknown parameter '\(param)': the only parameter is altp2m (HVM_PARAM_ALTP2M)")
            }
        }

        func run() throws {
            if backend.usesXenBackend {
                emit(try XenBridge.call("domain.get-param", ["domain": domainArgument(domain)], backend: backend, options),
                     json: options.json) {
                    renderScalar($0["altp2m"] ?? .null)
                }
                return
            }
            let session = try Session(options, guest: caller, domain: domain)
            try session.run("domain.get-param", ["domain": domainArgument(domain)])
        }
    }
}
