import Altp2m

/// The contents of machine frames: `frameCount` frames of 4 KiB, contiguous
/// from `base` (frame *n* starts at `base + n * 4096`).
///
/// The protocol is deliberately two properties so that any mapping can
/// implement it (the in-process ``InProcessMachineMemory`` here, a memfd
/// mapping in the daemon); the frame helpers live in an extension. Frames the
/// engine has not handed out yet must be zero-filled, as fresh anonymous or
/// memfd memory is: the engine scrubs frames when it frees them, not when it
/// allocates them.
///
/// A conformer owns its mapping for its lifetime and is not thread-safe; it
/// belongs to the same single owner as the engine.
public protocol MachineMemory: AnyObject {
    /// The address of frame 0.
    var base: UnsafeMutableRawPointer { get }
    /// The number of frames.
    var frameCount: Int { get }
}

/// Machine frame geometry.
public enum MachineFrame {
    /// The size of a frame in bytes.
    public static let size = 4096
}

extension MachineMemory {
    /// The bytes of frame `mfn`.
    /// - Precondition: `mfn` is below ``frameCount``.
    @inlinable
    public func frame(_ mfn: MFN) -> UnsafeMutableRawBufferPointer {
        precondition(mfn.rawValue < UInt64(frameCount), "machine frame \(mfn) is outside memory")
        return UnsafeMutableRawBufferPointer(start: base + Int(mfn.rawValue) * MachineFrame.size,
                                             count: MachineFrame.size)
    }

    /// Copies `count` bytes out of frame `mfn` from `offset`.
    /// - Precondition: the range lies inside the frame.
    public func read(_ mfn: MFN, offset: Int, count: Int) -> [UInt8] {
        precondition(offset >= 0 && count >= 0 && offset + count <= MachineFrame.size)
        let bytes = frame(mfn)
        return Array(bytes[offset..<(offset + count)])
    }

    /// Copies `bytes` into frame `mfn` at `offset`.
    /// - Precondition: the range lies inside the frame.
    public func write(_ mfn: MFN, offset: Int, bytes: some Collection<UInt8>) {
        precondition(offset >= 0 && offset + bytes.count <= MachineFrame.size)
        let target = UnsafeMutableRawBufferPointer(rebasing: frame(mfn)[offset..<(offset + bytes.count)])
        target.copyBytes(from: bytes)
    }

    /// Fills frame `mfn` with zeros.
    public func zero(_ mfn: MFN) {
        frame(mfn).initializeMemory(as: UInt8.self, repeating: 0)
    }

    /// Reads a little-endian integer at `offset` of frame `mfn` (any alignment).
    @inlinable
    public func load<T: FixedWidthInteger>(_ type: T.Type, mfn: MFN, offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= MachineFrame.size)
        return T(littleEndian: frame(mfn).loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Writes a little-endian integer at `offset` of frame `mfn` (any alignment).
    @inlinable
    public func store<T: FixedWidthInteger>(_ value: T, mfn: MFN, offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= MachineFrame.size)
        frame(mfn).storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}
