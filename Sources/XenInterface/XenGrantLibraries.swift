import Altp2m

/// The calls of libxengntshr (`xengnttab.h`, the gntalloc driver) a guest
/// makes to share its own pages with another domain.
public protocol XenGrantShareLibrary: AnyObject {
    /// `xengntshr_share_pages`: `count` new zeroed pages of this guest,
    /// granted to `domain` (writable or read-only), mapped contiguously
    /// here; returns the grant references and the mapping.
    func sharePages(with domain: DomainID, count: Int, writable: Bool) throws(XenErrno)
        -> (refs: [UInt32], base: UnsafeMutableRawPointer)
    /// `xengntshr_unshare`: ends the grants and frees the pages.
    func unshare(_ base: UnsafeMutableRawPointer, count: Int) throws(XenErrno)
}

/// The calls of libxengnttab (the gntdev driver) a guest makes to map
/// another domain's grants.
public protocol XenGrantTableLibrary: AnyObject {
    /// `xengnttab_map_domain_grant_refs`: maps `refs` of `domain`
    /// contiguously here (in an HVM guest each page also gets a gfn of this
    /// guest's physmap, chosen by the kernel).
    func mapGrantRefs(domain: DomainID, refs: [UInt32], writable: Bool) throws(XenErrno) -> UnsafeMutableRawPointer
    /// `xengnttab_unmap`.
    func unmap(_ base: UnsafeMutableRawPointer, count: Int) throws(XenErrno)
}
