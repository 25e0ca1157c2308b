import Altp2m

/// Guest memory accesses: each through the view of the vCPU the calling
/// thread is on at the moment of the access (after its schedule point).
extension SimGuest {
    // MARK: Memory

    /// Reads `buffer.count` bytes at `offset` of `gfn`, as the main thread
    /// would on the vCPU it is on (through that vCPU's current view).
    /// - Throws: ``GuestMemoryFault`` when the access does not complete.
    public func read(gfn: GFN, offset: Int = 0, into buffer: UnsafeMutableRawBufferPointer) throws(GuestMemoryFault) {
        try read(gfn: gfn, offset: offset, into: buffer, thread: mainThread)
    }

    func read(gfn: GFN, offset: Int, into buffer: UnsafeMutableRawBufferPointer,
              thread: GuestThread) throws(GuestMemoryFault) {
        guard offset >= 0, offset + buffer.count <= 4096 else { throw .outsidePage }
        try read(gfn: gfn, offset: offset, into: buffer, vcpu: schedule(thread, .read))
    }

    /// The read on `vcpu`, after the schedule point (or with none, for a
    /// caller that just took it).
    func read(gfn: GFN, offset: Int, into buffer: UnsafeMutableRawBufferPointer, vcpu: Int) throws(GuestMemoryFault) {
        guard offset >= 0, offset + buffer.count <= 4096 else { throw .outsidePage }
        guard let s = shared else { return try inProcessRead(gfn: gfn, offset: offset, into: buffer, vcpu: vcpu) }
        s.refresh()
        if let window = s.window {
            s.syncWindow(vcpu: vcpu)
            if s.isRunnable(vcpu), ControlRegionLayout.permits(s.entry(gfn, vcpu: vcpu), .read),
               window.tableIndex == (s.currentTable(vcpu: vcpu) ?? -2) {
                buffer.copyMemory(from: UnsafeRawBufferPointer(start: window.base + Int(gfn.rawValue) * 4096 + offset,
                                                               count: buffer.count))
                return
            }
        } else {
            let raw = s.entry(gfn, vcpu: vcpu)
            if s.isRunnable(vcpu), ControlRegionLayout.permits(raw, .read) {
                let source = s.memory.base + Int(ControlRegionLayout.mfn(raw)) * 4096 + offset
                buffer.copyMemory(from: UnsafeRawBufferPointer(start: source, count: buffer.count))
                return
            }
        }
        guard let mfn = try slowAccess(gfn: gfn, kind: .read, offset: offset, vcpu: vcpu) else { return }
        let source = s.memory.base + Int(mfn) * 4096 + offset
        buffer.copyMemory(from: UnsafeRawBufferPointer(start: source, count: buffer.count))
    }

    /// Writes `bytes` at `offset` of `gfn`, as the main thread would on the
    /// vCPU it is on.
    /// - Throws: ``GuestMemoryFault`` when the access does not complete.
    public func write(gfn: GFN, offset: Int = 0, from bytes: UnsafeRawBufferPointer) throws(GuestMemoryFault) {
        try write(gfn: gfn, offset: offset, from: bytes, thread: mainThread)
    }

