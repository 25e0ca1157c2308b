import Altp2m

/// Guest memory accesses (spec §4): lazy population, the violation table,
/// hardware #VE, the mem_access check with its rx2rw / n2rwx conversions,
/// mem_access events, and the crash when `access_required` finds no listener.
extension Altp2mEngine {
    /// Performs one guest memory access on a vCPU and reports what happened.
    ///
    /// While altp2m is active the access goes through the vCPU's current view:
    /// an absent entry is copied from the host first (§4.1; the access is the
    /// host entry's on 4.17, the view's default from 4.19; sve 1; no event).
    /// A violation (§4.2, and type restrictions such as log-dirty or
    /// read-only) is then handled as the CPU and Xen would: #VE if the entry
    /// has sve 0 and the vCPU's info page is armed (§4.4); otherwise the
    /// mem_access check on the current view (§4.3). While altp2m is inactive
    /// the host p2m translates and no #VE is possible.
    ///
    /// An access that completes retires one instruction (see
    /// ``guestExecute(_:vcpu:)`` for single-stepping).
    ///
    /// - Parameters:
    ///   - offset: the byte offset in the page (only its low 12 bits are used).
    ///   - gla: the guest linear address, if the access had one.
    ///   - duringPageWalk: the access was the CPU's page walk touching a guest
    ///     page table (`npfec_kind_in_gpt`), not the instruction's own access.
    /// - Throws: ``XenErrno/notFound`` for an unknown domain;
    ///   ``XenErrno/invalid`` for a vCPU the domain lacks.
    public func guestAccess(_ domain: DomainID, vcpu: VCPUID, gfn: GFN, kind: AccessKind,
                            offset: UInt64 = 0, gla: UInt64? = nil,
                            duringPageWalk: Bool = false) throws(XenErrno) -> GuestAccessOutcome {
        try withDomain(domain) { domain throws(XenErrno) in
            guard vcpu.rawValue < UInt32(domain.vcpus.count) else { throw .invalid }
            return performAccess(&domain, vcpu: Int(vcpu.rawValue), gfn: gfn, kind: kind,
                                 offset: offset & 0xFFF, gla: gla, duringPageWalk: duringPageWalk)
        }
    }

    /// Reads `count` bytes at `offset` of `gfn` as the guest on `vcpu` would.
    /// The bytes are returned only if the access completed.
    /// - Throws: as ``guestAccess(_:vcpu:gfn:kind:offset:gla:duringPageWalk:)``,
    ///   and ``XenErrno/invalid`` if the bytes do not lie inside one page.
    public func guestRead(_ domain: DomainID, vcpu: VCPUID, gfn: GFN, offset: Int = 0,
                          count: Int) throws(XenErrno) -> GuestReadResult {
        guard offset >= 0, count >= 0, offset + count <= MachineFrame.size else { throw .invalid }
        let outcome = try guestAccess(domain, vcpu: vcpu, gfn: gfn, kind: .read, offset: UInt64(offset))
        return GuestReadResult(outcome: outcome,
                               bytes: outcome.completedMFN.flatMap {
                                   isRAMFrame($0) ? memory.read($0, offset: offset, count: count) : nil
                               })
    }

    /// Writes `bytes` at `offset` of `gfn` as the guest on `vcpu` would. The
    /// bytes reach memory only if the access completed (not, for example, on
    /// #VE, a synchronous event, or a discarded write).
    /// - Throws: as ``guestRead(_:vcpu:gfn:offset:count:)``.
    @discardableResult
    public func guestWrite(_ domain: DomainID, vcpu: VCPUID, gfn: GFN, offset: Int = 0,
                           bytes: some Collection<UInt8>) throws(XenErrno) -> GuestAccessOutcome {
        guard offset >= 0, offset + bytes.count <= MachineFrame.size else { throw .invalid }
        let outcome = try guestAccess(domain, vcpu: vcpu, gfn: gfn, kind: .write, offset: UInt64(offset))
        if let mfn = outcome.completedMFN, isRAMFrame(mfn) { memory.write(mfn, offset: offset, bytes: bytes) }
        return outcome
    }

