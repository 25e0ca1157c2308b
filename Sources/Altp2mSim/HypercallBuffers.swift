/// Guest memory that a hypercall copies arrays from (the `pfn_list` and
/// `access_list` handles of `set_mem_access_multi`).
///
/// libxenctrl bounces the caller's arrays into hypercall buffers and passes
/// their addresses; here a buffer is registered under a handle, and a read
/// outside any registered buffer is a copy fault (`EFAULT`).
public struct HypercallBuffers: Hashable, Sendable {
    private var regions: [UInt64: [UInt8]] = [:]
    private var nextHandle: UInt64 = 0x1000_0000

    /// No buffers: every handle faults.
    public init() {}

    /// Registers `bytes` and returns its handle.
    public mutating func add(_ bytes: [UInt8]) -> UInt64 {
        let handle = nextHandle
        regions[handle] = bytes
        // Keep handles far apart, like distinct allocations.
        nextHandle += UInt64(max(bytes.count, 1) + 0xFFFF) & ~0xFFFF
        return handle
    }

    /// Registers an array of little-endian `UInt64` (a `pfn_list`).
    public mutating func add(words: [UInt64]) -> UInt64 {
        add(words.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } })
    }

    /// Reads `count` bytes at `handle + offset`, or `nil` (a copy fault).
    func read(_ handle: UInt64, offset: Int, count: Int) -> ArraySlice<UInt8>? {
        guard let region = regions[handle], offset >= 0, count >= 0, offset + count <= region.count else {
            return nil
        }
        return region[offset..<(offset + count)]
    }

    /// Reads element `index` of a `UInt64` array at `handle`, or `nil`.
    func word(_ handle: UInt64, index: Int) -> UInt64? {
        guard let bytes = read(handle, offset: index * 8, count: 8) else { return nil }
        return bytes.reversed().reduce(0) { ($0 << 8) | UInt64($1) }
    }

    /// Reads element `index` of a `UInt8` array at `handle`, or `nil`.
    func byte(_ handle: UInt64, index: Int) -> UInt8? {
        read(handle, offset: index, count: 1)?.first
    }
}
