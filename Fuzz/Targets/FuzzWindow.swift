import Altp2m
import Synchronization

/// A channel window in ordinary memory for one fuzz run: its own heap
/// allocation of exactly the window's size, so the address sanitizer
/// reports any access past either end, with a control page set up as the
/// grant module writes it.
final class FuzzWindow: @unchecked Sendable {
    // @unchecked: the session target's two threads take turns (one runs at
    // a time, handing over through semaphores), never touching it together.
    enum IndexKind { case producer, consumer }

    let geometry: RingGeometry
    let base: UnsafeMutableRawPointer
    let byteCount: Int

    init(geometry: RingGeometry) {
        self.geometry = geometry
        byteCount = geometry.pageCount * RingGeometry.pageSize
        base = .allocate(byteCount: byteCount, alignment: RingGeometry.pageSize)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        ControlPage(base: base).initialize(geometry: geometry)
    }

    func release() { base.deallocate() }

    var control: ControlPage { ControlPage(base: base) }

    func index(_ kind: IndexKind, ring: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        kind == .producer ? control.producer(ring: ring) : control.consumer(ring: ring)
    }

    /// Writes `bytes` at `offset`, clipped to the window.
    func write(_ bytes: ArraySlice<UInt8>, at offset: Int) {
        guard offset >= 0, offset < byteCount else { return }
        let count = min(bytes.count, byteCount - offset)
        bytes.prefix(count).withUnsafeBytes { (base + offset).copyMemory(from: $0.baseAddress!, byteCount: count) }
    }

    /// An oracle: `count` bytes at `pointer` lie inside the window.
    func check(_ pointer: UnsafeRawPointer, count: Int, what: String) throws(OracleViolation) {
        let start = UnsafeRawPointer(base)
        guard pointer >= start, count >= 0, pointer + count <= start + byteCount else {
            throw OracleViolation("\(what) of \(count) bytes at offset \(pointer - start) is outside the \(byteCount)-byte window")
        }
    }
}
