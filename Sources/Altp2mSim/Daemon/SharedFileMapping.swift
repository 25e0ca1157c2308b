#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A file mapped `MAP_SHARED`: what the daemon and guest processes share
/// (machine memory, control regions, vCPU pages, event words). Owns the
/// mapping and, if it opened it, the descriptor.
final class SharedFileMapping {
    let base: UnsafeMutableRawPointer
    let size: Int
    /// The descriptor the mapping came from (kept open to pass to guests).
    let fd: Int32
    let writable: Bool

    /// Opens or creates `path` (0600), sizes it to `size` bytes (sparse) if
    /// it is smaller, and maps it read-write.
    init(path: String, size: Int) throws(SystemCallError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemCallError("open \(path)") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let e = SystemCallError("fstat \(path)")
            _ = close(fd)
            throw e
        }
        if Int(info.st_size) < size, ftruncate(fd, off_t(size)) != 0 {
            let e = SystemCallError("ftruncate \(path)")
            _ = close(fd)
            throw e
        }
        do {
            base = try Self.map(fd: fd, size: size, writable: true, what: path)
        } catch {
            _ = close(fd)
            throw error
        }
        self.fd = fd
        self.size = size
        self.writable = true
    }

    /// Maps a descriptor received from the daemon; takes ownership of `fd`.
    init(adopting fd: Int32, writable: Bool, what: String) throws(SystemCallError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let e = SystemCallError("fstat \(what)")
            _ = close(fd)
            throw e
        }
        let size = Int(info.st_size)
        do {
            base = try Self.map(fd: fd, size: size, writable: writable, what: what)
        } catch {
            _ = close(fd)
            throw error
        }
        self.fd = fd
        self.size = size
        self.writable = writable
    }

    private static func map(fd: Int32, size: Int, writable: Bool, what: String) throws(SystemCallError) -> UnsafeMutableRawPointer {
        guard size > 0 else { throw SystemCallError("mmap \(what) (empty file)", errno: EINVAL) }
        let prot = writable ? PROT_READ | PROT_WRITE : PROT_READ
        let pointer = mmap(nil, size, prot, MAP_SHARED, fd, 0)
        guard let pointer, pointer != MAP_FAILED else { throw SystemCallError("mmap \(what)") }
        return pointer
    }

    deinit {
        munmap(base, size)
        _ = close(fd)
    }

    /// Opens `path` read-only again, for handing a read-only descriptor to a
    /// guest (a descriptor opened O_RDONLY cannot be mapped writable).
    static func openReadOnly(_ path: String) throws(SystemCallError) -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError("open \(path)") }
        return fd
    }
}
