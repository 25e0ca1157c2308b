#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import Synchronization

/// The guest-physical window of `mprotect` enforcement: one page of address
/// space per gfn, each mapped `MAP_FIXED` from the machine-memory file at the
/// frame the current view's entry names, with the protection its access
/// allows, or left `PROT_NONE` where the view has no entry or allows nothing.
/// A stray access through the window faults in the kernel exactly where the
/// CPU would take an EPT violation.
///
/// Write-only and execute-only entries (`w`, `x`, `wx` without `r`) cannot be
/// expressed with page protections and are mapped `PROT_NONE`; instruction
/// fetches are never made from the window.
final class GuestWindow {
    let base: UnsafeMutableRawPointer
    let gfnCount: Int
    private let memoryFD: Int32
    /// What each page holds now: 0 for none, else `mfn << 8 | 0x80 | prot`.
    private var mapped: [UInt64]
    /// The table the window shows (0 host, 1 + v view v), or -1 before the first sync.
    private(set) var tableIndex = -1

    init(gfnCount: Int, memoryFD: Int32) throws(SystemCallError) {
        let size = gfnCount * 4096
        let pointer = mmap(nil, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let pointer, pointer != MAP_FAILED else { throw SystemCallError("mmap (guest window)") }
        base = pointer
        self.gfnCount = gfnCount
        self.memoryFD = memoryFD
        mapped = Array(repeating: 0, count: gfnCount)
    }

    deinit { munmap(base, gfnCount * 4096) }

    /// The protection an encoded table entry allows.
    static func protection(_ raw: UInt64) -> Int32 {
        guard raw & ControlRegionLayout.entryPresent != 0 else { return PROT_NONE }
        let bits = (raw >> 4) & 7
        guard bits & 1 != 0 else { return PROT_NONE }
        return bits & 2 != 0 ? PROT_READ | PROT_WRITE : PROT_READ
    }

    /// Remaps every page whose entry in `table` differs from what is mapped,
    /// in runs of contiguous gfns (one `mmap` per run).
    func sync(table: UnsafePointer<Atomic<UInt64>>, index: Int) throws(SystemCallError) {
        tableIndex = index
        var gfn = 0
        while gfn < gfnCount {
            let key = Self.key(table[gfn].load(ordering: .acquiring))
            if key == mapped[gfn] { gfn += 1; continue }
            // Extend the run: absent pages together, present pages with
            // consecutive frames and the same protection together.
            var end = gfn + 1
            while end < gfnCount {
                let next = Self.key(table[end].load(ordering: .acquiring))
                if next == mapped[end] { break }
                if key == 0 ? next != 0 : next != key &+ UInt64(end - gfn) << 8 { break }
                end += 1
            }
            try map(first: gfn, count: end - gfn, key: key)
            for page in gfn..<end { mapped[page] = key == 0 ? 0 : key &+ UInt64(page - gfn) << 8 }
            gfn = end
        }
    }

    private static func key(_ raw: UInt64) -> UInt64 {
        let prot = protection(raw)
        guard raw & ControlRegionLayout.entryPresent != 0, prot != PROT_NONE else { return 0 }
        return ControlRegionLayout.mfn(raw) << 8 | 0x80 | UInt64(prot)
    }

    private func map(first: Int, count: Int, key: UInt64) throws(SystemCallError) {
        let address = base + first * 4096
        let length = count * 4096
        let result: UnsafeMutableRawPointer?
        if key == 0 {
            result = mmap(address, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0)
        } else {
            let mfn = key >> 8
            result = mmap(address, length, Int32(key & 0x7), MAP_SHARED | MAP_FIXED, memoryFD, off_t(mfn * 4096))
        }
        guard result == address else { throw SystemCallError("mmap (guest window, gfn 0x\(String(first, radix: 16)))") }
    }
}
