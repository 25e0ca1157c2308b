import Altp2mSim
import ChannelCrypto
#if canImport(Glibc)
import Glibc
#endif

/// The machine a benchmark ran on, as published beside its figures.
struct MachineInfo {
    var cpu: String
    var cores: Int
    var kernel: String
    var swift: String
    var libsodium: String
    var date: String

    static func current() -> MachineInfo {
        MachineInfo(cpu: cpuModel(), cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), kernel: kernelRelease(),
                    swift: swiftVersion(), libsodium: libsodiumVersion, date: utcDate())
    }

    var json: JSONValue {
        .object(["cpu": .string(cpu), "cores": .int(Int64(cores)), "kernel": .string(kernel), "swift": .string(swift),
                 "libsodium": .string(libsodium), "date": .string(date)])
    }

    private static func cpuModel() -> String {
        for line in readFile("/proc/cpuinfo").split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t")
            }
        }
        return "unknown CPU"
    }

    private static func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// The compiler this binary was built with (the toolchain that runs it
    /// may differ; the build's is what shaped the code measured).
    private static func swiftVersion() -> String {
        #if compiler(>=6.4)
        return "6.4 or later"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }

    private static func utcDate() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M UTC", &parts)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
