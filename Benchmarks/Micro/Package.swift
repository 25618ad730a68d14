// swift-tools-version: 6.1
// Microbenchmarks (package-benchmark), kept out of the main package's dependency graph so that
// `swift test` never builds them. Run from this directory: `swift package benchmark`.
import PackageDescription

let package = Package(
    name: "PhoenixMicroBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: "phoenix-update"),  // a symlink to the repository root, so the identity is fixed
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "MicroBench",
            dependencies: [
                .product(name: "DiffEngine", package: "phoenix-update"),
                .product(name: "Patcher", package: "phoenix-update"),
                .product(name: "PatchFormat", package: "phoenix-update"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/MicroBench",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
