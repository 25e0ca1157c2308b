// swift-tools-version: 6.1
// Secure inter-VM channels on Xen altp2m. See docs/ARCHITECTURE.md for how the
// modules fit; arrows point one way: executables -> libraries -> C targets.
import PackageDescription

let package = Package(
    name: "SecureChannel",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chanctl", targets: ["chanctl"]),
        .library(name: "ChannelCrypto", targets: ["ChannelCrypto"]),
        .library(name: "Altp2m", targets: ["Altp2m"]),
        .library(name: "Altp2mSim", targets: ["Altp2mSim"]),
        .library(name: "SecureChannel", targets: ["SecureChannel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // MARK: C boundary
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(
            name: "CXen",
            pkgConfig: "xencontrol",
            providers: [.apt(["libxen-dev"])]
        ),
        .target(
            name: "CPlatform",
            cSettings: [.define("_GNU_SOURCE")]
        ),

        // MARK: Libraries
        .target(
            name: "Altp2m",
            dependencies: ["CPlatform"]
        ),
        .target(
            name: "Altp2mSim",
            dependencies: ["Altp2m", "CPlatform"]
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
        .target(
            name: "XenBackend",
            dependencies: ["Altp2m", "CXen", "CPlatform"]
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
                "Altp2m", "Altp2mSim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
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
            dependencies: ["Altp2m", "Altp2mSim", "CPlatform"],
            path: "Benchmarks/GuestVMFUNCBench"
        ),

        // MARK: Tests
        .testTarget(
            name: "SimDaemonTests",
            dependencies: ["Altp2mSim"]
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
            name: "Altp2mGrantTests",
            dependencies: ["Altp2mGrant", "Altp2mSim", "SecureChannel", "XenBackend"]
        ),
    ]
)
