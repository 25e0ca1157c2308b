#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Altp2m

/// Maps machine frames from the machine-memory file into one contiguous
/// range of the process's address space, as the grant drivers' `mmap`
/// gives a process one range for the pages it shared or mapped: frame m is
/// at offset m × 4096 of the file, each page its own `MAP_FIXED` mapping.
enum FrameMapping {
    /// Maps `mfns` in order; `writable` picks `PROT_READ|PROT_WRITE` or
    /// `PROT_READ` (a write through a read-only grant mapping faults, as it
    /// does through gntdev).
    static func map(fd: Int32, mfns: [MFN], writable: Bool) throws(SimClientError) -> UnsafeMutableRawPointer {
        try map(fd: fd, frames: mfns.map { Optional($0) }, writable: writable)
    }

    /// Maps `frames` in order, leaving the page of a nil frame inaccessible
    /// (`PROT_NONE`): privcmd leaves a frame that failed unmapped, and
    /// touching it faults (`SIGBUS` there, `SIGSEGV` here).
    static func map(fd: Int32, frames: [MFN?], writable: Bool) throws(SimClientError) -> UnsafeMutableRawPointer {
        let length = frames.count * 4096
        guard let base = mmap(nil, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              base != MAP_FAILED else {
            throw .connection("cannot reserve \(length) bytes of address space: \(SystemCallError("mmap"))")
        }
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        for (index, frame) in frames.enumerated() {
            guard let mfn = frame else { continue }
            let page = base + index * 4096
            guard mmap(page, 4096, protection, MAP_SHARED | MAP_FIXED, fd, off_t(mfn.rawValue * 4096)) == page else {
                munmap(base, length)
                throw .connection("cannot map frame \(mfn) of the machine-memory file: \(SystemCallError("mmap"))")
            }
        }
        return base
    }

    static func unmap(_ pointer: UnsafeMutableRawPointer, pages: Int) {
        munmap(pointer, pages * 4096)
    }

    /// The hex gfns or mfns of a reply field.
    static func frames(_ value: JSONValue?) -> [UInt64] {
        (value?.array ?? []).compactMap { item in
            guard let text = item.string, text.hasPrefix("0x") else { return item.uint64 }
            return UInt64(text.dropFirst(2), radix: 16)
        }
    }
}

extension SimClient {
    /// Like `exchange`, but an error answer is returned, not thrown, so a
    /// caller can read fields beyond the error (`statuses`).
    func exchangeKeepingErrors(_ op: String, _ arguments: [String: JSONValue]) throws(SimClientError) -> (JSONValue, [Int32]) {
        var request = arguments
        request["op"] = .string(op)
        if let token {
            request["token"] = .string(token)
            if guestUser { request["guest_user"] = .bool(true) }
        }
        do { return try WireFrame.exchange(.object(request), on: socket) } catch {
            throw .connection(error.description)
        }
    }
}
