import Altp2m
import XenInterface

/// ``XenGuestHardware`` on the simulator: `VMFUNC` is the simulated vCPU's
/// (a refused switch is observed and returns `false` instead of raising
/// #UD), and "`/dev/mem`" maps the frames the named view holds at those
/// gfns, with the simulator's enforcement (software or `mprotect`), through
/// the same ``SimGuestPlatform`` the `sim` backend uses.
public final class SimGuestHardware: XenGuestHardware {
    public let platform: SimGuestPlatform

    public init(platform: SimGuestPlatform) {
        self.platform = platform
    }

    public func vmfunc(_ view: UInt16) -> Bool {
        platform.enterView(ViewID(view))
    }

    public func mapPhysical(firstGFN: UInt64, pageCount: Int, view: UInt16) throws(XenErrno) -> UnsafeMutableRawPointer {
        do {
            return try platform.mapWindow(view: ViewID(view), firstGFN: GFN(firstGFN), pageCount: pageCount)
        } catch {
            if case .hypervisor(let errno, _) = error { throw errno }
            throw .invalid
        }
    }

    public func unmapPhysical(_ base: UnsafeMutableRawPointer, pageCount: Int) {
        platform.unmapWindow(base, pageCount: pageCount)
    }

    /// The gfn the simulated grant drivers recorded for the page
    /// (``SimGuestMappings``); `ESRCH` for memory they did not map.
    public func guestFrame(of address: UnsafeRawPointer) throws(XenErrno) -> UInt64 {
        guard let gfn = SimGuestMappings.shared.gfn(of: address) else { throw .notFound }
        return gfn
    }

    /// A guest read of the page's gfn through the vCPU's current view
    /// (`SimGuest.read`: the view's table, and the engine's fault path when
    /// the view has no entry, which copies the host's as Xen's lazy copy does).
    public func touch(_ address: UnsafeRawPointer) {
        guard let gfn = SimGuestMappings.shared.gfn(of: address) else { return }
        let offset = Int(UInt(bitPattern: address) % 4096)
        _ = try? platform.guest.read(gfn: GFN(gfn), offset: offset, count: 1)
    }
}

extension XenGuestLibraries {
    /// A guest process's Xen libraries on the simulator: xenstore, an
    /// event-channel handle and the two grant drivers as `domain` (with its
    /// token), and one vCPU of it as the hardware.
    public static func simulator(domain name: String, stateDirectory: String? = nil, vcpu: UInt32 = 0,
                                 enforcement: SimGuest.Enforcement = .software) throws(SimGuestError) -> XenGuestLibraries {
        let directory = StateDirectory.resolve(explicit: stateDirectory)
        let platform = try SimGuestPlatform.attach(domain: name, stateDirectory: stateDirectory, vcpu: vcpu,
                                                   enforcement: enforcement)
        let path = directory.tokenPath(domain: name)
        guard let token = SimGuest.readToken(path) else { throw .noToken(domain: name, path: path) }
        do {
            return XenGuestLibraries(store: try SimXenStoreLibrary(stateDirectory: directory, token: token),
                                     events: try SimXenEventChannelLibrary(stateDirectory: directory, token: token),
                                     hardware: SimGuestHardware(platform: platform),
                                     grantShare: try SimGrantShareLibrary(stateDirectory: directory, token: token),
                                     grantTable: try SimGrantTableLibrary(stateDirectory: directory, token: token),
                                     openEventChannel: { () throws(XenErrno) in
                                         try asErrno { () throws(SimClientError) in
                                             try SimXenEventChannelLibrary(stateDirectory: directory, token: token)
                                         }
                                     })
        } catch {
            throw .simulator(error)
        }
    }
}