    /// `hvm_hap_nested_page_fault` and the CPU around it, for one access.
    func performAccess(_ domain: inout Domain, vcpu: Int, gfn: GFN, kind: AccessKind,
                       offset: UInt64, gla: UInt64?, duringPageWalk: Bool) -> GuestAccessOutcome {
        if domain.isCrashed { return .domainCrashed }
        guard domain.pauseCount == 0, !domain.vcpus[vcpu].pausedByVMEvent else { return .vcpuPaused }
        let view: ViewID? = domain.isActive ? domain.vcpus[vcpu].view : nil
        var populated = false
        var relaxation: (from: MemAccess, to: MemAccess)?
        var asyncEvent: VMEventRequest?

        // Each pass either finishes or changes the entry (copy, relaxation,
        // conversion, log-dirty fix-up) so that the retried access gets
        // further; the longest chain (relax, then fix up) needs three passes.
        for _ in 0..<4 {
            let entry: P2MEntry
            if let view {
                let index = Int(view.rawValue)
                if let present = domain.views[index].entries[gfn] {
                    entry = present
                } else {
                    guard let hostEntry = domain.host.validEntry(gfn) else { return .noMapping }
                    entry = lazyCopy(&domain, view: index, gfn: gfn, from: hostEntry)
                    populated = true
                }
            } else {
                guard let hostEntry = domain.host.validEntry(gfn) else { return .noMapping }
                entry = hostEntry
            }

            let accessAllows = entry.access.permits(kind)
                || (entry.access == .readPageWalkWrite && kind == .write && duringPageWalk)
            let typeAllows = entry.type.permissionBits & UInt8(kind.bit) != 0
                || (entry.type == .ramLogDirty && kind == .write && logDirtyEntryWritable(domain))
            if accessAllows && typeAllows {
                retireInstruction(&domain, vcpu: vcpu)
                if let asyncEvent { return .vmEvent(asyncEvent, completedAt: entry.mfn) }
                if let relaxation {
                    return .relaxed(mfn: entry.mfn, view: view, from: relaxation.from, to: relaxation.to)
                }
                if populated, let view { return .lazyCopyThenOK(mfn: entry.mfn, view: view) }
                return .ok(mfn: entry.mfn, view: view)
            }

            // An EPT violation. The CPU delivers #VE itself when it can (§4.4).
            if let info = deliverHardwareVE(&domain, vcpu: vcpu, gfn: gfn, offset: offset, kind: kind,
                                            entry: entry, gla: gla, duringPageWalk: duringPageWalk) {
                return .virtualizationException(info)
            }

            if !accessAllows {
                // §4.3 step 1: on a CPU without #VE, Xen's emulated-#VE path
                // takes any violation of an sve-0 view entry as handled (§11.1).
                if let view, !host.cpu.hasVE, !entry.suppressVE { return .faultSwallowed(view: view) }

                // §4.3 step 2: p2m_mem_access_check on the current p2m.
                let current = entry.access
                if kind == .write && current == .readExecuteToReadWrite {
                    setCurrentAccess(&domain, view: view, gfn: gfn, to: .readWrite)
                    relaxation = (current, .readWrite)
                    continue
                }
                let converted = current == .noneToReadWriteExecute
                if converted { setCurrentAccess(&domain, view: view, gfn: gfn, to: .readWriteExecute) }
                guard let ring = domain.monitor else {
                    // The flag of the p2m in use (`p2m_mem_access_check`,
                    // Xen 4.17.0): the view's own, not the host's.
                    let required = view.map { domain.views[Int($0.rawValue)].accessRequired }
                        ?? domain.host.accessRequired
                    if required {
                        domain.isCrashed = true
                        return .domainCrashed
                    }
                    if !converted { setCurrentAccess(&domain, view: view, gfn: gfn, to: .readWriteExecute) }
                    relaxation = (current, .readWriteExecute)
                    continue
                }
                if ring.options.inguestPagefaultSuppressed && duringPageWalk {
                    retireInstruction(&domain, vcpu: vcpu)
                    return .emulated(mfn: entry.mfn, view: view)
                }
                let request = memAccessRequest(domain, vcpu: vcpu, gfn: gfn, offset: offset, kind: kind,
                                               gla: gla, duringPageWalk: duringPageWalk, synchronous: !converted)
                domain.monitor?.pending.append(request)
                if converted {
                    asyncEvent = request   // the vCPU goes on; the retry completes
                    continue
                }
                domain.vcpus[vcpu].pausedByVMEvent = true
                return .vmEvent(request, completedAt: nil)
            }

            // The access type allows it but the p2m type does not.
            if kind == .write && entry.type == .ramLogDirty {
                fixUpLogDirty(&domain, gfn: gfn)
                continue
            }
            if kind == .write && (entry.type == .ramRO || entry.type == .grantMapRO) {
                retireInstruction(&domain, vcpu: vcpu)
                return .writeDiscarded(mfn: entry.mfn, view: view)
            }
            // No handler accepts it (for example, executing a grant mapping):
            // Xen crashes the domain.
            domain.isCrashed = true
            return .domainCrashed
        }
        // Every retry but one changes the entry: a write to a view entry left
        // log-dirty while the host entry is not (p2m_change_type_one gives
        // EBUSY and nothing fixes the view) faults for ever in Xen; this
        // reports that livelock.
        return .faultSwallowed(view: view ?? .invalid)
    }

