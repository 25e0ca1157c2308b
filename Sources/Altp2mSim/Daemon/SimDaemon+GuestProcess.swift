import Altp2m
import Logging
import Synchronization

/// Guest processes: attaching to a domain, and leaving it.
///
/// A guest process is a process inside the guest, not the guest: when it
/// exits, is killed or detaches, the guest kernel releases what it held and
/// the domain keeps running. Crashing a domain is an explicit action
/// (`domain.crash`, SimDaemon+Domains.swift), or the engine's own (an
/// access violation with `access_required`).
extension SimDaemon {
    /// A guest process attaches as its domain: it gets the machine memory,
    /// its control region (read-only), its vCPU pages and the event words.
    /// `vcpu` (one) or `vcpus` (a list) are the vCPUs its threads run on.
    func attach(_ a: RequestArguments, caller: Caller, connection: Connection?) throws(RequestError) -> Reply {
        guard case .guest(let id, _) = caller, let domain = domains[id] else {
            throw .refused("guest attach needs a domain token (STATE/domains/NAME.token)")
        }
        guard let connection else { throw .refused("guest attach needs a connection") }
        guard let status = try? engine.domainStatus(id), !status.isCrashed else {
            throw .refused("domain \(domain.name) has crashed; destroy it and create it again")
        }
        guard connection.attachedDomain == nil else {
            throw .refused("this connection is attached already; detach first")
        }
        let vcpus = try attachVCPUs(a, domain: domain)
        let controlFD: Int32
        do { controlFD = try SharedFileMapping.openReadOnly(domain.controlPath) } catch {
            throw .refused("cannot open the control region: \(error)")
        }
        connection.attachedDomain = id
        connection.attachedVCPUs = vcpus
        connection.mappedWindows = []
        log.info("guest process \(connection.peerPID.map(String.init) ?? "?") attached as \(domain.name) (\(id)) on vCPUs \(vcpus)")
        return Reply(
            fields: [
                "domid": .int(Int64(id.rawValue)), "name": .string(domain.name), "vcpus": .int(Int64(domain.vcpuCount)),
                "views": .int(Int64(domain.viewCount)), "gfn_count": .int(Int64(domain.gfnCount)),
                "machine_frames": .int(Int64(machineFrames)), "layout_version": .int(Int64(ControlRegionLayout.version)),
                "cpu": .string(host.cpu.name), "xen": .string(host.xen.description),
                "descriptors": ["memory", "control", "vcpu", "events"],
            ],
            fds: [memory.fileDescriptor, controlFD, domain.vcpuPages.fd, events.fd],
            ownedFDs: [controlFD])
    }

    /// The vCPUs named by `vcpus` (a list) or `vcpu` (one; default 0).
    private func attachVCPUs(_ a: RequestArguments, domain: DaemonDomain) throws(RequestError) -> [Int] {
        var vcpus: [Int] = []
        if case .array(let list)? = a.fields["vcpus"] {
            for item in list {
                guard let number = item.uint64, number < UInt64(domain.vcpuCount) else {
                    throw .usage("vcpus: \(item.serialized) is not a vCPU of \(domain.name) (it has \(domain.vcpuCount))")
                }
                if !vcpus.contains(Int(number)) { vcpus.append(Int(number)) }
            }
        } else {
            let number = try a.optionalUInt("vcpu") ?? 0
            guard number < UInt64(domain.vcpuCount) else {
                throw .usage("vcpu \(number) is not a vCPU of \(domain.name) (it has \(domain.vcpuCount))")
            }
            vcpus = [Int(number)]
        }
        guard !vcpus.isEmpty else { throw .usage("vcpus is empty: name at least one vCPU") }
        return vcpus
    }

    /// A connection ended: what the guest kernel releases when a process's
    /// files close. Each release is per connection; keep this list flat.
    func connectionClosed(_ connection: Connection) {
        eventChannelConnectionClosed(connection)
        xenstoreConnectionClosed(connection)
        grantConnectionClosed(connection)
        guestProcessLeft(connection, how: "went away")
    }

