import Altp2m
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The daemon's record of one guest domain: its name and token, and the two
/// shared files guest processes map (the read-only control region and the
/// guest-writable vCPU pages), kept in step with the engine.
final class DaemonDomain {
    let id: DomainID
    let name: String
    let token: String
    let vcpuCount: Int
    let viewCount: Int
    /// gfns `0..<gfnCount` have table slots; others always take a round trip.
    let gfnCount: Int
    let control: SharedFileMapping
    let vcpuPages: SharedFileMapping
    let controlPath: String
    let vcpuPagePath: String

    /// The engine generation the tables were last rebuilt at.
    private var tableGeneration: UInt64?
    /// What each table holds (gfn → encoded entry), to rewrite only changes.
    private var written: [[UInt64: UInt64]]
    /// The view the daemon last put in each vCPU's page (what a guest VMFUNC
    /// is detected against).
    var publishedViews: [UInt32]
    /// Whether each vCPU's current view is one a guest VMFUNC chose (not
    /// dom0 or a vm_event response): that is what a leaving process undoes.
    var guestSwitched: [Bool]

    init(id: DomainID, name: String, token: String, vcpuCount: Int, viewCount: Int, gfnCount: Int,
         directory: StateDirectory) throws(SystemCallError) {
        self.id = id
        self.name = name
        self.token = token
        self.vcpuCount = vcpuCount
        self.viewCount = viewCount
        self.gfnCount = gfnCount
        controlPath = directory.controlPath(domain: id.rawValue)
        vcpuPagePath = directory.vcpuPagePath(domain: id.rawValue)
        // A fresh domain starts from empty files (a destroyed domain with the
        // same id may have left its own behind after a crash).
        unlink(controlPath)
        unlink(vcpuPagePath)
        control = try SharedFileMapping(path: controlPath,
                                        size: ControlRegionLayout.fileSize(viewCount: viewCount, gfnCount: gfnCount))
        vcpuPages = try SharedFileMapping(path: vcpuPagePath, size: ControlRegionLayout.vcpuPageFileSize)
        written = Array(repeating: [:], count: viewCount + 1)
        publishedViews = Array(repeating: UInt32(ViewID.invalid.rawValue), count: vcpuCount)
        guestSwitched = Array(repeating: false, count: vcpuCount)

        let c = control.base
        c.storeBytes(of: ControlRegionLayout.magic, toByteOffset: 0, as: UInt32.self)
        c.storeBytes(of: ControlRegionLayout.version, toByteOffset: 4, as: UInt32.self)
        c.storeBytes(of: id.rawValue, toByteOffset: ControlRegionLayout.domainOffset, as: UInt16.self)
        c.storeBytes(of: UInt16(viewCount + 1), toByteOffset: ControlRegionLayout.tableCountOffset, as: UInt16.self)
        c.storeBytes(of: UInt32(vcpuCount), toByteOffset: ControlRegionLayout.vcpuCountOffset, as: UInt32.self)
        c.storeBytes(of: UInt64(gfnCount), toByteOffset: ControlRegionLayout.gfnCountOffset, as: UInt64.self)
        c.storeBytes(of: UInt32(viewCount), toByteOffset: ControlRegionLayout.viewCountOffset, as: UInt32.self)
        c.storeBytes(of: UInt64(ControlRegionLayout.headerSize), toByteOffset: ControlRegionLayout.tableOffsetOffset, as: UInt64.self)
        c.storeBytes(of: UInt64(ControlRegionLayout.tableStride(gfnCount: gfnCount)),
                     toByteOffset: ControlRegionLayout.tableStrideOffset, as: UInt64.self)
        for vcpu in 0..<vcpuCount { vcpuView(vcpu).pointee.store(UInt32(ViewID.invalid.rawValue), ordering: .releasing) }
    }

    /// Removes the shared files (the domain was destroyed).
    func removeFiles() {
        unlink(controlPath)
        unlink(vcpuPagePath)
    }

    // MARK: Shared words

