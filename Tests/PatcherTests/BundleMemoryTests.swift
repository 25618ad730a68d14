@testable import DiffEngine
import Foundation
import PatchFormat
import Patcher
import Testing
import TestSupport
import TreeIO

/// Bundles under a memory limit (`BundleOptions.memoryLimit`): each changed file is diffed in memory
/// when it fits and in the low-memory mode when it does not; files stored whole from 8 MiB are read a
/// chunk at a time. The inputs here are small, so the tests lower the budget and the streaming
/// threshold (task-locals) to reach those paths; `MemoryLimitCLITests` measures real peaks on large
/// trees.
@Suite struct BundleMemoryTests {
    /// old: a large library, a small one, an unchanged file. new: both libraries edited, a new 2 MB
    /// file, the unchanged one.
    static func trees(_ dir: TemporaryDirectory) throws -> (old: String, new: String, big: (old: Int, new: Int), small: (old: Int, new: Int)) {
        var rng = SeededGenerator(seed: 8086)
        let big = TestData.structured(8_000_000, rng: &rng)
        let bigV2 = TestData.mutate(big, edits: 30, rng: &rng)
        let small = TestData.structured(60_000, rng: &rng)
        let smallV2 = TestData.mutate(small, edits: 5, rng: &rng)
        let added = TestData.structured(2_000_000, rng: &rng)
        let old = dir.file("old"), new = dir.file("new")
        try TreeSpec.build(old, [
            .file("lib/big.so", big, mode: 0o755),
            .file("lib/small.so", small),
            .text("README", "unchanged\n"),
        ])
        try TreeSpec.build(new, [
            .file("lib/big.so", bigV2, mode: 0o755),
            .file("lib/small.so", smallV2),
            .file("data/added.bin", added),
            .text("README", "unchanged\n"),
        ])
        return (old, new, (big.count, bigV2.count), (small.count, smallV2.count))
    }

    /// Applies `bundle` to a copy of `old` and checks the result is `new`, entry for entry.
    static func expectApplies(_ bundle: String, old: String, new: String, in dir: TemporaryDirectory,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let install = try expectBundleApplies(bundle, old: old, new: new, in: dir, sourceLocation: sourceLocation)
        #expect(try POSIX.readFile(install + "/lib/big.so") == POSIX.readFile(new + "/lib/big.so"), sourceLocation: sourceLocation)
    }