    /// The attached process of `connection` left its domain (it exited, was
    /// killed, or detached). The domain keeps running. What the process
    /// held goes, as the guest kernel would see to at process exit: each of
    /// its vCPUs that a VMFUNC of its threads left in another view goes back
    /// to view 0 (unless another process of the domain runs on it), and the
    /// extensions hear of the windows it mapped (the grant module tells the
    /// channels' peers, without tearing the channels down).
    func guestProcessLeft(_ connection: Connection, how: String) {
        guard let id = connection.attachedDomain else { return }
        let vcpus = connection.attachedVCPUs
        let windows = connection.mappedWindows
        connection.attachedDomain = nil
        connection.attachedVCPUs = []
        connection.mappedWindows = []
        guard let domain = domains[id], let status = try? engine.domainStatus(id), !status.isCrashed else { return }
        syncGuestViews()
        let others = connections.filter { $0 !== connection && $0.attachedDomain == id }
        let stillRunning = Set(others.flatMap(\.attachedVCPUs))
        for vcpu in vcpus where !stillRunning.contains(vcpu) { returnToView0(domain, vcpu: vcpu) }
        if !windows.isEmpty {
            for ext in extensions { ext.guestProcessExited(id, windows: windows) }
        }
        publishAll()
        let who = connection.peerPID.map { "guest process \($0)" } ?? "guest process"
        log.notice("\(who) of \(status.name) (\(id)) \(how); the domain keeps running")
    }

    /// Moves a vCPU a departed process left in a view it chose back to view
    /// 0. On hardware the EPTP index stays where the last VMFUNC put it and
    /// Xen does nothing at a guest context switch; the guest kernel that
    /// runs other work on the vCPU next must not run it in a channel view,
    /// so the in-guest half of this design switches back (a VMFUNC, the
    /// hardware path, journaled as any guest VMFUNC). A view that dom0 or a
    /// vm_event response set is dom0's and stays.
    private func returnToView0(_ domain: DaemonDomain, vcpu: Int) {
        guard domain.guestSwitched[vcpu],
              let info = try? engine.vcpuInfo(domain.id, vcpu: VCPUID(UInt32(vcpu))),
              !info.view.isInvalid, info.view != .hostOrView0 else { return }
        let outcome = try? engine.vmfunc(domain.id, vcpu: VCPUID(UInt32(vcpu)), eax: 0, ecx: 0)
        appendJournal(["op": "internal.vmfunc", "domain": .int(Int64(domain.id.rawValue)),
                       "vcpu": .int(Int64(vcpu)), "index": 0])
        if case .switched = outcome { return }
        log.warning("vCPU \(vcpu) of \(domain.name) stays in view \(info.view.rawValue): VMFUNC to view 0 was refused (\(String(describing: outcome)))")
    }

    /// Reads the views guests switched to with a local VMFUNC (their vCPU
    /// pages) into the engine, as Xen re-reads `EPTP_INDEX` at a VM exit.
    func syncGuestViews() {
        for domain in domains.values {
            for vcpu in 0..<domain.vcpuCount {
                let seen = domain.vcpuView(vcpu).pointee.load(ordering: .acquiring)
                guard seen != domain.publishedViews[vcpu] else { continue }
                let outcome = try? engine.vmfunc(domain.id, vcpu: VCPUID(UInt32(vcpu)), eax: 0, ecx: seen)
                appendJournal(["op": "internal.vmfunc", "domain": .int(Int64(domain.id.rawValue)),
                               "vcpu": .int(Int64(vcpu)), "index": .int(Int64(seen))])
                if case .switched = outcome {
                    domain.publishedViews[vcpu] = seen
                    domain.guestSwitched[vcpu] = true
                } else {
                    // Not a switch the hardware would have made (the view went
                    // away meanwhile): the guest is back on the engine's view.
                    domain.vcpuView(vcpu).pointee.store(domain.publishedViews[vcpu], ordering: .releasing)
                }
            }
        }
    }
}
