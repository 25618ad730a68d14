// swift-tools-version: 6.0
// Phoenix Update: a bsdiff-style binary diff engine, a streaming verified patcher and their command line.
// Module boundaries follow ../shared/design.md: PatchFormat (bytes on disk) <- DiffEngine (make) and
// Patcher (apply); the Patcher never imports DiffEngine, so a client ships only the apply side.
import PackageDescription

let package = Package(
    name: "PhoenixUpdate",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "PatchFormat", targets: ["PatchFormat"]),
        .library(name: "DiffEngine", targets: ["DiffEngine"]),
        .library(name: "Patcher", targets: ["Patcher"]),
        .executable(name: "phoenix-diff", targets: ["phoenix-diff"]),
        .library(name: "UpdateModels", targets: ["UpdateModels"]),
        .library(name: "UpdateServer", targets: ["UpdateServer"]),
        .executable(name: "phoenix-server", targets: ["phoenix-server"]),
        .library(name: "UpdateClient", targets: ["UpdateClient"]),
        .executable(name: "phoenix-update", targets: ["phoenix-update"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // System-library shims (Debian -dev packages; .ci/run installs them).
        .systemLibrary(name: "CBzip2", path: "Sources/CBzip2", providers: [.apt(["libbz2-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CXXHash", path: "Sources/CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "CLzma", path: "Sources/CLzma", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        .systemLibrary(name: "CCrypto", path: "Sources/CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CDivSufSort", path: "Sources/CDivSufSort", pkgConfig: "libdivsufsort64",
                       providers: [.apt(["libdivsufsort-dev"])]),

        // renameat2(RENAME_EXCHANGE), which Glibc does not surface to Swift, and an atomic OR.
        .target(name: "CPhoenixSys"),
        // The client's server-certificate check with OpenSSL's X.509 verifier (precise reasons: expired,
        // wrong host, unknown issuer).
        .target(name: "CPhoenixTLS", linkerSettings: [.linkedLibrary("crypto")]),

        .target(name: "PatchFormat", dependencies: ["CBzip2", "CZlib", "CZstd", "CLzma", "CCrypto"]),
        // Walking, hashing and writing directory trees (bundles), shared by the make and apply sides.
        .target(name: "TreeIO", dependencies: ["PatchFormat", "CPhoenixSys"]),
        .target(name: "DiffEngine", dependencies: ["PatchFormat", "TreeIO", "CDivSufSort", "CPhoenixSys", "CXXHash"]),
        .target(name: "Patcher", dependencies: ["PatchFormat", "TreeIO"]),
        .executableTarget(
            name: "phoenix-diff",
            dependencies: [
                "PatchFormat", "DiffEngine", "Patcher", "TreeIO", "CPhoenixSys",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Wire types shared by server and client: semantic versions, signed manifests, check responses.
        .target(name: "UpdateModels", dependencies: ["PatchFormat", "CCrypto"]),
        // The update server: catalog, package store, publishing, delivery policy, HTTP routes.
        .target(
            name: "UpdateServer",
            dependencies: [
                "UpdateModels", "PatchFormat", "DiffEngine", "Patcher", "TreeIO", "CPhoenixTLS",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdHTTP2", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "phoenix-server",
            dependencies: [
                "UpdateServer", "UpdateModels", "DiffEngine", "TreeIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The update client: check, download (resume, progress), verify, install, confirm, roll back.
        .target(
            name: "UpdateClient",
            dependencies: [
                "UpdateModels", "PatchFormat", "Patcher", "TreeIO", "CPhoenixTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "phoenix-update",
            dependencies: ["UpdateClient", "UpdateModels", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // libFuzzer targets (scripts/fuzz.sh builds them with --sanitize=fuzzer --sanitize=address).
        .executableTarget(name: "FuzzPatch", dependencies: ["PatchFormat", "Patcher"], path: "Fuzz/FuzzPatch"),
        .executableTarget(name: "FuzzBundle", dependencies: ["PatchFormat", "Patcher", "TreeIO"], path: "Fuzz/FuzzBundle"),
        .executableTarget(name: "FuzzManifest", dependencies: ["UpdateModels"], path: "Fuzz/FuzzManifest"),
        .executableTarget(name: "FuzzSemver", dependencies: ["UpdateModels"], path: "Fuzz/FuzzSemver"),

        // Helpers shared by the test targets: seeded data, scratch directories, running processes.
        .target(name: "TestSupport", dependencies: ["PatchFormat", "TreeIO"], path: "Tests/TestSupport"),
        .testTarget(name: "PatchFormatTests", dependencies: ["PatchFormat", "TestSupport"]),
        .testTarget(name: "DiffEngineTests", dependencies: ["DiffEngine", "Patcher", "PatchFormat", "TestSupport"]),
        .testTarget(name: "PatcherTests", dependencies: ["Patcher", "DiffEngine", "PatchFormat", "TreeIO", "TestSupport"]),
        // Runs the built phoenix-diff binary end to end.
        .testTarget(name: "UpdateModelsTests", dependencies: ["UpdateModels", "TestSupport"]),
        .testTarget(
            name: "UpdateServerTests",
            dependencies: [
                "UpdateServer", "UpdateClient", "UpdateModels", "DiffEngine", "Patcher", "TreeIO", "PatchFormat", "TestSupport",
                "phoenix-update", "phoenix-server",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        .testTarget(name: "PhoenixDiffCLITests", dependencies: ["phoenix-diff", "DiffEngine", "PatchFormat", "TreeIO", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
