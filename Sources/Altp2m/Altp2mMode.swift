/// A domain's altp2m mode (`HVM_PARAM_ALTP2M` / `altp2m.opts`): who may use
/// altp2m on it (spec §1.2, §1.4).
public enum Altp2mMode: UInt32, CaseIterable, Hashable, Sendable, LosslessStringConvertible {
    /// altp2m is off; every altp2m operation on the domain fails.
    case disabled = 0
    /// The guest may use every altp2m operation on itself, as may dom0 and
    /// its device model. Not security-evaluated upstream.
    case mixed = 1
    /// Only dom0 and the device model may use altp2m operations; the guest can
    /// only VMFUNC between the views it is shown. This project's mode.
    case external = 2
    /// Like external, but the guest may also enable #VE on its own vCPUs
    /// (`vcpu_enable_notify`, nothing else).
    case limited = 3

    /// The xl.cfg spelling: `disabled`, `mixed`, `external`, `limited`.
    public var description: String {
        switch self {
        case .disabled: "disabled"
        case .mixed: "mixed"
        case .external: "external"
        case .limited: "limited"
        }
    }

    /// Parses an xl.cfg spelling or its number (`external` or `2`).
    public init?(_ description: String) {
        if let match = Self.allCases.first(where: { $0.description == description }) {
            self = match
        } else if let number = UInt32(description), let mode = Altp2mMode(rawValue: number) {
            self = mode
        } else {
            return nil
        }
    }
}
