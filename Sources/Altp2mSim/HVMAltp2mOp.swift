import Altp2m

/// The altp2m subop numbers (`HVMOP_altp2m_*`, spec §3.3).
public enum Altp2mCommand: UInt32, CaseIterable, Hashable, Sendable {
    case getDomainState = 1
    case setDomainState = 2
    case vcpuEnableNotify = 3
    case createP2M = 4
    case destroyP2M = 5
    case switchP2M = 6
    case setMemAccess = 7
    case changeGFN = 8
    case setMemAccessMulti = 9
    case setSuppressVE = 10
    case getSuppressVE = 11
    case getMemAccess = 12
    case vcpuDisableNotify = 13
    case getP2MIndex = 14
    case setSuppressVEMulti = 15
    case setVisibility = 16
}

/// The 80-byte argument of `HVMOP_altp2m` (`struct xen_hvm_altp2m_op`, spec §3.1).
///
/// The header fields are stored; the 64-byte union `u` is kept as raw bytes
/// (``payload``) read and written at the union members' offsets, so that
/// malformed arguments (non-zero pads, odd values) can be expressed exactly.
/// The static constructors build each subop as libxenctrl does; the output
/// accessors read what the hypervisor wrote back.
public struct HVMAltp2mOp: Hashable, Sendable {
    /// The size of the structure.
    public static let size = 80
    /// `HVMOP_ALTP2M_INTERFACE_VERSION`.
    public static let interfaceVersion: UInt32 = 1

    /// `version` @0; must be 1.
    public var version: UInt32
    /// `cmd` @4: a subop number (see ``Altp2mCommand``).
    public var cmd: UInt32
    /// `domain` @8; ``DomainID/selfDomain`` allowed.
    public var domain: DomainID
    /// `pad1` @10; must be 0.
    public var pad1: UInt16
    /// `pad2` @12; must be 0.
    public var pad2: UInt32
    /// The union `u` @16: 64 bytes, little-endian. Assigning another length
    /// truncates or zero-pads it to 64, so field access never runs off the end.
    public var payload: [UInt8] {
        didSet {
            if payload.count != 64 {
                payload = Array(payload.prefix(64)) + Array(repeating: 0, count: max(0, 64 - payload.count))
            }
        }
    }

    /// Creates an argument with a zeroed union.
    public init(command: UInt32, domain: DomainID, version: UInt32 = HVMAltp2mOp.interfaceVersion,
                pad1: UInt16 = 0, pad2: UInt32 = 0) {
        self.version = version
        self.cmd = command
        self.domain = domain
        self.pad1 = pad1
        self.pad2 = pad2
        self.payload = Array(repeating: 0, count: 64)
    }

    /// Creates an argument for `command` with a zeroed union.
    public init(_ command: Altp2mCommand, domain: DomainID) {
        self.init(command: command.rawValue, domain: domain)
    }

