import DiffEngine
import Foundation
import Patcher
import Testing
import TestSupport
import TreeIO
import UpdateServer

/// `make_memory_limit`: the memory each bundle the server makes may use (`BundleOptions.memoryLimit`).
@Suite struct ServerConfigurationTests {
    @Test func makeMemoryLimitIsReadCheckedAndDefaulted() throws {
        let dir = try TemporaryDirectory()
        let file = try dir.write("config.json", Array(#"{"data": "/srv/phoenix", "make_memory_limit": 268435456}"#.utf8))
        let c = try ServerConfiguration.load(file: file)
        #expect(c.makeMemoryLimit == 256 << 20)
        #expect(c.bundleMemoryLimit == 256 << 20)
        try c.validate()

        var small = c
        small.makeMemoryLimit = 64 << 20
        #expect(performing: { try small.validate() }, throws: { "\($0)".contains("make_memory_limit must be at least") })

        // Unset: half of `make`'s default (a publish and a delta job may run at once), never under the
        // low-memory mode's minimum.
        let unset = ServerConfiguration(dataDirectory: "/srv/phoenix")
        #expect(unset.makeMemoryLimit == nil)
        let expected = UsableMemory.defaultMakeLimit().map { max($0 / 2, DiffEngine.minimumMemoryLimit) }
        #expect(expected != nil, "this machine's memory should be readable")
        #expect(unset.bundleMemoryLimit == expected)
    }

    /// The service makes its bundles under that limit: strict when configured, a plan when defaulted.
    @Test func theServiceMakesBundlesUnderIt() throws {
        let configured = try ServerFixture(publish: false) { $0.makeMemoryLimit = 256 << 20 }
        #expect(configured.service.bundleOptions.memoryLimit == 256 << 20)
        #expect(configured.service.bundleOptions.strictMemoryLimit)
        #expect(configured.service.bundleOptions.threads == 2)
        let defaulted = try ServerFixture(publish: false)
        #expect(defaulted.service.bundleOptions.memoryLimit == defaulted.service.configuration.bundleMemoryLimit)
        #expect(defaulted.service.bundleOptions.memoryLimit != nil)
        #expect(!defaulted.service.bundleOptions.strictMemoryLimit)
        #expect(defaulted.service.bundleOptions.diffOrder == nil && defaulted.service.bundleOptions.splitControl == nil)
    }

    /// `compatible_deltas`: every bundle the server makes is in the layouts older clients read.
    @Test func compatibleDeltasKeepTheFirstLayout() throws {
        let dir = try TemporaryDirectory()
        let file = try dir.write("config.json", Array(#"{"data": "/srv/phoenix", "compatible_deltas": true}"#.utf8))
        #expect(try ServerConfiguration.load(file: file).compatibleDeltas)
        let f = try ServerFixture(publish: true) { $0.compatibleDeltas = true }
        f.service.runPendingJobs()
        let data = f.service.configuration.dataDirectory
        let infos = try FileManager.default.subpathsOfDirectory(atPath: data)
            .map { data + "/" + $0 }
            .filter { POSIX.isRegularFile($0) && BundleApplier.isBundle(path: $0) }
            .map { try BundleApplier.inspect(bundlePath: $0) }
        #expect(infos.contains { !$0.full }, "the fixture's releases should have deltas")
        for info in infos {
            #expect(info.diffOrder == "natural" && info.controlLayout == "interleaved", "\(info.newTreeDigest)")
        }
    }
}