    @Test func aFileTooLargeForTheLimitIsDiffedInTheLowMemoryMode() throws {
        let dir = try TemporaryDirectory()
        let (old, new, big, small) = try Self.trees(dir)
        let bigNeed = BundleMaker.MemoryPlan.entryMemory(oldSize: big.old, newSize: big.new, index: .auto)
        let smallNeed = BundleMaker.MemoryPlan.entryMemory(oldSize: small.old, newSize: small.new, index: .auto)
        // A budget the small library fits in and the large one does not.
        let budget = bigNeed - 1
        try #require(smallNeed <= budget && budget >= BundleMaker.MemoryPlan.minimumBudget)

        let unlimited = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("unlimited"), options: BundleOptions(threads: 2))
        #expect(unlimited.lowMemory == 0)
        let limited = try BundleMaker.MemoryPlan.$budgetOverride.withValue(budget) {
            try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("limited"),
                                 options: BundleOptions(threads: 2, memoryLimit: DiffEngine.minimumMemoryLimit))
        }
        #expect(limited.lowMemory == 1, "only lib/big.so is over the budget")
        // Two libraries changed; data/ and data/added.bin added; lib/ and README unchanged.
        #expect(limited.changed == 2 && limited.added == 2 && limited.unchanged == 2)
        try Self.expectApplies(dir.file("limited"), old: old, new: new, in: dir)
        try Self.expectApplies(dir.file("unlimited"), old: old, new: new, in: dir)
        // The low-memory diff found the library's matches: thirty edits of an 8 MB file cost kilobytes
        // (stored whole, the file alone would compress to about 2.7 MB), the new 2 MB file costs its
        // compressed size in both.
        let addedAlone = try BundleMaker.make(oldRoot: nil, newRoot: new, to: dir.file("full")).bundleBytes
        #expect(limited.bundleBytes < unlimited.bundleBytes + 200_000,
                "limited \(limited.bundleBytes) vs unlimited \(unlimited.bundleBytes) bytes (a full bundle: \(addedAlone))")
        #expect(limited.bundleBytes * 2 < addedAlone)
    }

    /// A large file rewritten as a small one, too large to diff in memory: stored whole rather than
    /// indexed in the low-memory mode for at most its few bytes.
    @Test func aSmallRewriteOfALargeFileIsStoredWhole() throws {
        let dir = try TemporaryDirectory()
        let (old, new, _, _) = try Self.trees(dir)
        var rng = SeededGenerator(seed: 99)
        try TreeSpec.build(old, [.file("lib/big.so", TestData.structured(10_000_000, rng: &rng), mode: 0o755)])
        try TreeSpec.build(new, [.file("lib/big.so", TestData.structured(50_000, rng: &rng), mode: 0o755)])
        let budget = BundleMaker.MemoryPlan.entryMemory(oldSize: 10_000_000, newSize: 50_000, index: .auto) - 1
        try #require(budget >= BundleMaker.MemoryPlan.minimumBudget)
        let summary = try BundleMaker.MemoryPlan.$budgetOverride.withValue(budget) {
            try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"), options: BundleOptions(memoryLimit: 1 << 30))
        }
        #expect(summary.lowMemory == 0)
        let info = try BundleApplier.inspect(bundlePath: dir.file("b"))
        #expect(info.operations.first { $0.path == "lib/big.so" }?.op == "add", "\(info.operations)")
        try expectBundleApplies(dir.file("b"), old: old, new: new, in: dir)
    }

    /// Each forced layout (diff order, control layout) through the low-memory and streamed routes: the
    /// alternatives those routes write are the ones applied.
    @Test func everyLayoutOnTheLargeRoutes() throws {
        let dir = try TemporaryDirectory()
        let (old, new, big, _) = try Self.trees(dir)
        let budget = BundleMaker.MemoryPlan.entryMemory(oldSize: big.old, newSize: big.new, index: .auto) - 1
        try #require(budget >= BundleMaker.MemoryPlan.minimumBudget)
        for order in [DiffOrder.natural, .oldContext] {
            for split in [false, true] {
                var options = BundleOptions(threads: 2, memoryLimit: 1 << 30)
                options.diffOrder = order
                options.splitControl = split
                let bundle = dir.file("\(order.rawValue)-\(split)")
                let summary = try BundleMaker.$streamWholeFrom.withValue(1 << 20) {
                    try BundleMaker.MemoryPlan.$budgetOverride.withValue(budget) {
                        try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle, options: options)
                    }
                }
                #expect(summary.lowMemory == 1)
                let info = try BundleApplier.inspect(bundlePath: bundle)
                #expect(info.diffOrder == order.rawValue && info.controlLayout == (split ? "split" : "interleaved"))
                try Self.expectApplies(bundle, old: old, new: new, in: dir)
            }
        }
    }

    @Test func theLimitDoesNotChangeABundleThatFits() throws {
        let dir = try TemporaryDirectory()
        let (old, new, _, _) = try Self.trees(dir)
        let a = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("a"), options: BundleOptions(threads: 2))
        let b = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"),
                                     options: BundleOptions(threads: 2, memoryLimit: 4 << 30))
        #expect(b.lowMemory == 0)
        #expect(try POSIX.readFile(dir.file("a")) == POSIX.readFile(dir.file("b")))
        #expect(a.bundleBytes == b.bundleBytes)
    }

    /// A file stored whole is fed to the compressor a chunk at a time from 8 MiB (here lowered to 1 MiB):
    /// the bundle is the same bytes as when it is read whole, for a full bundle and for an added file.
    @Test func streamedWholeFilesGiveTheSameBundle() throws {
        let dir = try TemporaryDirectory()
        let (old, new, _, _) = try Self.trees(dir)
        for (name, from) in [("full", nil), ("delta", old)] as [(String, String?)] {
            _ = try BundleMaker.$streamWholeFrom.withValue(Int.max) {
                try BundleMaker.make(oldRoot: from, newRoot: new, to: dir.file("\(name)-read"))
            }
            _ = try BundleMaker.$streamWholeFrom.withValue(1 << 20) {
                try BundleMaker.make(oldRoot: from, newRoot: new, to: dir.file("\(name)-streamed"))
            }
            let read = try POSIX.readFile(dir.file("\(name)-read")), streamed = try POSIX.readFile(dir.file("\(name)-streamed"))
            // Compare sizes first: Swift Testing prints a large array mismatch very slowly.
            #expect(read.count == streamed.count, "\(name)")
            #expect((0..<min(read.count, streamed.count)).first { read[$0] != streamed[$0] } == nil, "\(name)")
        }
        let fresh = dir.file("fresh")
        try BundleApplier.apply(directory: fresh, bundlePath: dir.file("full-streamed"))
        #expect(try TreeSpec.digest(fresh) == TreeSpec.digest(new))
    }

    /// The large paths read the files after the scan: one that changed since is an error, before the
    /// bundle is written (the scan's SHA-256 is what the bundle promises).
    @Test func aFileChangedSinceTheScanIsRefused() throws {
        let dir = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 31)
        let bytes = TestData.structured(300_000, rng: &rng)
        let path = try dir.write("f", bytes)
        let right = TreeEntry(path: "f", kind: .file, mode: 0o644, size: UInt64(bytes.count), sha256: SHA256Hasher.hash(bytes))
        var wrongHash = right
        wrongHash.sha256[0] ^= 1
        var shorter = right
        shorter.size -= 1
        var longer = right
        longer.size += 1
        let sink = { try CodecID.uncompressed.makeEncoder() }
        func isChanged(_ file: String) -> (any Error) -> Bool {
            { "\($0)".contains("file changed while the bundle was being made") && "\($0)".contains(file) }
        }
        func sinks() throws -> [any StreamEncoder] { try (0..<RawStreams.slotCount).map { _ in try sink() } }
        try BundleMaker.streamWhole(path: path, expected: right, encoders: try sinks(), drain: {})
        for expected in [wrongHash, shorter, longer] {
            #expect(performing: {
                try BundleMaker.streamWhole(path: path, expected: expected, encoders: try sinks(), drain: {})
            }, throws: isChanged(path))
        }
        let budget = BundleMaker.MemoryPlan.minimumBudget
        let both = BundleOptions().streamChoices
        _ = try BundleMaker.anchorDiff(old: path, expectedOld: right, new: path, expectedNew: right, budget: budget, threads: 1,
                                       choices: both, encoders: try sinks(), drain: {})
        for (o, n) in [(wrongHash, right), (right, wrongHash), (longer, right)] {
            #expect(performing: {
                try BundleMaker.anchorDiff(old: path, expectedOld: o, new: path, expectedNew: n, budget: budget, threads: 1,
                                           choices: both, encoders: try sinks(), drain: {})
            }, throws: isChanged(path))
        }
        // Changed while the low-memory diff reads it (at its first checkpoint, past what it has read):
        // new, or old.
        var rng2 = SeededGenerator(seed: 32)
        let large = TestData.structured(5_000_000, rng: &rng2)
        let oldPath = try dir.write("large-old", large), newPath = try dir.write("large-new", large)
        let entry = TreeEntry(path: "l", kind: .file, mode: 0o644, size: UInt64(large.count), sha256: SHA256Hasher.hash(large))
        for victim in [newPath, oldPath] {
            for f in [oldPath, newPath] {
                large.withUnsafeBytes { b in
                    let fd = open(f, O_WRONLY)
                    defer { close(fd) }
                    _ = pwrite(fd, b.baseAddress!, b.count, 0)
                }
            }
            var touched = false
            #expect(performing: {
                try BundleMaker.anchorDiff(old: oldPath, expectedOld: entry, new: newPath, expectedNew: entry, budget: budget, threads: 1,
                                           choices: both, encoders: try sinks(), drain: {
                    guard !touched else { return }
                    touched = true
                    let fd = open(victim, O_WRONLY)
                    _ = pwrite(fd, [UInt8(0x77)], 1, off_t(large.count - 10))
                    close(fd)
                })
            }, throws: isChanged(victim))
            #expect(touched, "the diff should have reached a checkpoint")
        }

        // A symlink where the scan saw a file is not followed.
        let link = dir.file("link")
        try POSIX.symlink(target: path, at: link)
        #expect(throws: TreeIOError.self) {
            try BundleMaker.anchorDiff(old: link, expectedOld: right, new: path, expectedNew: right, budget: budget, threads: 1,
                                       choices: both, encoders: try sinks(), drain: {})
        }
    }

    @Test func aLimitTooSmallForTheTreeIsRefusedAndNothingIsWritten() throws {
        let dir = try TemporaryDirectory()
        // 100,000 entries: their lists alone leave a 96 MiB limit too little.
        let entries = (0..<100_000).map { TreeEntry(path: "f\($0)", kind: .file, mode: 0o644, size: 1, sha256: [UInt8](repeating: 0, count: 32)) }
        #expect(performing: {
            _ = try BundleMaker.MemoryPlan(options: BundleOptions(memoryLimit: DiffEngine.minimumMemoryLimit), level: 19,
                                           old: entries, new: entries, jobs: [])
        }, throws: { "\($0)".contains("a memory limit of 96 MiB is too small for this bundle") && "\($0)".contains("200000 entries") })
        // Enough for a small tree; the same limit with the level's compressors would leave too little.
        let small = try BundleMaker.MemoryPlan(options: BundleOptions(threads: 2, memoryLimit: DiffEngine.minimumMemoryLimit),
                                               level: 19, old: [], new: [], jobs: [])
        #expect(small.lowMemoryEncoders && small.budget >= BundleMaker.MemoryPlan.minimumBudget)
        let roomy = try BundleMaker.MemoryPlan(options: BundleOptions(threads: 2, memoryLimit: 2 << 30), level: 19, old: [], new: [], jobs: [])
        #expect(!roomy.lowMemoryEncoders)

        // Through `make`: the error, and no bundle.
        let (old, new, _, _) = try Self.trees(dir)
        BundleMaker.MemoryPlan.$budgetOverride.withValue(1 << 20) {
            #expect(throws: DiffEngineError.self) {
                _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"),
                                         options: BundleOptions(memoryLimit: DiffEngine.minimumMemoryLimit))
            }
        }
        #expect(try dir.listing() == ["new", "old"])
        // A default limit (not strict) plans with the least budget instead of refusing.
        var lenient = BundleOptions(memoryLimit: DiffEngine.minimumMemoryLimit)
        lenient.strictMemoryLimit = false
        let plan = try BundleMaker.MemoryPlan(options: lenient, level: 19, old: entries, new: entries, jobs: [])
        #expect(plan.budget == BundleMaker.MemoryPlan.minimumBudget && plan.lowMemoryEncoders)
    }

    /// A file that changes after the scan, while the bundle is being made, on each route: `make`
    /// fails naming it, and leaves neither a bundle nor its spill files.
    @Test(arguments: ["streamed", "lowMemory", "inMemory"])
    func aFileChangedDuringMakeFailsItCleanly(route: String) throws {
        let dir = try TemporaryDirectory()
        let (old, new, big, _) = try Self.trees(dir)
        let victim = new + (route == "streamed" ? "/data/added.bin" : "/lib/big.so")
        let budget = route == "lowMemory" ? BundleMaker.MemoryPlan.entryMemory(oldSize: big.old, newSize: big.new, index: .auto) - 1 : nil
        try FileManager.default.createDirectory(atPath: dir.file("out"), withIntermediateDirectories: true)
        let change: @Sendable () -> Void = {
            // Same size, one byte different.
            let fd = open(victim, O_WRONLY)
            _ = pwrite(fd, [UInt8(0x5A), 0xA5], 2, 1000)
            close(fd)
        }
        #expect(performing: {
            try BundleMaker.$afterPlanning.withValue(change) {
                try BundleMaker.$streamWholeFrom.withValue(1 << 20) {
                    try BundleMaker.MemoryPlan.$budgetOverride.withValue(budget) {
                        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("out/b"),
                                                 options: BundleOptions(threads: 2, memoryLimit: 1 << 30))
                    }
                }
            }
        }, throws: { "\($0)".contains("file changed while the bundle was being made") && "\($0)".contains(victim) })
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("out")).isEmpty)
    }

    /// The streams spill to files that have no name: once they are made (after planning) the output's
    /// directory is still empty, so a `make` killed outright (SIGKILL, which no handler sees) leaves
    /// nothing there.
    @Test func spillFilesHaveNoName() throws {
        let dir = try TemporaryDirectory()
        let (old, new, _, _) = try Self.trees(dir)
        let out = dir.file("out")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        final class Seen: @unchecked Sendable { var names: [String]? }
        let seen = Seen()
        try BundleMaker.$afterPlanning.withValue({ seen.names = try? FileManager.default.contentsOfDirectory(atPath: out) }) {
            _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("out/b"), options: BundleOptions(threads: 2))
        }
        #expect(seen.names == [])
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["b"])
    }

    /// The routes: a file whose diff fits the budget is diffed in memory, one that does not in the
    /// low-memory mode; a file stored whole is streamed from 8 MiB.
    @Test func eachFileTakesTheRouteItsSizeCalls() throws {
        let plan = try BundleMaker.MemoryPlan.$budgetOverride.withValue(64 << 20) {
            try BundleMaker.MemoryPlan(options: BundleOptions(memoryLimit: 1 << 30), level: 19, old: [], new: [], jobs: [])
        }
        let sizes = [1 << 20, 6 << 20, 7 << 20, 8 << 20, 40 << 20]
        let old = sizes.enumerated().map { TreeEntry(path: "o\($0.offset)", kind: .file, mode: 0o644, size: UInt64($0.element), sha256: []) }
        let new = sizes.enumerated().map { TreeEntry(path: "n\($0.offset)", kind: .file, mode: 0o644, size: UInt64($0.element), sha256: []) }
        for i in sizes.indices {
            let diffJob = BundleMaker.DataJob(operationIndex: 0, newIndex: i, oldSource: i, touchedSource: 0)
            let need = BundleMaker.MemoryPlan.entryMemory(oldSize: sizes[i], newSize: sizes[i], index: .auto)
            #expect(plan.route(diffJob, old: old, new: new, hasOld: true) == (need > 64 << 20 ? .lowMemory : .inMemory(need)))
            let wholeJob = BundleMaker.DataJob(operationIndex: 0, newIndex: i, oldSource: nil, touchedSource: nil)
            let whole = plan.route(wholeJob, old: old, new: new, hasOld: true)
            #expect(whole == (sizes[i] >= 8 << 20 ? .streamWhole : .inMemory(2 * sizes[i] + (1 << 20))), "\(sizes[i])")
            #expect(plan.route(diffJob, old: old, new: new, hasOld: false) == whole, "a full bundle stores every file whole")
        }
        #expect(plan.route(BundleMaker.DataJob(operationIndex: 0, newIndex: 0, oldSource: 0, touchedSource: 0), old: old, new: new,
                           hasOld: true) == .inMemory(BundleMaker.MemoryPlan.entryMemory(oldSize: 1 << 20, newSize: 1 << 20, index: .auto)))
        #expect(plan.route(BundleMaker.DataJob(operationIndex: 0, newIndex: 4, oldSource: 4, touchedSource: 0), old: old, new: new,
                           hasOld: true) == .lowMemory)
        // A small new file whose large old version does not fit: stored whole, not diffed. One that
        // fits, or a large one, keeps its source.
        let small = [TreeEntry(path: "n", kind: .file, mode: 0o644, size: 100_000, sha256: [])]
        let rewritten = BundleMaker.DataJob(operationIndex: 0, newIndex: 0, oldSource: 4, touchedSource: 0)
        #expect(!plan.sourceWorthIndexing(rewritten, old: old, new: small))
        #expect(plan.sourceWorthIndexing(BundleMaker.DataJob(operationIndex: 0, newIndex: 0, oldSource: 0, touchedSource: 0), old: old, new: small))
        #expect(plan.sourceWorthIndexing(BundleMaker.DataJob(operationIndex: 0, newIndex: 0, oldSource: 0, touchedSource: 0), old: old, new: new))
        #expect(plan.sourceWorthIndexing(BundleMaker.DataJob(operationIndex: 0, newIndex: 4, oldSource: 4, touchedSource: 0), old: old, new: new))
    }

    /// What a limit decides (capped compressors, the diff budget) depends on the limit, never on the
    /// thread count: the bundle's bytes do not either. Only the compressors' threads follow it.
    @Test func thePlanDoesNotDependOnThreads() throws {
        for limit in [96 << 20, 200 << 20, 700 << 20, 2 << 30, 8 << 30, 64 << 30] {
            for level in [3, 19, 22] {
                let plans = try [1, 2, 8, 64].map {
                    try BundleMaker.MemoryPlan(options: BundleOptions(level: level, threads: $0, memoryLimit: limit), level: level,
                                               old: [], new: [], jobs: [])
                }
                #expect(Set(plans.map(\.budget)).count == 1 && Set(plans.map(\.lowMemoryEncoders)).count == 1,
                        "limit \(limit >> 20) MiB, level \(level)")
                #expect(plans[0].encoderThreads == 1)
                #expect(plans.allSatisfy { $0.encoderThreads <= 16 })
            }
        }
        // Level 22's 128 MiB window costs more than level 19's: at 2 GiB, 19 has workers and 22 does not.
        let at19 = try BundleMaker.MemoryPlan(options: BundleOptions(threads: 8, memoryLimit: 2 << 30), level: 19, old: [], new: [], jobs: [])
        let at22 = try BundleMaker.MemoryPlan(options: BundleOptions(threads: 8, memoryLimit: 2 << 30), level: 22, old: [], new: [], jobs: [])
        #expect(!at19.lowMemoryEncoders && at19.encoderThreads > 1)
        #expect(at22.lowMemoryEncoders)
        // Under a limit that leaves the level's compressors room, the bytes at 1 and 8 threads agree.
        let dir = try TemporaryDirectory()
        let (old, new, _, _) = try Self.trees(dir)
        for threads in [1, 8] {
            _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("t\(threads)"),
                                     options: BundleOptions(threads: threads, memoryLimit: 3 << 30))
        }
        #expect(try POSIX.readFile(dir.file("t1")) == POSIX.readFile(dir.file("t8")))
    }
}

/// Applies `bundle` to a copy of the tree `old` (in a new directory under `dir`) and checks that the
/// result is the tree `new`; returns where it was installed.
@discardableResult
func expectBundleApplies(_ bundle: String, old: String, new: String, in dir: TemporaryDirectory, _ comment: Comment? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let install = dir.file("install-\(UInt32.random(in: 0...UInt32.max))")
    try TreeSpec.copy(old, install)
    try BundleApplier.apply(directory: install, bundlePath: bundle)
    #expect(try TreeSpec.digest(install) == TreeSpec.digest(new), comment, sourceLocation: sourceLocation)
    return install
}