    /// Copies the host entry into a view (§4.1): host mfn and type, sve 1,
    /// and the host entry's access (4.17) or the view's default (≥4.19).
    ///
    /// Not a generation change: the copy holds exactly what the guest would
    /// have derived from the host entry and the view default.
    private func lazyCopy(_ domain: inout Domain, view index: Int, gfn: GFN, from hostEntry: P2MEntry) -> P2MEntry {
        let access = host.xen.lazyCopyUsesViewDefault ? domain.views[index].defaultAccess : hostEntry.access
        let copy = P2MEntry(mfn: hostEntry.mfn, type: hostEntry.type, access: access, suppressVE: true)
        domain.views[index].entries[gfn] = copy
        return copy
    }

    /// Rewrites the access of the entry the access used: the view's, or the
    /// host's while altp2m is inactive (a host write, sve kept).
    private func setCurrentAccess(_ domain: inout Domain, view: ViewID?, gfn: GFN, to access: MemAccess) {
        if let view {
            domain.views[Int(view.rawValue)].entries[gfn]?.access = access
            domain.bumpGeneration()
        } else if var entry = domain.host.entries[gfn] {
            entry.access = access
            hostWrite(&domain, at: gfn, entry)
        }
    }

    /// The log-dirty write fix-up of `hvm_hap_nested_page_fault` (Xen
    /// 4.17.0 to 4.21): the page is marked dirty and `p2m_change_type_one`
    /// turns the **host** entry from log-dirty back to `p2m_ram_rw` with the
    /// host's default access, a host write that propagates into every view
    /// holding the gfn (so a view's own restriction, or a remap, at that gfn
    /// is replaced). `EBUSY` (the host entry is not log-dirty) is ignored,
    /// and nothing rewrites the view's entry directly: the fault is retried
    /// as it is.
    private func fixUpLogDirty(_ domain: inout Domain, gfn: GFN) {
        try? changeTypeOne(&domain, gfn: gfn, from: .ramLogDirty, to: .ramRW)
    }

    /// Delivers a hardware #VE if the SDM conditions hold (§4.4): a CPU with
    /// #VE, the vCPU's #VE enabled, the deciding entry with sve 0, and the
    /// semaphore in the info page at 0. Writes the info page (setting the
    /// semaphore to 0xFFFFFFFF) and returns it, or returns `nil` for a VM exit.
    private func deliverHardwareVE(_ domain: inout Domain, vcpu: Int, gfn: GFN, offset: UInt64,
                                   kind: AccessKind, entry: P2MEntry, gla: UInt64?,
                                   duringPageWalk: Bool) -> VEInfo? {
        guard host.cpu.hasVE, !entry.suppressVE, let page = domain.vcpus[vcpu].notify else { return nil }
        guard memory.load(UInt32.self, mfn: page.mfn, offset: VEInfo.Offset.semaphore) == 0 else { return nil }
        let info = VEInfo(exitQualification: EPTViolationQualification(kind: kind, permissions: entry.permissionBits,
                                                                       glaValid: gla != nil,
                                                                       duringPageWalk: duringPageWalk),
                          guestLinearAddress: gla ?? 0,
                          guestPhysicalAddress: gfn.address(offset: offset),
                          eptpIndex: domain.vcpus[vcpu].view.rawValue)
        info.write(to: page.mfn, of: memory)
        return info
    }

    /// A `VM_EVENT_REASON_MEM_ACCESS` request (§7).
    ///
    /// A write carries `MEM_ACCESS_R | MEM_ACCESS_W`: `ept_handle_violation`
    /// (Xen 4.17.0, unchanged to 4.21) builds the fault's `read_access` as
    /// "read or write", and `p2m_mem_access_check` turns each of the fault's
    /// bits into a flag.
    private func memAccessRequest(_ domain: Domain, vcpu: Int, gfn: GFN, offset: UInt64, kind: AccessKind,
                                  gla: UInt64?, duringPageWalk: Bool, synchronous: Bool) -> VMEventRequest {
        var flags = MemAccessEventFlags(kind)
        if kind == .write { flags.insert(.read) }
        if gla != nil { flags.insert(.glaValid) }
        if duringPageWalk {
            flags.insert(.faultInGPT)
        } else if gla != nil {
            flags.insert(.faultWithGLA)
        }
        return monitorRequest(domain, vcpu: vcpu, reason: .memAccess, synchronous: synchronous,
                              memAccess: MemAccessEventData(gfn: gfn, offset: offset, gla: gla ?? 0, flags: flags))
    }
}
