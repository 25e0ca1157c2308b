import Altp2m
import Altp2mSim
import ArgumentParser

/// `chanctl altp2m ...`: every `xc_altp2m_*` operation, as dom0 or, with
/// `--as-guest`/`--as-guest-user`, as the domain itself.
struct Altp2mCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "altp2m",
        abstract: "Raw altp2m operations (HVMOP_altp2m subops).",
        discussion: """
            View index 0 is the host p2m for set-access, set-access-multi, get-access \
            and the suppress-ve commands, and the view-0 table for everything else. \
            GFN is hex (0x100) or decimal; ~0 is INVALID_GFN. ACCESS is one of \
            \(ArgumentValue.accessNames).
            """,
        subcommands: [
            GetState.self, SetState.self, CreateView.self, DestroyView.self, SwitchView.self,
            SetAccess.self, SetAccessMulti.self, GetAccess.self, ChangeGFN.self,
            SetSuppressVE.self, SetSuppressVEMulti.self, GetSuppressVE.self, SetVisibility.self,
            VCPUView.self, EnableNotify.self, DisableNotify.self, AccessRequired.self, Raw.self,
        ]
    )

    /// Runs `op` on `domain` as dom0 or the guest, on the simulator or on Xen.
    static func perform(_ options: GlobalOptions, _ caller: GuestCallerOptions, _ backend: BackendOptions,
                        domain: String, _ op: String,
                        _ arguments: [String: JSONValue] = [:], text: ((JSONValue) -> String)? = nil) throws {
        var all = arguments
        all["domain"] = domainArgument(domain)
        if backend.usesXenBackend {
            guard !caller.asGuest, !caller.asGuestUser else {
                throw CommandFailure.usage("--as-guest and --as-guest-user exist only on the simulator (--backend sim)")
            }
            emit(try XenBridge.call(op, all, backend: backend, options), json: options.json, text: text ?? { _ in "ok" })
            return
        }
        let session = try Session(options, guest: caller, domain: domain)
        try session.run(op, all, text: text ?? { _ in "ok" })
    }

    struct GetState: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "get-state", abstract: "Whether altp2m is active (xc_altp2m_get_domain_state).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.get-state") { renderScalar($0["state"] ?? .null) }
        }
    }

    struct SetState: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-state", abstract: "Activate or deactivate altp2m (xc_altp2m_set_domain_state).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "on or off (or a raw number: any non-zero value means on).") var state: String
        func validate() throws {
            if UInt8(state) == nil { _ = try ArgumentValue.onOff(state) }
        }
        func run() throws {
            let raw: UInt8 = try UInt8(state) ?? (ArgumentValue.onOff(state) ? 1 : 0)
            try perform(options, caller, backend, domain: domain, "altp2m.set-state", ["state": .int(Int64(raw))])
        }
    }

    struct CreateView: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create-view", abstract: "Create a view; prints its index (xc_altp2m_create_view).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Option(name: .customLong("default-access"), help: "The view's default access (default: the host's default).",
                transform: ArgumentValue.access)
        var defaultAccess: JSONValue = "default"
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.create-view", ["default_access": defaultAccess]) {
                renderScalar($0["view"] ?? .null)
            }
        }
    }

    struct DestroyView: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "destroy-view", abstract: "Destroy a view (xc_altp2m_destroy_view).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index.", transform: ArgumentValue.view) var view: UInt16
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.destroy-view", ["view": .int(Int64(view))])
        }
    }

    struct SwitchView: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "switch-view", abstract: "Move every vCPU to a view (xc_altp2m_switch_to_view).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index.", transform: ArgumentValue.view) var view: UInt16
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.switch-view", ["view": .int(Int64(view))])
        }
    }

    struct SetAccess: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-access", abstract: "Set a gfn's access in a view; GFN ~0 sets the host default (xc_altp2m_set_mem_access).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index (0: the host p2m).", transform: ArgumentValue.view) var view: UInt16
        @Argument(help: "The gfn, or ~0 for the default access.", transform: ArgumentValue.gfn) var gfn: UInt64
        @Argument(help: "The access.", transform: ArgumentValue.access) var access: JSONValue
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.set-access",
                        ["view": .int(Int64(view)), "gfn": .uint(gfn), "access": access])
        }
    }

    struct SetAccessMulti: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-access-multi", abstract: "Set several gfns' access in order (xc_altp2m_set_mem_access_multi).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index (0: the host p2m).", transform: ArgumentValue.view) var view: UInt16
        @Argument(help: "GFN=ACCESS pairs, applied in order.", transform: ArgumentValue.gfnAccessPair)
        var entries: [JSONValue]
        func validate() throws {
            guard !entries.isEmpty else { throw ValidationError("give at least one GFN=ACCESS pair") }
        }
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.set-access-multi",
                        ["view": .int(Int64(view)), "entries": .array(entries)])
        }
    }

    struct GetAccess: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "get-access", abstract: "Read a gfn's access in one p2m; GFN ~0 reads its default (xc_altp2m_get_mem_access).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index (0: the host p2m).", transform: ArgumentValue.view) var view: UInt16
        @Argument(help: "The gfn, or ~0 for the default access.", transform: ArgumentValue.gfn) var gfn: UInt64
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.get-access", ["view": .int(Int64(view)), "gfn": .uint(gfn)]) {
                renderScalar($0["access"] ?? .null)
            }
        }
    }

    struct ChangeGFN: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "change-gfn", abstract: "Show NEW's frame at OLD in a view; NEW ~0 reverts (xc_altp2m_change_gfn).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index (0: the view-0 table).", transform: ArgumentValue.view) var view: UInt16
        @Argument(help: "The gfn to remap.", transform: ArgumentValue.gfn) var old: UInt64
        @Argument(help: "The gfn whose frame to show, or ~0 to drop the view's entry.", transform: ArgumentValue.gfn) var new: UInt64
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.change-gfn",
                        ["view": .int(Int64(view)), "old_gfn": .uint(old), "new_gfn": .uint(new)])
        }
    }

    struct SetSuppressVE: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-suppress-ve", abstract: "Set a gfn's suppress-#VE bit (xc_altp2m_set_suppress_ve).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index (0: the host p2m).", transform: ArgumentValue.view) var view: UInt16
        @Argument(help: "The gfn.", transform: ArgumentValue.gfn) var gfn: UInt64
        @Argument(help: "on or off.", transform: ArgumentValue.onOff) var suppress: Bool
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.set-suppress-ve",
                        ["view": .int(Int64(view)), "gfn": .uint(gfn), "suppress_ve": .bool(suppress)])
        }
    }

    struct SetSuppressVEMulti: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-suppress-ve-multi", abstract: "Set suppress-#VE on FIRST...LAST; prints the first error (xc_altp2m_set_supress_ve_multi).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index (0: the host p2m).", transform: ArgumentValue.view) var view: UInt16
        @Argument(help: "The first gfn.", transform: ArgumentValue.gfn) var first: UInt64
        @Argument(help: "The last gfn (inclusive).", transform: ArgumentValue.gfn) var last: UInt64
        @Argument(help: "on or off.", transform: ArgumentValue.onOff) var suppress: Bool
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.set-suppress-ve-multi",
                        ["view": .int(Int64(view)), "first_gfn": .uint(first), "last_gfn": .uint(last),
                         "suppress_ve": .bool(suppress)]) { renderFields($0) }
        }
    }

    struct GetSuppressVE: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "get-suppress-ve", abstract: "Read a gfn's suppress-#VE bit (xc_altp2m_get_suppress_ve).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index (0: the host p2m).", transform: ArgumentValue.view) var view: UInt16
        @Argument(help: "The gfn.", transform: ArgumentValue.gfn) var gfn: UInt64
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.get-suppress-ve", ["view": .int(Int64(view)), "gfn": .uint(gfn)]) {
                $0["suppress_ve"]?.bool == true ? "on" : "off"
            }
        }
    }

    struct SetVisibility: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-visibility", abstract: "Show or hide a view from VMFUNC and switch-view (xc_altp2m_set_visibility).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The view index.", transform: ArgumentValue.view) var view: UInt16
        @Argument(help: "on or off.", transform: ArgumentValue.onOff) var visible: Bool
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.set-visibility",
                        ["view": .int(Int64(view)), "visible": .bool(visible)])
        }
    }

    struct VCPUView: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "vcpu-view", abstract: "The view a vCPU is on (xc_altp2m_get_vcpu_p2m_idx).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The vCPU.", transform: ArgumentValue.vcpu) var vcpu: UInt32
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.vcpu-view", ["vcpu": .int(Int64(vcpu))]) {
                renderScalar($0["view"] ?? .null)
            }
        }
    }

    struct EnableNotify: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "enable-notify", abstract: "Enable #VE (and VMFUNC) on a vCPU with GFN as its info page (xc_altp2m_set_vcpu_enable_notify).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The vCPU.", transform: ArgumentValue.vcpu) var vcpu: UInt32
        @Argument(help: "The #VE information page.", transform: ArgumentValue.gfn) var gfn: UInt64
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.enable-notify", ["vcpu": .int(Int64(vcpu)), "gfn": .uint(gfn)])
        }
    }

    struct DisableNotify: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "disable-notify", abstract: "Disable #VE on a vCPU; VMFUNC stays on (xc_altp2m_set_vcpu_disable_notify).")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "The vCPU.", transform: ArgumentValue.vcpu) var vcpu: UInt32
        func run() throws {
            try perform(options, caller, backend, domain: domain, "altp2m.disable-notify", ["vcpu": .int(Int64(vcpu))])
        }
    }

    /// `access_required` is a domctl, not an altp2m subop, but it is a flag
    /// of each p2m that reaches the views only while altp2m is active, so it
    /// sits with the altp2m commands. The grant module leaves it on where it
    /// cannot tell who set it (docs/GRANT.md); this is how an operator clears it.
    struct AccessRequired: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "access-required",
            abstract: "Set or clear access_required (xc_domain_set_access_required): with it, a violation no monitor takes crashes the domain; without, it is relaxed to rwx.",
            discussion: "Xen writes the views' flags only while altp2m is active; set or cleared while it is inactive, the change reaches the host p2m alone.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id).") var domain: String
        @Argument(help: "on or off.", transform: ArgumentValue.onOff) var required: Bool
        func run() throws {
            try perform(options, caller, backend, domain: domain, "domain.set-access-required", ["required": .bool(required)]) { _ in
                "access_required \(required ? "on" : "off") on \(domain)"
            }
        }
    }

    struct Raw: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "raw",
            abstract: "Send a raw HVMOP_altp2m argument (to test header checks: version, pads, cmd).",
            discussion: "The 64-byte union is given as hex (up to 128 digits, zero-filled). Prints the union written back.")
        @OptionGroup var options: GlobalOptions
        @OptionGroup var caller: GuestCallerOptions
        @OptionGroup var backend: BackendOptions
        @Argument(help: "The domain (name or id; it becomes the domain field).") var domain: String
        @Option(help: "The subop number (1...16 exist).") var cmd: UInt32
        @Option(help: "The interface version (1 is valid).") var version: UInt32 = 1
        @Option(help: "pad1.") var pad1: UInt16 = 0
        @Option(help: "pad2.") var pad2: UInt32 = 0
        @Option(help: "The union u as hex bytes, little-endian.") var payload: String = ""
        @Option(name: .customLong("domid-field"), help: "Put this raw number in the domain field (for example 0x7FF0, DOMID_SELF) instead of DOM's id.",
                transform: { text in
                    guard let v = ArgumentValue.integer(text), v <= 0xFFFF else { throw ValidationError("bad --domid-field '\(text)': expected 0...0xFFFF") }
                    return UInt16(v)
                })
        var domidField: UInt16?
        func validate() throws {
            guard payload.count <= 128, payload.count % 2 == 0, payload.allSatisfy(\.isHexDigit) else {
                throw ValidationError("bad --payload: expected an even number of hex digits, at most 128")
            }
        }
        func run() throws {
            var arguments: [String: JSONValue] = [
                "cmd": .int(Int64(cmd)), "version": .int(Int64(version)), "pad1": .int(Int64(pad1)),
                "pad2": .int(Int64(pad2)), "payload": .string(payload),
            ]
            if let domidField { arguments["domid_field"] = .int(Int64(domidField)) }
            try perform(options, caller, backend, domain: domain, "altp2m.raw", arguments) { renderFields($0) }
        }
    }
}
