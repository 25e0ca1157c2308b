import Altp2m
import Altp2mSim
import XenGuest
import XenInterface

/// The backends a guest program (guest-agent, or a program using
/// libsecurechannel) attaches through, and the one place that attaches.
package enum GuestBackend: String, CaseIterable, Sendable {
    /// The simulator daemon, through its own guest interface.
    case sim
    /// A Xen HVM guest, through the C libraries and the hardware.
    case xen
    /// The Xen backend's code (``XenGuestPlatform``) over the simulator's
    /// implementation of the guest's Xen libraries.
    case xenSim = "xen-sim"

    /// Whether the simulator runs underneath (it holds the state directory).
    package var isSimulated: Bool { self != .xen }

    /// Attaches as one vCPU of `domain` (on Xen the guest reads its own id;
    /// `domain` and `stateDirectory` are the simulator's).
    /// - Parameter how: how the caller names the backend option in its
    ///   messages (`--backend`, or the `backend` field of `sc_options`).
    /// - Throws: a message that says what is missing and how to fix it.
    package func attach(domain: String, stateDirectory: String?, vcpu: UInt32 = 0,
                        enforcement: SimGuest.Enforcement = .software,
                        option how: String) throws(GuestAttachError) -> GuestPlatform {
        let simulatorFix = "start the simulator with chanctl sim start and create the domain with chanctl domain create \(domain) --altp2m external (same state directory)"
        switch self {
        case .sim:
            do {
                return try SimGuestPlatform.attach(domain: domain, stateDirectory: stateDirectory, vcpu: vcpu,
                                                   enforcement: enforcement)
            } catch .noToken(_, let path) {
                throw GuestAttachError("no domain \(domain) in the simulator (no token at \(path)); \(simulatorFix)")
            } catch {
                throw GuestAttachError("cannot attach as domain \(domain) to the simulator: \(error); check it with chanctl sim status and chanctl domain list (same state directory)")
            }
        case .xen:
            do {
                return try XenGuestPlatform()
            } catch {
                throw GuestAttachError("cannot use the Xen guest interface: \(error); run inside a Xen HVM guest, or use \(how) sim")
            }
        case .xenSim:
            let libraries: XenGuestLibraries
            do {
                libraries = try .simulator(domain: domain, stateDirectory: stateDirectory, vcpu: vcpu, enforcement: enforcement)
            } catch .noToken(_, let path) {
                throw GuestAttachError("no domain \(domain) in the simulator (no token at \(path)); \(simulatorFix)")
            } catch {
                throw GuestAttachError("cannot attach as domain \(domain) to the simulator's Xen libraries: \(error); check it with chanctl sim status (same state directory)")
            }
            do {
                return try XenGuestPlatform(libraries: libraries)
            } catch {
                throw GuestAttachError("cannot use the Xen guest interface on the simulator: \(error)")
            }
        }
    }
}

extension GuestBackend {
    /// The agent's half of the frame flow on the Xen backends (nil on
    /// `sim`, where the simulator shares frames itself), with libraries of
    /// its own so it can run on its own thread.
    package func frameFlowAgent(domain: String, stateDirectory: String?) throws(GuestAttachError) -> XenFrameFlowAgent? {
        let libraries: XenGuestLibraries
        switch self {
        case .sim:
            return nil
        case .xen:
            do { libraries = try .openInGuest() } catch {
                throw GuestAttachError("cannot open the Xen libraries for the frame flow: \(error)")
            }
        case .xenSim:
            do { libraries = try .simulator(domain: domain, stateDirectory: stateDirectory) } catch {
                throw GuestAttachError("cannot attach the frame-flow agent as domain \(domain) to the simulator: \(error)")
            }
        }
        do {
            let platform = try XenGuestPlatform(libraries: libraries)
            return try XenFrameFlowAgent(domain: platform.domain, libraries: libraries)
        } catch {
            throw GuestAttachError("cannot start the frame-flow agent: \(error)")
        }
    }
}

/// Why a guest program could not attach; the message names the fix.
package struct GuestAttachError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
