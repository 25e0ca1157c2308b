#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m
import XenInterface
internal import CXenGuest

/// ``XenGrantShareLibrary`` over libxengntshr (`/dev/xen/gntalloc`).
final class CXenGrantShareLibrary: XenGrantShareLibrary {
    private let handle: OpaquePointer

    /// `xengntshr_open`.
    init() throws(XenErrno) {
        guard let handle = xengntshr_open(nil, 0) else { throw currentXenErrno() }
        self.handle = handle
    }

    deinit { xengntshr_close(handle) }

    func sharePages(with domain: DomainID, count: Int, writable: Bool) throws(XenErrno)
        -> (refs: [UInt32], base: UnsafeMutableRawPointer) {
        guard count > 0, let number = Int32(exactly: count) else { throw .invalid }
        var refs = [UInt32](repeating: 0, count: count)
        guard let base = xengntshr_share_pages(handle, UInt32(domain.rawValue), number, &refs, writable ? 1 : 0) else {
            throw currentXenErrno()
        }
        return (refs, base)
    }

    func unshare(_ base: UnsafeMutableRawPointer, count: Int) throws(XenErrno) {
        guard let number = UInt32(exactly: count) else { throw .invalid }
        if xengntshr_unshare(handle, base, number) < 0 { throw currentXenErrno() }
    }
}

/// ``XenGrantTableLibrary`` over libxengnttab (`/dev/xen/gntdev`).
final class CXenGrantTableLibrary: XenGrantTableLibrary {
    private let handle: OpaquePointer

    /// `xengnttab_open`.
    init() throws(XenErrno) {
        guard let handle = xengnttab_open(nil, 0) else { throw currentXenErrno() }
        self.handle = handle
    }

    deinit { xengnttab_close(handle) }

    func mapGrantRefs(domain: DomainID, refs: [UInt32], writable: Bool) throws(XenErrno) -> UnsafeMutableRawPointer {
        guard !refs.isEmpty, let count = UInt32(exactly: refs.count) else { throw .invalid }
        var refs = refs
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        guard let base = xengnttab_map_domain_grant_refs(handle, count, UInt32(domain.rawValue), &refs, protection) else {
            throw currentXenErrno()
        }
        return base
    }

    func unmap(_ base: UnsafeMutableRawPointer, count: Int) throws(XenErrno) {
        guard let number = UInt32(exactly: count) else { throw .invalid }
        if xengnttab_unmap(handle, base, number) < 0 { throw currentXenErrno() }
    }
}