    func write(gfn: GFN, offset: Int, from bytes: UnsafeRawBufferPointer, thread: GuestThread) throws(GuestMemoryFault) {
        guard offset >= 0, offset + bytes.count <= 4096 else { throw .outsidePage }
        let vcpu = schedule(thread, .write)
        guard let s = shared else { return try inProcessWrite(gfn: gfn, offset: offset, from: bytes, vcpu: vcpu) }
        s.refresh()
        if let window = s.window {
            s.syncWindow(vcpu: vcpu)
            if s.isRunnable(vcpu), ControlRegionLayout.permits(s.entry(gfn, vcpu: vcpu), .write),
               window.tableIndex == (s.currentTable(vcpu: vcpu) ?? -2) {
                (window.base + Int(gfn.rawValue) * 4096 + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                return
            }
        } else {
            let raw = s.entry(gfn, vcpu: vcpu)
            if s.isRunnable(vcpu), ControlRegionLayout.permits(raw, .write) {
                if bytes.count > 0 {
                    (s.memory.base + Int(ControlRegionLayout.mfn(raw)) * 4096 + offset)
                        .copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                }
                return
            }
        }
        guard let mfn = try slowAccess(gfn: gfn, kind: .write, offset: offset, vcpu: vcpu), bytes.count > 0 else { return }
        (s.memory.base + Int(mfn) * 4096 + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    }

    /// Reads `count` bytes (convenience over ``read(gfn:offset:into:)``).
    public func read(gfn: GFN, offset: Int = 0, count: Int) throws(GuestMemoryFault) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var fault: GuestMemoryFault?
        bytes.withUnsafeMutableBytes { buffer in
            do throws(GuestMemoryFault) { try read(gfn: gfn, offset: offset, into: buffer) } catch { fault = error }
        }
        if let fault { throw fault }
        return bytes
    }

    /// Writes `bytes` (convenience over ``write(gfn:offset:from:)``).
    public func write(gfn: GFN, offset: Int = 0, bytes: [UInt8]) throws(GuestMemoryFault) {
        var fault: GuestMemoryFault?
        bytes.withUnsafeBytes { buffer in
            do throws(GuestMemoryFault) { try write(gfn: gfn, offset: offset, from: buffer) } catch { fault = error }
        }
        if let fault { throw fault }
    }

    /// Asks the daemon to run the fault path for an access the local tables
    /// do not allow. Returns the frame to access, or nil when the access
    /// completed without moving data (a discarded write).
    private func slowAccess(gfn: GFN, kind: AccessKind, offset: Int, vcpu: Int) throws(GuestMemoryFault) -> UInt64? {
        guard let s = shared else { return nil }
        let response: JSONValue
        do {
            response = try s.client.call("guest.access", [
                "vcpu": .int(Int64(vcpu)), "gfn": .uint(gfn.rawValue),
                "kind": .string(kind == .read ? "r" : kind == .write ? "w" : "x"), "offset": .int(Int64(offset)),
            ])
        } catch {
            throw .simulatorUnavailable(error.description)
        }
        s.refresh()
        s.syncWindow(vcpu: vcpu)
        let mfn = response["mfn"]?.string.flatMap { UInt64($0.dropFirst(2), radix: 16) }
        switch response["outcome"]?.string ?? "" {
        case "ok", "lazy_copy_then_ok", "relaxed", "emulated":
            guard let mfn else { throw .simulatorUnavailable("the daemon answered without a frame") }
            return mfn
        case "write_discarded": return nil
        case "vm_event":
            if let mfn { return mfn }
            throw .vmEvent(paused: response["paused"]?.bool ?? true)
        case "ve": throw .virtualizationException(Self.veInfo(response["ve"]))
        case "no_mapping": throw .noMapping
        case "domain_crashed": throw .domainCrashed
        case "vcpu_paused": throw .vcpuPaused
        case "fault_swallowed": throw .faultSwallowed
        case let other: throw .simulatorUnavailable("unknown outcome '\(other)'")
        }
    }

    static func veInfo(_ json: JSONValue?) -> VEInfo {
        func hex(_ key: String) -> UInt64 { json?[key]?.string.flatMap { UInt64($0.dropFirst(2), radix: 16) } ?? 0 }
        return VEInfo(exitReason: UInt32(truncatingIfNeeded: json?["exit_reason"]?.int64 ?? 48),
                      semaphore: UInt32(truncatingIfNeeded: json?["semaphore"]?.uint64 ?? 0xFFFF_FFFF),
                      exitQualification: EPTViolationQualification(rawValue: hex("exit_qualification")),
                      guestLinearAddress: hex("gla"), guestPhysicalAddress: hex("gpa"),
                      eptpIndex: UInt16(truncatingIfNeeded: json?["eptp_index"]?.int64 ?? 0))
    }

    private func inProcessRead(gfn: GFN, offset: Int, into buffer: UnsafeMutableRawBufferPointer,
                               vcpu: Int) throws(GuestMemoryFault) {
        guard let engine else { throw .domainCrashed }
        let result: GuestReadResult
        do { result = try engine.guestRead(domain, vcpu: VCPUID(UInt32(vcpu)), gfn: gfn, offset: offset, count: buffer.count) } catch {
            throw .simulatorUnavailable(error.description)
        }
        if let bytes = result.bytes {
            bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
            return
        }
        throw Self.fault(result.outcome)
    }

    private func inProcessWrite(gfn: GFN, offset: Int, from bytes: UnsafeRawBufferPointer,
                                vcpu: Int) throws(GuestMemoryFault) {
        guard let engine else { throw .domainCrashed }
        let outcome: GuestAccessOutcome
        do { outcome = try engine.guestWrite(domain, vcpu: VCPUID(UInt32(vcpu)), gfn: gfn, offset: offset, bytes: bytes) } catch {
            throw .simulatorUnavailable(error.description)
        }
        if outcome.completedMFN != nil { return }
        if case .writeDiscarded = outcome { return }
        throw Self.fault(outcome)
    }

    static func fault(_ outcome: GuestAccessOutcome) -> GuestMemoryFault {
        switch outcome {
        case .virtualizationException(let info): .virtualizationException(info)
        case .vmEvent(let request, _): .vmEvent(paused: request.isSynchronous)
        case .noMapping: .noMapping
        case .domainCrashed: .domainCrashed
        case .vcpuPaused: .vcpuPaused
        case .faultSwallowed: .faultSwallowed
        default: .simulatorUnavailable("unexpected outcome \(outcome)")
        }
    }

}
