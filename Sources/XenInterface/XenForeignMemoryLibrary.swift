import Altp2m

/// The calls of libxenforeignmemory dom0 makes: mapping a guest's frames
/// into its own address space.
public protocol XenForeignMemoryLibrary: AnyObject {
    /// `xenforeignmemory_map`: `gfns.count` pages of `domain`, contiguous in
    /// the caller's address space, and one error per frame (0, or a negative
    /// errno such as `-ENOENT`; a page with an error is not accessible).
    func map(_ domain: DomainID, writable: Bool, gfns: [UInt64]) throws(XenErrno)
        -> (base: UnsafeMutableRawPointer, errors: [Int32])
    /// `xenforeignmemory_unmap`.
    func unmap(_ base: UnsafeMutableRawPointer, pageCount: Int) throws(XenErrno)
}
