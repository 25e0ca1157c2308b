// swift-tools-version: 6.1
// Secure inter-VM channels on Xen altp2m. See docs/ARCHITECTURE.md for how the
// modules fit; arrows point one way: executables -> libraries -> C targets.
import PackageDescription

// No unsafe flags anywhere, so the package can be used as a versioned
// dependency: the installed libsecurechannel.so.1 (its soname, and only the
// sc_ functions exported through exports.map) is linked by
// scripts/install-lib.sh from the objects of the securechannel product.

let package = Package(
    name: "SecureChannel",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chanctl", targets: ["chanctl"]),
        .executable(name: "guest-agent", targets: ["guest-agent"]),
        .library(name: "ChannelCrypto", targets: ["ChannelCrypto"]),
        .library(name: "Altp2m", targets: ["Altp2m"]),
        .library(name: "Altp2mSim", targets: ["Altp2mSim"]),
        .library(name: "SecureChannel", targets: ["SecureChannel"]),
        // The C interface (securechannel.h): libsecurechannel.so and a
        // static archive; make install-lib installs them (docs/C-API.md).
        .library(name: "securechannel", type: .dynamic, targets: ["SecureChannelABI"]),
        .library(name: "securechannel-static", type: .static, targets: ["SecureChannelABI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // `swift package generate-documentation` (make docs: the SecureChannel
        // catalog, Sources/SecureChannel/SecureChannel.docc).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // MARK: C boundary
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        // dom0's Xen libraries (libxenctrl, libxenforeignmemory): XenBackend only.
        .systemLibrary(
            name: "CXen",
            pkgConfig: "xencontrol",
            providers: [.apt(["libxen-dev"])]
        ),
        // The Xen libraries a guest has (libxenstore, libxenevtchn,
        // libxengnttab): what guest-agent and libsecurechannel link, so
        // they start in a guest without dom0's libraries.
        .systemLibrary(
            name: "CXenGuest",
            pkgConfig: "xenstore",
            providers: [.apt(["libxen-dev"])]
        ),
        .target(
            name: "CPlatform",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // securechannel.h, the installed C header, as a module so the Swift
        // side of the C interface uses its types and constants.
        .systemLibrary(
            name: "CSecureChannelABI",
            path: "Sources/CSecureChannelABI"
        ),

        // MARK: Libraries
        .target(
            name: "Altp2m",
            dependencies: ["CPlatform"]
        ),
        .target(
            name: "Altp2mSim",
            dependencies: ["Altp2m", "XenInterface", "CPlatform", "LineLog", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "ChannelCrypto",
            dependencies: ["CSodium"],
            path: "Sources/Crypto"
        ),
        .target(
            name: "SecureChannel",
            dependencies: ["Altp2m", "ChannelCrypto", "CPlatform"]
        ),
        .target(
            name: "Altp2mGrant",
            dependencies: ["Altp2m", "ChannelCrypto"]
        ),
        // One Swift protocol per Xen library the backend uses; the C
        // libraries (XenBackend/C) and the simulator (Altp2mSim/XenLibraries)
        // implement them.
        .target(
            name: "XenInterface",
            dependencies: ["Altp2m"]
        ),
        // The guest's half of the Xen backend: XenGuestPlatform, the frame
        // flow's agent, and the C libraries a guest has (CXenGuest only).
        .target(
            name: "XenGuest",
            dependencies: ["Altp2m", "XenInterface", "CXenGuest", "CPlatform"]
        ),
        // dom0's half: XenControl over libxenctrl and libxenforeignmemory
        // (CXen); the xenstore wrapper and the errors it shares with the
        // guests come from XenGuest. Only chanctl links it.
        .target(
            name: "XenBackend",
            dependencies: ["Altp2m", "XenInterface", "XenGuest", "CXen"]
        ),
        // guest-agent's `--services` rules, parsed apart from the agent so
        // the fuzzer reaches them.
        .target(name: "AgentServices"),
        // The domain's descriptor replay guard file, shared by guest-agent
        // and the C interface so every agent of a domain checks one guard.
        .target(
            name: "AgentReplayGuard",
            dependencies: ["Altp2m", "Altp2mSim", "SecureChannel", "CPlatform"]
        ),
        // How a guest program attaches (sim, xen or xen-sim), shared by
        // guest-agent and the C interface; XenGuest, never XenBackend, so
        // neither needs dom0's Xen libraries.
        .target(
            name: "AgentPlatform",
            dependencies: ["Altp2m", "Altp2mSim", "XenGuest", "XenInterface"]
        ),
        // What a binary was built from (`--version` of both executables): the
        // BuildFacts plugin records the git revision at build time.
        .target(
            name: "BuildInfo",
            dependencies: ["ChannelCrypto"],
            plugins: ["BuildFacts"]
        ),
        .plugin(
            name: "BuildFacts",
            capability: .buildTool()
        ),
        // The service manager's readiness and watchdog notifications
        // (sd_notify's datagrams), for guest-agent run and chanctl sim serve.
        .target(name: "ServiceNotify"),
        .target(
            name: "LineLog",
            dependencies: [.product(name: "Logging", package: "swift-log")]
        ),
        // The C interface: @_cdecl functions behind securechannel.h.
        .target(
            name: "SecureChannelABI",
            dependencies: ["CSecureChannelABI", "SecureChannel", "AgentReplayGuard", "AgentPlatform", "Altp2m", "Altp2mSim",
                           "ChannelCrypto", "XenGuest", "CPlatform"],
            exclude: ["exports.map"]
        ),

        // MARK: Benchmarks (run with scripts/bench-crypto.sh, in release)
        .target(
            name: "CryptoBenchBaseline",
            path: "Benchmarks/CryptoBenchBaseline",
            linkerSettings: [.linkedLibrary("sodium")]
        ),
        .executableTarget(
            name: "crypto-bench",
            dependencies: ["ChannelCrypto", "CryptoBenchBaseline"],
            path: "Benchmarks/CryptoBench"
        ),

        // MARK: Simulator benchmark (release: swift build -c release --product sim-bench)
        .executableTarget(
            name: "sim-bench",
            dependencies: ["Altp2mSim"],
            path: "Benchmarks/SimBench"
        ),

        // MARK: Executables
        .executableTarget(
            name: "chanctl",
            dependencies: [
                "Altp2m", "Altp2mSim", "Altp2mGrant", "ChannelCrypto", "SecureChannel", "XenBackend", "XenGuest", "XenInterface", "CPlatform",
                // chanctl bench: the C baselines and HdrHistogram.
                "ChannelBenchBaseline", "BuildInfo", "ServiceNotify", "LineLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Guest agent: keygen, run (echo), ping, cat (docs/ARCHITECTURE.md)
        .executableTarget(
            name: "guest-agent",
            dependencies: [
                "Altp2m", "Altp2mSim", "SecureChannel", "ChannelCrypto", "XenGuest", "XenInterface", "AgentServices",
                "AgentReplayGuard", "AgentPlatform", "BuildInfo", "ServiceNotify", "LineLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Sources/GuestAgent"
        ),

        // MARK: Examples (examples/*/README.md)
        .executableTarget(
            name: "PingPong",
            dependencies: ["Altp2m", "Altp2mSim", "Altp2mGrant", "ChannelCrypto", "SecureChannel"],
            path: "examples/PingPong",
            exclude: ["README.md"]
        ),
        .executableTarget(
            name: "EchoService",
            dependencies: ["Altp2m", "Altp2mSim", "Altp2mGrant", "ChannelCrypto", "SecureChannel"],
            path: "examples/EchoService",
            exclude: ["README.md"]
        ),

        // MARK: Grant module benchmark (release: swift build -c release --product grant-bench)
        .executableTarget(
            name: "grant-bench",
            dependencies: ["Altp2mGrant", "Altp2mSim", "ChannelCrypto"],
            path: "Benchmarks/GrantBench"
        ),

        // Guest-process VMFUNC benchmark (release: swift build -c release --product guest-vmfunc-bench)
        .executableTarget(
            name: "guest-vmfunc-bench",
            dependencies: ["Altp2m", "Altp2mSim", "CPlatform", "XenInterface"],
            path: "Benchmarks/GuestVMFUNCBench"
        ),

        // The data-path allocation check: a counting malloc linked into one executable.
        .target(
            name: "AllocationCounter",
            path: "Benchmarks/AllocationCounter"
        ),
        .executableTarget(
            name: "alloc-check",
            dependencies: ["AllocationCounter", "BenchSupport", "SecureChannel"],
            path: "Benchmarks/AllocCheck"
        ),
        // A real channel on the in-process simulator, shared by the channel tools above and below.
        .target(
            name: "BenchSupport",
            dependencies: ["SecureChannel", "Altp2mSim", "Altp2mGrant"],
            path: "Benchmarks/BenchSupport"
        ),
        .target(
            name: "ChannelBenchBaseline",
            path: "Benchmarks/ChannelBenchBaseline",
            linkerSettings: [.linkedLibrary("sodium"), .linkedLibrary("pthread")]
        ),
        .executableTarget(
            name: "channel-bench",
            dependencies: ["BenchSupport", "ChannelBenchBaseline", "CPlatform"],
            path: "Benchmarks/ChannelBench"
        ),

        // MARK: Fuzzing (docs/SECURITY.md, "Fuzzing"; scripts/fuzz.sh builds it with libFuzzer)
        // The targets: each feeds bytes to the real code and checks an oracle.
        .target(
            name: "FuzzTargets",
            dependencies: ["Altp2m", "Altp2mSim", "Altp2mGrant", "AgentServices", "ChannelCrypto", "SecureChannel", "CPlatform"],
            path: "Fuzz/Targets"
        ),
        // Built normally it replays inputs (`securechannel-fuzz TARGET FILE...`);
        // built with -DFUZZING and -sanitize=fuzzer it is the libFuzzer binary.
        .executableTarget(
            name: "securechannel-fuzz",
            dependencies: ["FuzzTargets"],
            path: "Fuzz/Driver"
        ),

        // MARK: Tests
        // Runs the built chanctl and guest-agent (swift build first).
        .testTarget(
            name: "EndToEndTests",
            dependencies: []
        ),
        .testTarget(
            name: "SimDaemonTests",
            dependencies: ["Altp2mSim", "XenBackend", "XenGuest", "XenInterface", "CPlatform"]
        ),
        .testTarget(
            name: "Altp2mSimTests",
            dependencies: ["Altp2mSim"]
        ),
        .testTarget(
            name: "ChannelCryptoTests",
            dependencies: ["ChannelCrypto"],
            resources: [.copy("Vectors")]
        ),
        .testTarget(
            name: "SecureChannelTests",
            dependencies: ["SecureChannel"]
        ),
        .testTarget(
            name: "SimPlatformTests",
            dependencies: ["Altp2mSim", "Altp2mGrant", "SecureChannel", "ChannelCrypto"]
        ),
        // Replays every seed and regression input of Fuzz/corpus through its target.
        // And the unit tests of those parsers (AgentServices: the agent's
        // configuration file).
        .testTarget(
            name: "FuzzRegressionTests",
            dependencies: ["FuzzTargets", "AgentServices"]
        ),
        .testTarget(
            name: "Altp2mGrantTests",
            dependencies: ["Altp2mGrant", "Altp2mSim", "SecureChannel", "XenBackend", "XenGuest", "XenInterface"]
        ),
    ]
)
