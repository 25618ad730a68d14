@testable import DiffEngine
import Foundation
import PatchFormat
import Patcher
import Testing
import TestSupport

/// The low-memory mode of `makePatchFile` (anchor index, mapped inputs, spooled streams). Any limit
/// under the in-memory engine's estimate selects it; these inputs are small enough to fit under any
/// allowed limit, so the tests force it (`alwaysLowMemory`) at the smallest.
@Suite struct LowMemoryDiffTests {
    static func lowMemory(_ format: PatchKind = .phx, codec: CodecID? = nil, threads: Int = 1) -> DiffOptions {
        var o = DiffOptions(format: format, codec: codec, threads: threads)
        o.memoryLimit = DiffEngine.minimumMemoryLimit
        o.alwaysLowMemory = true
        return o
    }

    /// Makes a patch in the low-memory mode from files and applies it in memory.
    @discardableResult
    func roundTrip(_ old: [UInt8], _ new: [UInt8], _ options: DiffOptions = lowMemory(),
                   sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
        let dir = try TemporaryDirectory()
        let o = try dir.write("old", old), n = try dir.write("new", new)
        let summary = try DiffEngine.makePatchFile(oldPath: o, newPath: n, to: dir.file("patch"), options: options)
        #expect(summary.lowMemory, "the limit should have selected the low-memory mode", sourceLocation: sourceLocation)
        let patch = try dir.read("patch")
        #expect(UInt64(patch.count) == summary.patchBytes, sourceLocation: sourceLocation)
        #expect(try PatchApplier.apply(old: old, patch: patch) == new, "\(old.count) -> \(new.count) bytes",
                sourceLocation: sourceLocation)
        // Only the patch is left: the spooled streams are gone.
        #expect(try dir.listing() == ["new", "old", "patch"], sourceLocation: sourceLocation)
        return patch
    }

    @Test(arguments: edgeCases)
    func edgeCasesRoundTrip(_ c: EdgeCase) throws {
        try roundTrip(c.old, c.new)
    }

    @Test func editedDataIsMatched() throws {
        var rng = SeededGenerator(seed: TestData.seed())
        let old = TestData.structured(3_000_000, rng: &rng)
        let new = TestData.mutate(old, edits: 40, rng: &rng)
        let patch = try roundTrip(old, new)
        // Forty edits of at most a few hundred bytes: a patch that found the matches is a few KB; one
        // that stored new would be ~1 MB (the data compresses about 3:1).
        #expect(patch.count < 60_000, "low-memory patch of \(patch.count) bytes for 40 edits")
        let full = try DiffEngine.makePatch(old: old, new: new)
        #expect(patch.count < full.count * 4, "low-memory \(patch.count) vs in-memory \(full.count)")
    }

    @Test func shiftedAndMovedBlocksAreFound() throws {
        var rng = SeededGenerator(seed: 77)
        let a = rng.bytes(400_000), b = rng.bytes(400_000), c = rng.bytes(400_000)
        let old = a + b + c
        // Blocks reordered, one shifted by an odd insertion: random data, so only matching can shrink it.
        let new = c + [1, 2, 3] + a + b
        let patch = try roundTrip(old, new)
        #expect(patch.count < 10_000, "patch of \(patch.count) bytes for three moved random blocks")
    }

    @Test func everyFormatAndCodec() throws {
        var rng = SeededGenerator(seed: 5)
        let old = TestData.structured(500_000, rng: &rng)
        let new = TestData.mutate(old, edits: 10, rng: &rng)
        for o in [Self.lowMemory(.phx, codec: .zstd), Self.lowMemory(.phx, codec: .bzip2), Self.lowMemory(.phx, codec: .zlib),
                  Self.lowMemory(.phx, codec: .uncompressed), Self.lowMemory(.bsdiff)] {
            try roundTrip(old, new, o)
        }
    }

    @Test func bytesDoNotDependOnThreads() throws {
        var rng = SeededGenerator(seed: 9)
        let old = TestData.structured(2_000_000, rng: &rng)
        let new = TestData.mutate(old, edits: 20, rng: &rng)
        #expect(try roundTrip(old, new, Self.lowMemory(threads: 1)) == roundTrip(old, new, Self.lowMemory(threads: 4)))
    }

    @Test func bsdiffOutputIsReadByDebianBspatch() throws {
        let bspatch = try #require(Run.which("bspatch"), "bspatch is not installed (scripts/setup-debian.sh)")
        var rng = SeededGenerator(seed: 11)
        let old = TestData.structured(1_000_000, rng: &rng)
        let new = TestData.mutate(old, edits: 15, rng: &rng)
        let dir = try TemporaryDirectory()
        let o = try dir.write("old", old), n = try dir.write("new", new)
        _ = try DiffEngine.makePatchFile(oldPath: o, newPath: n, to: dir.file("p"), options: Self.lowMemory(.bsdiff))
        let r = try Run.process(bspatch, [o, dir.file("out"), dir.file("p")])
        #expect(r.status == 0, "bspatch: \(r.stderr)")
        #expect(try dir.read("out") == new)
    }

    @Test func aLargeLimitKeepsTheInMemoryEngine() throws {
        var rng = SeededGenerator(seed: 3)
        let old = TestData.structured(200_000, rng: &rng)
        let new = TestData.mutate(old, edits: 5, rng: &rng)
        let dir = try TemporaryDirectory()
        var options = DiffOptions()
        options.memoryLimit = 8 << 30
        let s = try DiffEngine.makePatchFile(oldPath: try dir.write("old", old), newPath: try dir.write("new", new),
                                             to: dir.file("p"), options: options)
        #expect(!s.lowMemory)
        #expect(try dir.read("p") == DiffEngine.makePatch(old: old, new: new))
    }

    @Test func aFailedDiffLeavesTheOldPatchAndNoSpool() throws {
        let dir = try TemporaryDirectory()
        try dir.write("patch", [1, 2, 3])
        try dir.write("old", [UInt8](repeating: 7, count: 1000))
        #expect(throws: (any Error).self) {
            try DiffEngine.makePatchFile(oldPath: dir.file("old"), newPath: dir.file("missing"), to: dir.file("patch"),
                                         options: Self.lowMemory())
        }
        #expect(try dir.read("patch") == [1, 2, 3])
        #expect(try dir.listing() == ["old", "patch"])
    }

    /// The streams spool to files that have no name: while the diff runs (seen from the progress
    /// callback) the directory holds only the inputs, so a `make` killed outright (SIGKILL, which no
    /// handler sees) leaves nothing behind.
    @Test func spoolsHaveNoNameWhileTheDiffRuns() throws {
        var rng = SeededGenerator(seed: 23)
        let old = TestData.structured(3_000_000, rng: &rng)
        let new = TestData.mutate(old, edits: 30, rng: &rng)
        let dir = try TemporaryDirectory()
        let o = try dir.write("old", old), n = try dir.write("new", new)
        var seen: [[String]] = []
        try DiffEngine.makePatchFile(oldPath: o, newPath: n, to: dir.file("patch"), options: Self.lowMemory()) { fraction in
            if fraction > 0.3 && fraction < 1 { seen.append((try? dir.listing()) ?? ["?"]) }
        }
        #expect(!seen.isEmpty && seen.allSatisfy { $0 == ["new", "old"] }, "\(seen.prefix(3))")
        #expect(try PatchApplier.apply(old: old, patch: dir.read("patch")) == new)
    }

    /// A sparse diff keeps the natural order here too, where the old-context order would be smaller.
    @Test func aSparseDiffKeepsTheNaturalOrder() throws {
        let (old, new) = try StreamPruningTests.sparseContextChanges()
        var options = DiffOptions()
        options.alwaysLowMemory = true
        options.memoryLimit = DiffEngine.minimumMemoryLimit + (48 << 20)
        var forced: [[UInt8]] = []
        for order in [DiffOrder.natural, .oldContext] {
            options.diffOrder = order
            forced.append(try roundTrip(old, new, options))
        }
        #expect(forced[1].count < forced[0].count, "context order \(forced[1].count) bytes, natural \(forced[0].count)")
        options.diffOrder = nil
        let auto = try roundTrip(old, new, options)
        let same = auto == forced[0]
        #expect(same, "auto \(auto.count) bytes, natural order \(forced[0].count)")
        #expect(try PatchApplier.inspect(patch: auto).diffOrder == "natural")
    }

    @Test func contextOrderWhenTheLimitAffordsIt() throws {
        var rng = SeededGenerator(seed: 21)
        let old = TestData.structured(1_000_000, rng: &rng)
        let new = TestData.mutate(old, edits: 30, rng: &rng)
        var options = DiffOptions()
        options.diffOrder = .oldContext
        options.alwaysLowMemory = true
        options.memoryLimit = DiffEngine.minimumMemoryLimit + (48 << 20)
        let patch = try roundTrip(old, new, options)
        #expect(try PatchApplier.inspect(patch: patch).diffOrder == "context")
        // With less room, asking for it is an error that says how much it needs.
        options.memoryLimit = DiffEngine.minimumMemoryLimit
        let dir = try TemporaryDirectory()
        let error = #expect(throws: DiffEngineError.self) {
            try DiffEngine.makePatchFile(oldPath: try dir.write("old", old), newPath: try dir.write("new", new),
                                         to: dir.file("p"), options: options)
        }
        #expect(error?.description.contains("old-context diff order needs a memory limit of at least") == true)
    }

    @Test func tooSmallALimitIsRefused() throws {
        let dir = try TemporaryDirectory()
        var options = DiffOptions()
        options.memoryLimit = 16 << 20
        let error = #expect(throws: DiffEngineError.self) {
            try DiffEngine.makePatchFile(oldPath: try dir.write("old", [1, 2, 3]), newPath: try dir.write("new", [1, 2]),
                                         to: dir.file("p"), options: options)
        }
        #expect(error?.description.contains("\(DiffEngine.minimumMemoryLimit >> 20) MiB") == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: dir.file("p")))
    }
}

@Suite struct LowMemoryEdgeTests {
    /// New starts with more than 4 MiB unlike old, so the matcher closes a tuple at 4 MiB + 1 (to let
    /// the pages behind it go); a copy of old begins a few bytes before that point, so its first
    /// anchor comes after it and the exact match extends backward across it. The backward extension
    /// must stop at the closed tuple.
    @Test(arguments: 1...6)
    func aMatchStartingJustBeforeATupleCut(_ before: Int) throws {
        var rng = SeededGenerator(seed: UInt64(100 + before))
        let old = rng.bytes(64 << 10)
        let cut = (4 << 20) + 1
        let new = rng.bytes(cut - before) + old + rng.bytes(1000)
        let patch = try LowMemoryDiffTests().roundTrip(old, new)
        #expect(patch.count < 4 << 20 + 40_000, "the copy of old was not found: \(patch.count) bytes")
    }
}
