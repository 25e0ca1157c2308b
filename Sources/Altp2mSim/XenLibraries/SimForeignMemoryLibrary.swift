import Altp2m
import XenInterface

/// ``XenForeignMemoryLibrary`` on the simulator, over ``SimForeignMemory``
/// (dom0's `foreign.map`: the machine frames behind a guest's gfns, with
/// privcmd's per-frame errors, mapped from the machine-memory file into one
/// range). A frame with an error stays inaccessible, as privcmd leaves it.
public final class SimForeignMemoryLibrary: XenForeignMemoryLibrary {
    let memory: SimForeignMemory

    /// `xenforeignmemory_open` as dom0 of the simulator at `stateDirectory`.
    public init(stateDirectory: StateDirectory = .resolve()) throws(SimClientError) {
        memory = try SimForeignMemory(stateDirectory: stateDirectory)
    }

    public func map(_ domain: DomainID, writable: Bool, gfns: [UInt64]) throws(XenErrno)
        -> (base: UnsafeMutableRawPointer, errors: [Int32]) {
        guard !gfns.isEmpty else { throw .invalid }
        let mapping = try asErrno { () throws(SimClientError) in
            try memory.map(domain: domain, writable: writable, gfns: gfns.map { GFN($0) })
        }
        return (mapping.pointer, mapping.errors)
    }

    public func unmap(_ base: UnsafeMutableRawPointer, pageCount: Int) throws(XenErrno) {
        FrameMapping.unmap(base, pages: pageCount)
    }
}
