#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import Synchronization

extension SimGuest {
    /// The daemon connection and the mapped shared files of an attached
    /// guest process, with every vCPU's words: the process's threads may run
    /// on any of the domain's vCPUs it attached for, and each operation acts
    /// on the vCPU its thread is on at that moment (``GuestThread``).
    final class SharedState {
        let client: SimClient
        let memory: SharedFileMapping
        let control: SharedFileMapping
        let vcpuPages: SharedFileMapping
        let generation: UnsafePointer<Atomic<UInt64>>
        let tables: UnsafePointer<Atomic<UInt64>>
        let gfnCount: Int
        let viewCount: Int
        let vcpuCount: Int
        let window: GuestWindow?
        // A cache of the control region, valid for `cachedGeneration`.
        var cachedGeneration: UInt64 = ~0
        /// Each vCPU's flags (VMFUNC enabled, runnable, #VE), from the cache.
        let flags: UnsafeMutablePointer<UInt32>
        var active = false
        var visible = VisibleViewBits()
        /// The vCPU and view word the window was last synced for.
        var windowView: UInt32 = ~0
        var windowVCPU = -1
        var windowGeneration: UInt64 = ~0

        init(client: SimClient, memory: SharedFileMapping, control: SharedFileMapping, vcpuPages: SharedFileMapping,
             vcpus: [Int], window: Bool) throws(SimGuestError) {
            self.client = client
            self.memory = memory
            self.control = control
            self.vcpuPages = vcpuPages
            let base = UnsafeRawPointer(control.base)
            guard control.size >= ControlRegionLayout.headerSize,
                  base.load(as: UInt32.self) == ControlRegionLayout.magic,
                  base.load(fromByteOffset: 4, as: UInt32.self) == ControlRegionLayout.version
            else { throw .protocolMismatch("the control region has an unknown layout") }
            gfnCount = Int(base.load(fromByteOffset: ControlRegionLayout.gfnCountOffset, as: UInt64.self))
            viewCount = Int(base.load(fromByteOffset: ControlRegionLayout.viewCountOffset, as: UInt32.self))
            let count = Int(base.load(fromByteOffset: ControlRegionLayout.vcpuCountOffset, as: UInt32.self))
            vcpuCount = count
            guard vcpus.allSatisfy({ $0 < count }),
                  control.size >= ControlRegionLayout.fileSize(viewCount: viewCount, gfnCount: gfnCount),
                  vcpuPages.size >= ControlRegionLayout.vcpuPageFileSize
            else { throw .protocolMismatch("the control region is smaller than its header says") }
            generation = (base + ControlRegionLayout.generationOffset).assumingMemoryBound(to: Atomic<UInt64>.self)
            tables = (base + ControlRegionLayout.headerSize).assumingMemoryBound(to: Atomic<UInt64>.self)
            flags = .allocate(capacity: max(vcpuCount, 1))
            flags.initialize(repeating: 0, count: max(vcpuCount, 1))
            do {
                self.window = window ? try GuestWindow(gfnCount: gfnCount, memoryFD: memory.fd) : nil
            } catch {
                flags.deallocate()
                throw .system(error)
            }
        }

        deinit { flags.deallocate() }

        /// The guest-writable view word of `vcpu` (its EPTP index).
        @inline(__always)
        func viewWord(_ vcpu: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
            (vcpuPages.base + vcpu * ControlRegionLayout.vcpuPageStride).assumingMemoryBound(to: Atomic<UInt32>.self)
        }

        /// Re-reads the cached part of the control region if it changed.
        @inline(__always)
        func refresh() {
            let now = generation.pointee.load(ordering: .acquiring)
            if now != cachedGeneration { reload(now) }
        }

        func reload(_ now: UInt64) {
            let base = UnsafeRawPointer(control.base)
            for vcpu in 0..<vcpuCount {
                let slot = base + ControlRegionLayout.vcpuInfoOffset + vcpu * ControlRegionLayout.vcpuInfoStride
                flags[vcpu] = slot.assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .acquiring)
            }
            active = base.load(fromByteOffset: ControlRegionLayout.flagsOffset, as: UInt32.self)
                & ControlRegionLayout.flagActive != 0
            visible = VisibleViewBits(loadingFrom: base + ControlRegionLayout.visibleBitmapOffset)
            cachedGeneration = now
        }

