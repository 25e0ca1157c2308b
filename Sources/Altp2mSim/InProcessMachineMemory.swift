#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Altp2m

/// Machine memory in this process: one private anonymous mapping of
/// `frameCount` frames, page-aligned and zero-filled by the kernel on first
/// touch (so a large, mostly unused memory costs little).
///
/// Used by tests, examples and benchmarks that run the engine without the
/// daemon. Not thread-safe: one owner, like the engine.
public final class InProcessMachineMemory: MachineMemory {
    public let base: UnsafeMutableRawPointer
    public let frameCount: Int

    /// Maps `frameCount` zero-filled frames.
    /// - Throws: ``XenErrno/invalid`` for a count below 1 or too large to
    ///   address; ``XenErrno/noMemory`` if the kernel refuses the mapping.
    public init(frameCount: Int) throws(XenErrno) {
        guard frameCount > 0, frameCount <= Int.max / MachineFrame.size else { throw .invalid }
        #if os(Linux)
        let flags = MAP_PRIVATE | MAP_ANONYMOUS
        #else
        let flags = MAP_PRIVATE | MAP_ANON
        #endif
        let mapping = mmap(nil, frameCount * MachineFrame.size, PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let mapping, mapping != UnsafeMutableRawPointer(bitPattern: -1) else { throw .noMemory }
        self.base = mapping
        self.frameCount = frameCount
    }

    deinit {
        munmap(base, frameCount * MachineFrame.size)
    }
}
