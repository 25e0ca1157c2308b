#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m

/// Machine memory in a file of the state directory, mapped `MAP_SHARED`.
///
/// A file rather than an anonymous mapping so that guest frames outlive the
/// daemon: after a `kill -9`, a restarted daemon maps the same file and finds
/// every frame as the guests left it. The descriptor is what guest processes
/// receive (SCM_RIGHTS) to map guest-physical memory themselves.
///
/// While the daemon replays its journal (``beginReplay()``), the engine works
/// on a private copy-on-write mapping of the same file, so the replayed
/// scrubs and #VE writes of the past do not overwrite what the guests wrote
/// since; ``endReplay()`` switches back to the shared mapping.
public final class FileMachineMemory: MachineMemory {
    public private(set) var base: UnsafeMutableRawPointer
    public let frameCount: Int
    let mapping: SharedFileMapping
    private var privateCopy: UnsafeMutableRawPointer?

    /// Opens or creates the memory file at `path` with `frameCount` frames
    /// (sparse: unused frames take no space and read as zero).
    public init(path: String, frameCount: Int) throws(SystemCallError) {
        guard frameCount > 0, frameCount <= Int.max / MachineFrame.size else {
            throw SystemCallError("machine memory of \(frameCount) frames", errno: EINVAL)
        }
        mapping = try SharedFileMapping(path: path, size: frameCount * MachineFrame.size)
        base = mapping.base
        self.frameCount = frameCount
    }

    /// The descriptor of the memory file (owned by this object).
    public var fileDescriptor: Int32 { mapping.fd }

    /// Points the engine at a private copy-on-write view of the file.
    func beginReplay() throws(SystemCallError) {
        guard privateCopy == nil else { return }
        let size = frameCount * MachineFrame.size
        let pointer = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, mapping.fd, 0)
        guard let pointer, pointer != MAP_FAILED else { throw SystemCallError("mmap (replay copy)") }
        privateCopy = pointer
        base = pointer
    }

    /// Drops the private copy and points the engine at the shared file again.
    func endReplay() {
        guard let copy = privateCopy else { return }
        base = mapping.base
        munmap(copy, frameCount * MachineFrame.size)
        privateCopy = nil
    }

    deinit { endReplay() }
}
