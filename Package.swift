// swift-tools-version: 6.1
// Secure inter-VM channels on Xen altp2m. See docs/ARCHITECTURE.md for how the
// modules fit; arrows point one way: executables -> libraries -> C targets.
import PackageDescription

let package = Package(
    name: "SecureChannel",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ChannelCrypto", targets: ["ChannelCrypto"]),
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
            name: "ChannelCrypto",
            dependencies: ["CSodium"],
            path: "Sources/Crypto"
        ),

        // MARK: Tests
        .testTarget(
            name: "ChannelCryptoTests",
            dependencies: ["ChannelCrypto"],
            resources: [.copy("Vectors")]
        ),
    ]
)
