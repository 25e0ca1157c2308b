import Altp2m
import Testing

/// The shared vocabulary of the Altp2m module.
@Suite("Altp2m vocabulary")
struct VocabularyTests {
    @Test("MemAccess permits exactly the accesses of the §4.2 table")
    func violationTable() {
        // r, w, x allowed, per access type (spec §4.2).
        let table: [(MemAccess, Bool, Bool, Bool)] = [
            (.none, false, false, false), (.read, true, false, false), (.write, false, true, false),
            (.readWrite, true, true, false), (.execute, false, false, true), (.readExecute, true, false, true),
            (.writeExecute, false, true, true), (.readWriteExecute, true, true, true),
            (.readExecuteToReadWrite, true, false, true), (.noneToReadWriteExecute, false, false, false),
            (.readPageWalkWrite, true, false, false), (.default, false, false, false),
        ]
        for (access, read, write, execute) in table {
            #expect(access.permits(.read) == read, "\(access) read")
            #expect(access.permits(.write) == write, "\(access) write")
            #expect(access.permits(.execute) == execute, "\(access) execute")
        }
        #expect(MemAccess.allCases.filter(\.isHardwareUnsafe) == [.write, .writeExecute])
    }

    @Test("MemAccess ABI numbers depend on the Xen version")
    func abiNumbers() {
        #expect(MemAccess.default.abiValue(for: .v4_17) == 10)
        #expect(MemAccess.default.abiValue(for: .v4_19) == 10)
        #expect(MemAccess.default.abiValue(for: .v4_21) == 11)
        #expect(MemAccess.readPageWalkWrite.abiValue(for: .v4_17) == nil)
        #expect(MemAccess.readPageWalkWrite.abiValue(for: .v4_21) == 10)
        #expect(MemAccess(abiValue: 10, for: .v4_17) == .default)
        #expect(MemAccess(abiValue: 10, for: .v4_21) == .readPageWalkWrite)
        #expect(MemAccess(abiValue: 11, for: .v4_17) == nil)
        #expect(MemAccess(abiValue: 11, for: .v4_21) == .default)
        #expect(MemAccess(abiValue: 12, for: .v4_21) == nil)
        for version in XenVersion.allCases {
            for access in MemAccess.allCases {
                guard let number = access.abiValue(for: version) else { continue }
                #expect(MemAccess(abiValue: number, for: version) == access)
            }
        }
        #expect(MemAccess.readExecuteToReadWrite.abiValue(for: .v4_17) == 8)
        #expect(MemAccess(rawValue: 12) == nil)
    }

    @Test("MemAccess CLI spellings round-trip")
    func cliNames() {
        let names = ["n", "r", "w", "rw", "x", "rx", "wx", "rwx", "rx2rw", "n2rwx", "r_pw", "default"]
        #expect(MemAccess.allCases.map(\.description) == names)
        for name in names { #expect(MemAccess(name)?.description == name) }
        #expect(MemAccess("rwxx") == nil)
        #expect(MemAccess("rx2rw") == .readExecuteToReadWrite)
        #expect(Altp2mMode("external") == .external)
        #expect(Altp2mMode("3") == .limited)
        #expect(Altp2mMode("4") == nil)
    }

    @Test("XenErrno: numbers, names, codes and catch matching")
    func errno() {
        let expected: [(XenErrno, Int32, String)] = [
            (.notPermitted, 1, "EPERM"), (.notFound, 3, "ESRCH"), (.tryAgain, 11, "EAGAIN"),
            (.noMemory, 12, "ENOMEM"), (.badAddress, 14, "EFAULT"), (.busy, 16, "EBUSY"),
            (.exists, 17, "EEXIST"), (.invalid, 22, "EINVAL"), (.outOfRange, 34, "ERANGE"),
            (.notSupported, 95, "EOPNOTSUPP"), (.noEntry, 2, "ENOENT"), (.noSpace, 28, "ENOSPC"),
        ]
        for (error, number, name) in expected {
            #expect(error.rawValue == number)
            #expect(error.code == -number)
            #expect(error.name == name)
            #expect(XenErrno(code: -number) == error)
        }
        #expect(XenErrno.busy.description == "EBUSY (-16): device or resource busy")
        #expect(XenErrno(code: 0) == nil)
        #expect(XenErrno(rawValue: 200).name == "E200")

        func fail() throws { throw XenErrno.busy }
        var caught = false
        do { try fail() } catch XenErrno.busy { caught = true } catch {}
        #expect(caught)
        #expect(!(XenErrno.invalid ~= XenErrno.busy))
    }

    @Test("Ids: invalid values, hex descriptions, strides")
    func ids() {
        #expect(GFN.invalid.rawValue == ~0 && MFN.invalid.rawValue == ~0)
        #expect(ViewID.invalid.rawValue == 0xFFFF && ViewID.hostOrView0.rawValue == 0)
        #expect(DomainID.selfDomain.rawValue == 0x7FF0 && DomainID.self_ == .selfDomain)
        #expect(GFN(0x1a2).description == "0x1a2")
        #expect(MFN(255).description == "0xff")
        #expect(GFN.invalid.description == "INVALID_GFN")
        #expect(Array(GFN(0x100)..<GFN(0x103)) == [0x100, 0x101, 0x102])
        #expect(GFN.invalid.advanced(by: 1) == 0)
        #expect(GFN(0x101).address(offset: 0x10) == 0x101010)
        #expect(GFN(containing: 0x101010) == 0x101)
    }

    @Test("Version features and host profiles")
    func profiles() {
        #expect(!XenVersion.v4_17.lazyCopyUsesViewDefault && XenVersion.v4_19.lazyCopyUsesViewDefault)
        #expect(!XenVersion.v4_17.modeFixedAtCreation && XenVersion.v4_19.modeFixedAtCreation)
        #expect(!XenVersion.v4_19.hasReadPageWalkWrite && XenVersion.v4_21.hasReadPageWalkWrite)
        #expect(!XenVersion.v4_19.configurableViewCount && XenVersion.v4_21.configurableViewCount)
        #expect(HostProfile.default.altp2mSupported)
        #expect(!HostProfile(altp2mBootOption: false).altp2mSupported)
        #expect(!HostProfile(cpu: .amd).altp2mSupported)
        #expect(CPUProfile.intelNoVE.hasVMFUNC && !CPUProfile.intelNoVE.hasVE)
        #expect(!CPUProfile(name: "odd", hasEPT: true, hasVMFUNC: false, hasVE: true, hasMTF: true).hasVE)
    }
}
