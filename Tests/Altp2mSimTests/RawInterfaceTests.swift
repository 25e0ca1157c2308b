import Altp2m
@testable import Altp2mSim
import Testing

/// The raw `HVMOP_altp2m` argument (spec §3.1) and machine memory.
@Suite("Raw interface")
struct RawInterfaceTests {
    @Test("The 80-byte argument puts each field at the offset of struct xen_hvm_altp2m_op")
    func layout() throws {
        let op = HVMAltp2mOp.vcpuEnableNotify(DomainID(rawValue: 0x0102), vcpu: 3, gfn: 0x1122_3344_5566_7788)
        let bytes = op.bytes
        #expect(bytes.count == 80)
        #expect(bytes[0..<4] == [1, 0, 0, 0])          // version @0
        #expect(bytes[4..<8] == [3, 0, 0, 0])          // cmd @4
        #expect(bytes[8..<10] == [0x02, 0x01])         // domain @8
        #expect(bytes[16..<20] == [3, 0, 0, 0])        // u.enable_notify.vcpu_id @16
        #expect(bytes[24..<32] == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])   // gfn @16+8
        #expect(HVMAltp2mOp(bytes: bytes) == op)
        #expect(HVMAltp2mOp(bytes: bytes.prefix(79)) == nil)

        let multi = HVMAltp2mOp.setSuppressVEMulti(1, view: 2, suppress: 1, firstGFN: 5, lastGFN: 6, firstError: -3)
        #expect(multi.bytes[16..<18] == [2, 0] && multi.bytes[18] == 1)
        #expect(multi.bytes[20..<24] == [0xFD, 0xFF, 0xFF, 0xFF])   // first_error @4, -3
        #expect(multi.bytes[32] == 6)                                 // last_gfn @16+16
    }

    @Test("The raw entry point copies outputs back and reports a short argument as EFAULT")
    func rawEntry() throws {
        let b = try Baseline(active: true)
        var raw = HVMAltp2mOp.createP2M(b.d, defaultAccess: 5).bytes
        #expect(rc { try b.engine.hvmAltp2mOp(rawArgument: &raw, caller: .controlDomain) } == OK)
        #expect(HVMAltp2mOp(bytes: raw)?.viewOutput == 1)
        var short = Array(raw.prefix(64))
        #expect(rc { try b.engine.hvmAltp2mOp(rawArgument: &short, caller: .controlDomain) } == EFAULT)
        var user = raw
        #expect(rc { try b.engine.hvmAltp2mOp(rawArgument: &user, caller: .guestUser(b.d)) } == EPERM)
    }

    @Test("A first_error already set is not overwritten by set_suppress_ve_multi")
    func firstErrorPreset() throws {
        let b = try Baseline(active: true)
        _ = try b.engine.createView(b.d, defaultAccess: .readWriteExecute)
        let result = b.hypercall(.setSuppressVEMulti(b.d, view: 1, suppress: 0, firstGFN: 0x1FF, lastGFN: 0x200,
                                                     firstError: -22))
        #expect(result.rc == OK)
        #expect(result.op.firstErrorOutput == EINVAL)
        #expect(result.op.firstErrorGFNOutput == 0)
        #expect(try b.engine.getSuppressVE(b.d, view: 1, gfn: 0x1FF) == false)
        // A huge range costs no more than the p2m sizes.
        let huge = b.hypercall(.setSuppressVEMulti(b.d, view: 1, suppress: 1, firstGFN: 0, lastGFN: ~0))
        #expect(huge.rc == OK)
        #expect(huge.op.firstErrorOutput == ESRCH)
        #expect(huge.op.firstErrorGFNOutput == 0)
        #expect(huge.op.firstGFNOutput == 1 << 48)
        #expect(try b.engine.viewInfo(b.d, view: 1).entryCount == 256)
    }

    @Test("In-process machine memory: frames are separate, zeroed, little-endian")
    func machineMemory() throws {
        let memory = try InProcessMachineMemory(frameCount: 4)
        #expect(Int(bitPattern: memory.base) % 4096 == 0)
        memory.store(UInt32(0xAABB_CCDD), mfn: 1, offset: 4094 - 2)
        #expect(memory.read(1, offset: 4092, count: 4) == [0xDD, 0xCC, 0xBB, 0xAA])
        #expect(memory.load(UInt32.self, mfn: 1, offset: 4092) == 0xAABB_CCDD)
        #expect(memory.read(2, offset: 0, count: 4) == [0, 0, 0, 0])
        memory.zero(1)
        #expect(memory.load(UInt64.self, mfn: 1, offset: 4088) == 0)
        #expect(throws: XenErrno.invalid) { try InProcessMachineMemory(frameCount: 0) }
    }
}
