import FuzzTargets

#if canImport(Glibc)
import Glibc
#endif

#if FUZZING
// Built by scripts/fuzz.sh with -sanitize=fuzzer and -DFUZZING: `main`
// hands the process to libFuzzer's driver, which calls back per input. The
// target comes from FUZZ_TARGET (libFuzzer owns the arguments).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let target = FuzzEntry.selected else { return 0 }
    FuzzEntry.run(target, data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

/// `int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *, size_t))`
typealias FuzzerDriver = @convention(c) (
    UnsafeMutablePointer<Int32>,
    UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@main
struct FuzzDriver {
    static func main() {
        FuzzEntry.select()
        // Looked up at run time: libFuzzer is linked in by -sanitize=fuzzer,
        // and SwiftPM gives the executable its own `main`.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "LLVMFuzzerRunDriver") else {
            printError("securechannel-fuzz: built without libFuzzer; build it with scripts/fuzz.sh\n")
            exit(2)
        }
        let driver = unsafeBitCast(symbol, to: FuzzerDriver.self)
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(driver(&argc, &argv, fuzzerTestOneInput))
    }
}

#else
/// Built normally: replays inputs, lists the targets, or writes the seed corpus.
@main
struct FuzzDriver {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        func usage() -> Never {
            printError("""
            usage: securechannel-fuzz list
                   securechannel-fuzz seeds DIRECTORY       write each target's seeds into DIRECTORY/TARGET/
                   securechannel-fuzz TARGET FILE...        run inputs through a target (a broken oracle aborts)

            """)
            exit(2)
        }
        guard let command = arguments.first else { usage() }
        switch command {
        case "list":
            for target in FuzzTarget.all { print("\(target.name)\t\(target.summary)") }
        case "seeds":
            guard arguments.count == 2 else { usage() }
            do {
                let written = try SeedWriter.write(into: arguments[1])
                print("wrote \(written) seed inputs into \(arguments[1])")
            } catch {
                printError("securechannel-fuzz: \(error)\n")
                exit(1)
            }
        default:
            guard let target = FuzzTarget.named(command), arguments.count >= 2 else { usage() }
            for path in arguments.dropFirst() {
                guard let bytes = SeedWriter.read(path) else {
                    printError("securechannel-fuzz: cannot read \(path)\n")
                    exit(1)
                }
                FuzzEntry.run(target, bytes)
            }
            print("\(target.name): \(arguments.count - 1) inputs, no oracle violated")
        }
    }
}
#endif
