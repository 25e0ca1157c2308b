#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import XenGuest
import XenInterface
internal import CXen

/// ``XenForeignMemoryLibrary`` over libxenforeignmemory (privcmd).
final class CXenForeignMemoryLibrary: XenForeignMemoryLibrary {
    private let handle: OpaquePointer

    /// `xenforeignmemory_open`.
    init() throws(XenErrno) {
        guard let handle = xenforeignmemory_open(nil, 0) else { throw currentXenErrno() }
        self.handle = handle
    }

    deinit { xenforeignmemory_close(handle) }

    func map(_ domain: DomainID, writable: Bool, gfns: [UInt64]) throws(XenErrno)
        -> (base: UnsafeMutableRawPointer, errors: [Int32]) {
        guard !gfns.isEmpty else { throw .invalid }
        var frames = gfns.map { xen_pfn_t($0) }
        var errors = [Int32](repeating: 0, count: gfns.count)
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        guard let base = xenforeignmemory_map(handle, UInt32(domain.rawValue), protection, frames.count, &frames, &errors) else {
            throw currentXenErrno()
        }
        return (base, errors)
    }

    func unmap(_ base: UnsafeMutableRawPointer, pageCount: Int) throws(XenErrno) {
        if xenforeignmemory_unmap(handle, base, pageCount) < 0 { throw currentXenErrno() }
    }
}