    private var generationWord: UnsafeMutablePointer<Atomic<UInt64>> {
        (control.base + ControlRegionLayout.generationOffset).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// The u32 view word of a vCPU's guest-writable page.
    func vcpuView(_ vcpu: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (vcpuPages.base + vcpu * ControlRegionLayout.vcpuPageStride).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    private func u32(_ offset: Int) -> UInt32 { control.base.load(fromByteOffset: offset, as: UInt32.self) }
    private func u64(_ offset: Int) -> UInt64 { control.base.load(fromByteOffset: offset, as: UInt64.self) }

    private func table(_ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (control.base + ControlRegionLayout.headerSize + index * ControlRegionLayout.tableStride(gfnCount: gfnCount))
            .assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    // MARK: Refresh from the engine

    /// Brings the control region in step with the engine: the header and
    /// vCPU words always, every table when the engine's generation moved (or
    /// `force`), and the given gfns in every table (what a guest access may
    /// have filled in by lazy copy, which does not move the generation).
    /// Bumps the control generation if anything changed.
    func refresh(from engine: Altp2mEngine, force: Bool = false, gfns: [GFN] = []) {
        guard let state = engine.controlRegionState(id) else { return }
        var changed = false

        var flags: UInt32 = 0
        if state.isActive { flags |= ControlRegionLayout.flagActive }
        if state.isCrashed { flags |= ControlRegionLayout.flagCrashed }
        changed = store32(flags, at: ControlRegionLayout.flagsOffset) || changed
        for word in 0..<8 {
            changed = store64(state.visible[word], at: ControlRegionLayout.visibleBitmapOffset + word * 8) || changed
            changed = store64(state.active[word], at: ControlRegionLayout.activeBitmapOffset + word * 8) || changed
        }
        for (index, vcpu) in state.vcpus.enumerated() where index < vcpuCount {
            var vflags: UInt32 = 0
            if vcpu.vmfuncEnabled { vflags |= ControlRegionLayout.vcpuFlagVMFUNC }
            if vcpu.runnable { vflags |= ControlRegionLayout.vcpuFlagRunnable }
            if vcpu.notifyGFN != nil { vflags |= ControlRegionLayout.vcpuFlagVE }
            let slot = ControlRegionLayout.vcpuInfoOffset + index * ControlRegionLayout.vcpuInfoStride
            changed = store32(vflags, at: slot) || changed
            changed = store32(UInt32(vcpu.view.rawValue), at: slot + 4) || changed
            changed = store64(vcpu.notifyGFN?.rawValue ?? ~0, at: slot + 8) || changed
        }

        if force || tableGeneration != state.generation {
            changed = rebuildTables(from: engine) || changed
            tableGeneration = state.generation
        } else {
            for gfn in gfns { changed = refreshEntry(gfn, from: engine) || changed }
        }
        if changed { _ = generationWord.pointee.wrappingAdd(1, ordering: .releasing) }
    }

    /// Puts the engine's view of each vCPU into its guest-writable page where
    /// it differs from what the daemon last published (dom0 switched it, a
    /// vm_event response moved it, altp2m was turned on or off).
    func publishViews(from engine: Altp2mEngine) {
        for vcpu in 0..<vcpuCount {
            guard let info = try? engine.vcpuInfo(id, vcpu: VCPUID(UInt32(vcpu))) else { continue }
            let view = UInt32(info.view.rawValue)
            guard view != publishedViews[vcpu] else { continue }
            let expected = publishedViews[vcpu]
            // If the guest moved meanwhile, its VMFUNC came after this change:
            // leave its value for the next sync.
            _ = vcpuView(vcpu).pointee.compareExchange(expected: expected, desired: view, ordering: .acquiringAndReleasing)
            publishedViews[vcpu] = view
            guestSwitched[vcpu] = false
        }
    }

    private func rebuildTables(from engine: Altp2mEngine) -> Bool {
        var changed = false
        for index in 0...viewCount {
            var fresh: [UInt64: UInt64] = [:]
            fresh.reserveCapacity(written[index].count)
            let slots = table(index)
            engine.forEachEntry(id, table: index, below: UInt64(gfnCount)) { gfn, entry in
                let raw = ControlRegionLayout.encode(entry)
                fresh[gfn.rawValue] = raw
                if written[index][gfn.rawValue] != raw {
                    slots[Int(gfn.rawValue)].store(raw, ordering: .releasing)
                    changed = true
                }
            }
            for gfn in written[index].keys where fresh[gfn] == nil {
                slots[Int(gfn)].store(0, ordering: .releasing)
                changed = true
            }
            written[index] = fresh
        }
        return changed
    }

    private func refreshEntry(_ gfn: GFN, from engine: Altp2mEngine) -> Bool {
        guard gfn.rawValue < UInt64(gfnCount) else { return false }
        var changed = false
        for index in 0...viewCount {
            let raw = engine.tableEntry(id, table: index, gfn: gfn).map(ControlRegionLayout.encode) ?? 0
            guard (written[index][gfn.rawValue] ?? 0) != raw else { continue }
            table(index)[Int(gfn.rawValue)].store(raw, ordering: .releasing)
            written[index][gfn.rawValue] = raw == 0 ? nil : raw
            changed = true
        }
        return changed
    }

    private func store32(_ value: UInt32, at offset: Int) -> Bool {
        guard u32(offset) != value else { return false }
        (control.base + offset).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.store(value, ordering: .releasing)
        return true
    }

    private func store64(_ value: UInt64, at offset: Int) -> Bool {
        guard u64(offset) != value else { return false }
        (control.base + offset).assumingMemoryBound(to: Atomic<UInt64>.self).pointee.store(value, ordering: .releasing)
        return true
    }

    /// Marks the control region of a destroyed domain, so attached guests see it.
    func markDestroyed() {
        let flags = u32(ControlRegionLayout.flagsOffset) | ControlRegionLayout.flagDestroyed | ControlRegionLayout.flagCrashed
        _ = store32(flags, at: ControlRegionLayout.flagsOffset)
        for index in 0..<vcpuCount {
            let slot = ControlRegionLayout.vcpuInfoOffset + index * ControlRegionLayout.vcpuInfoStride
            _ = store32(u32(slot) & ~ControlRegionLayout.vcpuFlagRunnable, at: slot)
        }
        _ = generationWord.pointee.wrappingAdd(1, ordering: .releasing)
    }
}
