import Altp2m
import XenInterface
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Maps machine frames contiguously into this process from the
/// machine-memory file, as the gntalloc and gntdev drivers map the pages
/// they share or map, and records their gfns for ``SimGuestMappings``.
struct SimFrameMapper {
    let memoryFD: Int32

    func map(mfns: [UInt64], gfns: [UInt64], writable: Bool) throws(XenErrno) -> UnsafeMutableRawPointer {
        let size = mfns.count * 4096
        guard let base = mmap(nil, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              base != MAP_FAILED else { throw XenErrno(rawValue: errno) }
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        for (index, mfn) in mfns.enumerated() {
            let page = base + index * 4096
            guard mmap(page, 4096, protection, MAP_SHARED | MAP_FIXED, memoryFD, off_t(mfn * 4096)) == page else {
                let failure = errno
                munmap(base, size)
                throw XenErrno(rawValue: failure)
            }
        }
        SimGuestMappings.shared.record(base, gfns: gfns)
        return base
    }

    static func unmap(_ base: UnsafeMutableRawPointer, count: Int) {
        SimGuestMappings.shared.forget(base)
        munmap(base, count * 4096)
    }

    static func numbers(_ value: JSONValue?, count: Int) throws(XenErrno) -> [UInt64] {
        guard let array = value?.array, array.count == count else { throw XenErrno(rawValue: 5) }
        var result: [UInt64] = []
        for entry in array {
            guard let number = entry.uint64 ?? SimXenControlLibrary.gfn(entry) else { throw XenErrno(rawValue: 5) }
            result.append(number)
        }
        return result
    }
}

/// ``XenGrantShareLibrary`` on the simulator's grant tables: its own
/// connection is the gntalloc handle, so what it shares ends when the
/// process does.
public final class SimGrantShareLibrary: XenGrantShareLibrary {
    let client: SimClient
    let mapper: SimFrameMapper
    /// Mapping → its references, for `unshare`.
    private var shares: [UnsafeMutableRawPointer: [UInt32]] = [:]

    /// `xengntshr_open` as the guest whose `token` is given; frames are
    /// mapped from `memoryFD` (the attached guest's machine-memory file).
    public init(stateDirectory: StateDirectory, token: String, memoryFD: Int32) throws(SimClientError) {
        client = try SimClient(stateDirectory: stateDirectory, token: token)
        mapper = SimFrameMapper(memoryFD: memoryFD)
    }

    deinit { client.close() }

    public func sharePages(with domain: DomainID, count: Int, writable: Bool) throws(XenErrno)
        -> (refs: [UInt32], base: UnsafeMutableRawPointer) {
        guard count > 0 else { throw .invalid }
        let reply = try asErrno { () throws(SimClientError) in
            try client.call("gntshr.share", ["peer": .int(Int64(domain.rawValue)), "count": .int(Int64(count)),
                                             "writable": .bool(writable)])
        }
        let refs = try SimFrameMapper.numbers(reply["refs"], count: count).map { UInt32(truncatingIfNeeded: $0) }
        let base = try mapper.map(mfns: try SimFrameMapper.numbers(reply["mfns"], count: count),
                                  gfns: try SimFrameMapper.numbers(reply["gfns"], count: count), writable: true)
        shares[base] = refs
        return (refs, base)
    }

    public func unshare(_ base: UnsafeMutableRawPointer, count: Int) throws(XenErrno) {
        guard let refs = shares[base] else { throw .invalid }
        _ = try asErrno { () throws(SimClientError) in
            try client.call("gntshr.unshare", ["refs": .array(refs.map { .int(Int64($0)) })])
        }
        shares[base] = nil
        SimFrameMapper.unmap(base, count: count)
    }
}

/// ``XenGrantTableLibrary`` on the simulator's grant tables: its own
/// connection is the gntdev handle.
public final class SimGrantTableLibrary: XenGrantTableLibrary {
    let client: SimClient
    let mapper: SimFrameMapper
    /// Mapping → the gfns the grants were mapped at, for `unmap`.
    private var mappings: [UnsafeMutableRawPointer: [UInt64]] = [:]

    /// `xengnttab_open` as the guest whose `token` is given.
    public init(stateDirectory: StateDirectory, token: String, memoryFD: Int32) throws(SimClientError) {
        client = try SimClient(stateDirectory: stateDirectory, token: token)
        mapper = SimFrameMapper(memoryFD: memoryFD)
    }

    deinit { client.close() }

    public func mapGrantRefs(domain: DomainID, refs: [UInt32], writable: Bool) throws(XenErrno) -> UnsafeMutableRawPointer {
        guard !refs.isEmpty else { throw .invalid }
        let reply = try asErrno { () throws(SimClientError) in
            try client.call("gnttab.map", ["remote": .int(Int64(domain.rawValue)),
                                           "refs": .array(refs.map { .int(Int64($0)) }), "writable": .bool(writable)])
        }
        let gfns = try SimFrameMapper.numbers(reply["gfns"], count: refs.count)
        let base = try mapper.map(mfns: try SimFrameMapper.numbers(reply["mfns"], count: refs.count), gfns: gfns,
                                  writable: writable)
        mappings[base] = gfns
        return base
    }

    public func unmap(_ base: UnsafeMutableRawPointer, count: Int) throws(XenErrno) {
        guard let gfns = mappings[base] else { throw .invalid }
        _ = try asErrno { () throws(SimClientError) in
            try client.call("gnttab.unmap", ["gfns": .array(gfns.map { .uint($0) })])
        }
        mappings[base] = nil
        SimFrameMapper.unmap(base, count: count)
    }
}
