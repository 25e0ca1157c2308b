/// A vCPU's cached copy of its domain's visible-view bitmap (512 views, the
/// hardware EPTP list's size), as a guest checks it for a local VMFUNC.
///
/// A fixed tuple rather than an array: the check runs on every VMFUNC and
/// must not allocate or retain anything.
struct VisibleViewBits {
    private var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

    /// No view visible.
    init() {}

    /// The bitmap from eight little-endian words starting at `base`
    /// (the control region's layout).
    init(loadingFrom base: UnsafeRawPointer) {
        words = (base.load(fromByteOffset: 0, as: UInt64.self), base.load(fromByteOffset: 8, as: UInt64.self),
                 base.load(fromByteOffset: 16, as: UInt64.self), base.load(fromByteOffset: 24, as: UInt64.self),
                 base.load(fromByteOffset: 32, as: UInt64.self), base.load(fromByteOffset: 40, as: UInt64.self),
                 base.load(fromByteOffset: 48, as: UInt64.self), base.load(fromByteOffset: 56, as: UInt64.self))
    }

    /// The bitmap from eight words (index `i` covers views `64 i ..< 64 i + 64`).
    init(_ array: [UInt64]) {
        precondition(array.count == 8, "a visible-view bitmap has eight words")
        words = (array[0], array[1], array[2], array[3], array[4], array[5], array[6], array[7])
    }

    /// Whether view `index` is visible (false for 512 and above).
    @inline(__always)
    func contains(_ index: UInt32) -> Bool {
        guard index < 512 else { return false }
        let word: UInt64
        switch index >> 6 {
        case 0: word = words.0
        case 1: word = words.1
        case 2: word = words.2
        case 3: word = words.3
        case 4: word = words.4
        case 5: word = words.5
        case 6: word = words.6
        default: word = words.7
        }
        return word & (1 << UInt64(index & 63)) != 0
    }
}