        @inline(__always)
        func isRunnable(_ vcpu: Int) -> Bool {
            flags[vcpu] & ControlRegionLayout.vcpuFlagRunnable != 0
        }

        /// The local VMFUNC on `vcpu` (see ``SimGuest/vmfunc(_:eax:)``).
        @inline(__always)
        func vmfunc(_ index: UInt32, eax: UInt32, vcpu: Int) -> VMFUNCOutcome {
            refresh()
            var vflags = flags[vcpu]
            if vflags & ControlRegionLayout.vcpuFlagRunnable == 0 {
                guard waitUntilRunnable(vcpu) else { return .vcpuNotRunning }
                vflags = flags[vcpu]
            }
            guard vflags & ControlRegionLayout.vcpuFlagVMFUNC != 0 else { return .invalidOpcode(.vmfuncDisabled) }
            guard eax == 0, index < 512, active, visible.contains(index) else { return .invalidOpcode(.vmExit) }
            // One writer besides the daemon's compare-and-swap for dom0 switches;
            // if that lands between these two, this VMFUNC is the later event.
            let word = viewWord(vcpu)
            let from = word.pointee.load(ordering: .relaxed)
            word.pointee.store(index, ordering: .releasing)
            if window != nil { syncWindow(vcpu: vcpu) }
            return .switched(from: ViewID(UInt16(truncatingIfNeeded: from)), to: ViewID(UInt16(truncatingIfNeeded: index)))
        }

        /// A vCPU that is not runnable but whose domain lives is paused
        /// (dom0's `xc_domain_pause`, or a vm_event awaiting its answer):
        /// on Xen its thread does not run at all, so the instruction waits
        /// until the vCPU runs again. False when the domain crashed or was
        /// destroyed (the instruction never completes).
        func waitUntilRunnable(_ vcpu: Int) -> Bool {
            let dead = ControlRegionLayout.flagCrashed | ControlRegionLayout.flagDestroyed
            while true {
                refresh()
                if flags[vcpu] & ControlRegionLayout.vcpuFlagRunnable != 0 { return true }
                let domainFlags = UnsafeRawPointer(control.base).load(fromByteOffset: ControlRegionLayout.flagsOffset,
                                                                        as: UInt32.self)
                if domainFlags & dead != 0 { return false }
                usleep(50)
            }
        }

        /// The table `vcpu` uses now (0 host, 1 + v view v), or nil.
        @inline(__always)
        func currentTable(vcpu: Int) -> Int? {
            guard active else { return 0 }
            let view = viewWord(vcpu).pointee.load(ordering: .relaxed)
            return Int(view) < viewCount ? Int(view) + 1 : nil
        }

        /// The encoded entry for `gfn` in `vcpu`'s current table (0 if none).
        @inline(__always)
        func entry(_ gfn: GFN, vcpu: Int) -> UInt64 {
            guard gfn.rawValue < UInt64(gfnCount), let table = currentTable(vcpu: vcpu) else { return 0 }
            return tables[table * gfnCount + Int(gfn.rawValue)].load(ordering: .acquiring)
        }

        /// Brings the window in step with `vcpu`'s current view and the
        /// generation. The process has one address space: the window shows
        /// the view of the vCPU whose thread touched it last.
        func syncWindow(vcpu: Int) {
            guard let window else { return }
            refresh()
            let view = viewWord(vcpu).pointee.load(ordering: .relaxed)
            guard view != windowView || vcpu != windowVCPU || cachedGeneration != windowGeneration else { return }
            let index = currentTable(vcpu: vcpu) ?? 0
            do {
                try window.sync(table: tables + index * gfnCount, index: index)
                windowView = view
                windowVCPU = vcpu
                windowGeneration = cachedGeneration
            } catch {
                // The window keeps its old pages; the next sync tries again.
                windowGeneration = ~0
            }
        }
    }
}
