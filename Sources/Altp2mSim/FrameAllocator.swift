import Altp2m

/// Hands out machine frames and counts references to them.
///
/// A frame is free or allocated. ``allocate()`` returns a frame holding one
/// reference, which the caller owns; host p2m entries and #VE registrations
/// each hold one more. When the count drops to zero the frame goes back to the
/// free list (the engine scrubs it first). Frames come out lowest first, so
/// runs are reproducible.
struct FrameAllocator {
    /// Free frames, highest first, so `popLast` yields the lowest.
    private var free: [UInt64]
    /// Reference count per frame; 0 means free.
    private var references: [UInt32]

    init(frameCount: Int) {
        free = (0..<UInt64(frameCount)).reversed()
        references = Array(repeating: 0, count: frameCount)
    }

    var totalCount: Int { references.count }
    var freeCount: Int { free.count }
    var allocatedCount: Int { references.count - free.count }

    /// Takes a free frame with a reference count of 1, or `nil` if none is left.
    mutating func allocate() -> MFN? {
        guard let raw = free.popLast() else { return nil }
        references[Int(raw)] = 1
        return MFN(raw)
    }

    func isAllocated(_ mfn: MFN) -> Bool {
        mfn.rawValue < UInt64(references.count) && references[Int(mfn.rawValue)] > 0
    }

    func referenceCount(_ mfn: MFN) -> Int {
        mfn.rawValue < UInt64(references.count) ? Int(references[Int(mfn.rawValue)]) : 0
    }

    /// Adds a reference to an allocated frame.
    mutating func retain(_ mfn: MFN) {
        precondition(isAllocated(mfn), "retaining free frame \(mfn)")
        references[Int(mfn.rawValue)] += 1
    }

    /// Drops a reference; returns `true` if that freed the frame.
    mutating func release(_ mfn: MFN) -> Bool {
        precondition(isAllocated(mfn), "releasing free frame \(mfn)")
        references[Int(mfn.rawValue)] -= 1
        guard references[Int(mfn.rawValue)] == 0 else { return false }
        free.append(mfn.rawValue)
        return true
    }
}