    /// Decodes the 80-byte wire form; `nil` if `bytes` is shorter (a copy-in fault).
    public init?(bytes: some Collection<UInt8>) {
        let raw = Array(bytes.prefix(Self.size))
        guard raw.count == Self.size else { return nil }
        func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            var value: T = 0
            for index in 0..<MemoryLayout<T>.size { value |= T(raw[offset + index]) << (8 * index) }
            return value
        }
        self.version = field(0, UInt32.self)
        self.cmd = field(4, UInt32.self)
        self.domain = DomainID(rawValue: field(8, UInt16.self))
        self.pad1 = field(10, UInt16.self)
        self.pad2 = field(12, UInt32.self)
        self.payload = Array(raw[16..<80])
    }

    /// The 80-byte wire form.
    public var bytes: [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity(Self.size)
        func append<T: FixedWidthInteger>(_ value: T) {
            for index in 0..<MemoryLayout<T>.size { raw.append(UInt8(truncatingIfNeeded: value >> (8 * index))) }
        }
        append(version)
        append(cmd)
        append(domain.rawValue)
        append(pad1)
        append(pad2)
        raw.append(contentsOf: payload.prefix(64))
        raw.append(contentsOf: repeatElement(0, count: Self.size - raw.count))
        return raw
    }

    // MARK: Union access

    /// Reads a little-endian field of the union at `offset`.
    public func field<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: payload[offset + index]) << (8 * index) }
        return value
    }

    /// Writes a little-endian field of the union at `offset`.
    public mutating func setField<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for index in 0..<MemoryLayout<T>.size {
            payload[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index))
        }
    }

    // MARK: Subop constructors (as libxenctrl fills them)

    /// `get_domain_state`.
    public static func getDomainState(_ domain: DomainID) -> HVMAltp2mOp {
        HVMAltp2mOp(.getDomainState, domain: domain)
    }

    /// `set_domain_state`; any non-zero `state` means on.
    public static func setDomainState(_ domain: DomainID, state: UInt8) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.setDomainState, domain: domain)
        op.setField(state, at: 0)
        return op
    }

    /// `vcpu_enable_notify`: `vcpu_id` @0, `pad` @4, `gfn` @8.
    public static func vcpuEnableNotify(_ domain: DomainID, vcpu: UInt32, gfn: UInt64, pad: UInt32 = 0) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.vcpuEnableNotify, domain: domain)
        op.setField(vcpu, at: 0)
        op.setField(pad, at: 4)
        op.setField(gfn, at: 8)
        return op
    }

    /// `vcpu_disable_notify`: `vcpu_id` @0.
    public static func vcpuDisableNotify(_ domain: DomainID, vcpu: UInt32) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.vcpuDisableNotify, domain: domain)
        op.setField(vcpu, at: 0)
        return op
    }

    /// `create_p2m`: `view` @0 (sent as 0xffff, ignored), `hvmmem_default_access` @2
    /// (an ABI number: see ``MemAccess/abiValue(for:)``).
    public static func createP2M(_ domain: DomainID, defaultAccess: UInt16) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.createP2M, domain: domain)
        op.setField(UInt16(0xFFFF), at: 0)
        op.setField(defaultAccess, at: 2)
        return op
    }

    /// `destroy_p2m`: `view` @0.
    public static func destroyP2M(_ domain: DomainID, view: UInt16) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.destroyP2M, domain: domain)
        op.setField(view, at: 0)
        return op
    }

    /// `switch_p2m`: `view` @0.
    public static func switchP2M(_ domain: DomainID, view: UInt16) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.switchP2M, domain: domain)
        op.setField(view, at: 0)
        return op
    }

    /// `set_mem_access`: `view` @0, `access` @2 (ABI number), `pad` @4, `gfn` @8.
    public static func setMemAccess(_ domain: DomainID, view: UInt16, gfn: UInt64, access: UInt16,
                                    pad: UInt32 = 0) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.setMemAccess, domain: domain)
        op.setField(view, at: 0)
        op.setField(access, at: 2)
        op.setField(pad, at: 4)
        op.setField(gfn, at: 8)
        return op
    }

    /// `get_mem_access`: `view` @0, `access` @2 (out), `pad` @4, `gfn` @8.
    public static func getMemAccess(_ domain: DomainID, view: UInt16, gfn: UInt64, pad: UInt32 = 0) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.getMemAccess, domain: domain)
        op.setField(view, at: 0)
        op.setField(pad, at: 4)
        op.setField(gfn, at: 8)
        return op
    }

    /// `change_gfn`: `view` @0, `pad1` @2, `pad2` @4, `old_gfn` @8, `new_gfn` @16.
    public static func changeGFN(_ domain: DomainID, view: UInt16, oldGFN: UInt64, newGFN: UInt64,
                                 pad1: UInt16 = 0, pad2: UInt32 = 0) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.changeGFN, domain: domain)
        op.setField(view, at: 0)
        op.setField(pad1, at: 2)
        op.setField(pad2, at: 4)
        op.setField(oldGFN, at: 8)
        op.setField(newGFN, at: 16)
        return op
    }

    /// `set_mem_access_multi`: `view` @0, `pad` @2, `nr` @4, `opaque` @8,
    /// `pfn_list` handle @16 (u64[]), `access_list` handle @24 (u8[]).
    public static func setMemAccessMulti(_ domain: DomainID, view: UInt16, count: UInt32,
                                         pfnList: UInt64, accessList: UInt64,
                                         opaque: UInt64 = 0, pad: UInt16 = 0) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.setMemAccessMulti, domain: domain)
        op.setField(view, at: 0)
        op.setField(pad, at: 2)
        op.setField(count, at: 4)
        op.setField(opaque, at: 8)
        op.setField(pfnList, at: 16)
        op.setField(accessList, at: 24)
        return op
    }

    /// `set_suppress_ve`: `view` @0, `suppress_ve` @2, `pad1` @3, `pad2` @4, `gfn` @8.
    public static func setSuppressVE(_ domain: DomainID, view: UInt16, gfn: UInt64, suppress: UInt8,
                                     pad1: UInt8 = 0, pad2: UInt32 = 0) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.setSuppressVE, domain: domain)
        op.setField(view, at: 0)
        op.setField(suppress, at: 2)
        op.setField(pad1, at: 3)
        op.setField(pad2, at: 4)
        op.setField(gfn, at: 8)
        return op
    }

    /// `get_suppress_ve`: as `set_suppress_ve`, with `suppress_ve` @2 an output.
    public static func getSuppressVE(_ domain: DomainID, view: UInt16, gfn: UInt64,
                                     pad1: UInt8 = 0, pad2: UInt32 = 0) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.getSuppressVE, domain: domain)
        op.setField(view, at: 0)
        op.setField(pad1, at: 3)
        op.setField(pad2, at: 4)
        op.setField(gfn, at: 8)
        return op
    }

    /// `get_p2m_idx`: `vcpu_id` @0, `altp2m_idx` @4 (out).
    public static func getP2MIndex(_ domain: DomainID, vcpu: UInt32) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.getP2MIndex, domain: domain)
        op.setField(vcpu, at: 0)
        return op
    }

    /// `set_suppress_ve_multi`: `view` @0, `suppress_ve` @2, `pad1` @3,
    /// `first_error` @4, `first_gfn` @8, `last_gfn` @16, `first_error_gfn` @24.
    public static func setSuppressVEMulti(_ domain: DomainID, view: UInt16, suppress: UInt8,
                                          firstGFN: UInt64, lastGFN: UInt64,
                                          firstError: Int32 = 0, pad1: UInt8 = 0) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.setSuppressVEMulti, domain: domain)
        op.setField(view, at: 0)
        op.setField(suppress, at: 2)
        op.setField(pad1, at: 3)
        op.setField(firstError, at: 4)
        op.setField(firstGFN, at: 8)
        op.setField(lastGFN, at: 16)
        return op
    }

    /// `set_visibility`: `altp2m_idx` @0, `visible` @2, `pad` @3.
    public static func setVisibility(_ domain: DomainID, view: UInt16, visible: UInt8, pad: UInt8 = 0) -> HVMAltp2mOp {
        var op = HVMAltp2mOp(.setVisibility, domain: domain)
        op.setField(view, at: 0)
        op.setField(visible, at: 2)
        op.setField(pad, at: 3)
        return op
    }

    // MARK: Outputs

    /// `u.domain_state.state` (get_domain_state).
    public var stateOutput: UInt8 { field(UInt8.self, at: 0) }
    /// `u.view.view` (create_p2m).
    public var viewOutput: UInt16 { field(UInt16.self, at: 0) }
    /// `u.mem_access.access` (get_mem_access), an ABI number.
    public var accessOutput: UInt16 { field(UInt16.self, at: 2) }
    /// `u.suppress_ve.suppress_ve` (get_suppress_ve).
    public var suppressVEOutput: UInt8 { field(UInt8.self, at: 2) }
    /// `u.get_vcpu_p2m_idx.altp2m_idx` (get_p2m_idx).
    public var p2mIndexOutput: UInt16 { field(UInt16.self, at: 4) }
    /// `u.suppress_ve_multi.first_error` (negative errno, 0 if none).
    public var firstErrorOutput: Int32 { field(Int32.self, at: 4) }
    /// `u.suppress_ve_multi.first_gfn`, written back as `last_gfn + 1`.
    public var firstGFNOutput: UInt64 { field(UInt64.self, at: 8) }
    /// `u.suppress_ve_multi.first_error_gfn`.
    public var firstErrorGFNOutput: UInt64 { field(UInt64.self, at: 24) }
    /// `u.set_mem_access_multi.opaque`: the continuation point.
    public var opaqueOutput: UInt64 { field(UInt64.self, at: 8) }
}
