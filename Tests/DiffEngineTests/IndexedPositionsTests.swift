@testable import DiffEngine
import PatchFormat
import Patcher
import Testing
import TestSupport

/// The positions the hash chains index (`IndexedPositions`): of those the block matches leave, only
/// those whose 12 bytes new may hold outside the blocks.
@Suite struct IndexedPositionsTests {
    /// Old: a stretch new keeps (edited), 1.5 MB new lacks, another stretch new keeps. New: both kept
    /// stretches, edited, and bytes of its own.
    static func pair() -> (old: [UInt8], new: [UInt8]) {
        var rng = SeededGenerator(seed: 31)
        let kept1 = TestData.structured(600_000, rng: &rng), gone = rng.bytes(1_500_000), kept2 = rng.bytes(500_000)
        let new = TestData.mutate(kept1, edits: 20, rng: &rng) + rng.bytes(40_000) + TestData.mutate(kept2, edits: 20, rng: &rng)
        return (kept1 + gone + kept2, new)
    }

    struct Gram: Hashable {
        let a: UInt64, b: UInt32
        init(_ p: UnsafePointer<UInt8>) {
            a = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
            b = UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        }
    }

    static func positions(_ old: [UInt8], _ new: [UInt8], threads: Int) -> IndexedPositions {
        BlockMatches.$minimumOld.withValue(1 << 16) {
            old.withUnsafeBufferPointer { o in new.withUnsafeBufferPointer { n in IndexedPositions.find(old: o, new: n, threads: threads) } }
        }
    }

    /// Every position whose 12 bytes occur in new outside the blocks is indexed (a search from there
    /// could match it), a sampled one inside a block as well as any other, and not every sampled one;
    /// of the stretch new lacks, few are (the filter's false positives); the same positions for any
    /// thread count.
    @Test func keepsEveryPositionASearchCouldUse() throws {
        let (old, new) = Self.pair()
        let indexed = Self.positions(old, new, threads: 2)
        #expect(indexed.blocks != nil)
        var inNew = Set<Gram>()
        new.withUnsafeBufferPointer { n in
            for q in 0...(n.count - 12) where indexed.blocks!.match(containing: q) == nil { inNew.insert(Gram(n.baseAddress! + q)) }
        }
        var counted = 0, goneKept = 0, goneAll = 0, sampledKept = 0, sampledAll = 0
        old.withUnsafeBufferPointer { o in
            for run in indexed.runs {
                for p in stride(from: run.start, to: run.start + run.count * run.step, by: run.step) {
                    if run.step != 1 {
                        sampledAll += 1
                        if indexed.contains(p) { sampledKept += 1 }
                    }
                    if indexed.contains(p) {
                        counted += 1
                    } else if inNew.contains(Gram(o.baseAddress! + p)) {
                        Issue.record("position \(p), whose bytes new holds, left out")
                    }
                    if p >= 600_000 + 12 && p < 2_100_000 - 12 {
                        goneAll += 1
                        if indexed.contains(p) { goneKept += 1 }
                    }
                }
            }
        }
        #expect(counted == indexed.count && indexed.count < indexed.runPositions)
        #expect(sampledAll > 0 && sampledKept < sampledAll, "\(sampledKept) of \(sampledAll) sampled positions kept")
        #expect(goneAll > 1_400_000 && goneKept < goneAll / 4, "\(goneKept) of \(goneAll) positions new lacks kept")
        let one = Self.positions(old, new, threads: 1), four = Self.positions(old, new, threads: 4)
        for other in [one, four] {
            #expect(other.count == indexed.count && other.runs == indexed.runs)
            PositionRun.forEach(indexed.runs) { p in if other.contains(p) != indexed.contains(p) { Issue.record("position \(p) differs") } }
        }
    }

    /// Walking a run's indexed positions by the mask's set bits gives exactly the run's positions in the
    /// range asked for that `contains` says are indexed, in order: for whole runs, sampled or not, and
    /// for pieces of them that start and end inside a mask word (the filler's chunks, the halves).
    @Test func indexedPositionsWalkedByTheirBits() {
        let (old, new) = Self.pair()
        let indexed = Self.positions(old, new, threads: 2)
        var rng = SeededGenerator(seed: 34)
        var checked = 0
        for run in indexed.runs {
            var pieces = [0..<run.count]
            for _ in 0..<4 where run.count > 2 {
                let a = Int(rng.next() % UInt64(run.count)), b = Int(rng.next() % UInt64(run.count))
                pieces.append(min(a, b)..<max(a, b) + 1)
            }
            for k in pieces {
                var walked: [Int] = []
                indexed.forEach(run, k) { walked.append($0) }
                let expected = k.map { run.start + $0 * run.step }.filter { indexed.contains($0) }
                if walked != expected {
                    Issue.record("run \(run), positions \(k): \(walked.count) walked, \(expected.count) indexed")
                }
                checked += expected.count
            }
        }
        #expect(checked > indexed.count && indexed.runs.contains { $0.step != 1 })
    }

    /// Where new is nearly all blocks, few of the positions sampled inside them are indexed (few of
    /// their strings occur in new's few bytes outside the blocks), and old's filter holds only those;
    /// the scan still meets the blocks and takes them: the patch is the one made from the index of
    /// every position the blocks leave, give or take a few bytes. (Random bytes with two insertions,
    /// each moving the alignment. Here old's filter also says yes in the insertions by chance, as a
    /// filter of the strings that passed one of new's, so `BlockMatchesTests` checks on its own that
    /// the scan is told where the blocks are.)
    @Test func aPairOfMostlyBlocksIndexesFewButFindsTheBlocks() throws {
        var rng = SeededGenerator(seed: 32)
        let old = rng.bytes(1_000_000)
        let new = Array(old[..<300_000]) + rng.bytes(100) + old[300_000..<700_000] + rng.bytes(57) + old[700_000...]
        let indexed = Self.positions(old, new, threads: 2)
        #expect(indexed.blocks != nil && indexed.count < indexed.runPositions / 10,
                "\(indexed.count) of \(indexed.runPositions) positions indexed")
        try BlockMatches.$minimumOld.withValue(1 << 16) {
            try old.withUnsafeBufferPointer { o in
                try new.withUnsafeBufferPointer { n in
                    let index = try ChainIndex(o, threads: 2, positions: indexed)
                    let patch = try DiffEngine.makePatch(index: index, old: UnsafeRawBufferPointer(o), new: UnsafeRawBufferPointer(n),
                                                         options: DiffOptions(threads: 2), progress: nil)
                    let plain = try DiffEngine.makePatch(index: ChainIndex(o, threads: 2, blocks: indexed.blocks),
                                                         old: UnsafeRawBufferPointer(o), new: UnsafeRawBufferPointer(n),
                                                         options: DiffOptions(threads: 2), progress: nil)
                    #expect(patch.count <= plain.count + 64 && patch.count < 10_000,
                            "\(patch.count) bytes, from every position \(plain.count)")
                    #expect(try PatchApplier.apply(old: old, patch: patch) == new)
                }
            }
        }
    }

    /// Where new, outside the blocks, has more than twice the positions of old to check, its filter
    /// would cost more than the positions it could leave out save: none is made, every position the
    /// blocks leave is indexed (here new shares nothing with old, so a filter would leave out nearly all).
    @Test func aNewFarLargerThanOldIsNotFiltered() throws {
        var rng = SeededGenerator(seed: 33)
        let old = rng.bytes(200_000), new = rng.bytes(1_000_000)
        let indexed = Self.positions(old, new, threads: 2)
        #expect(indexed.count == indexed.runPositions && indexed.count == old.count - ChainIndex.gram + 1)
        let small = Self.positions(old, Array(new.prefix(300_000)), threads: 2)
        // (The filter's false positives, ~15%, are what is left.)
        #expect(small.count < small.runPositions / 4, "\(small.count) of \(small.runPositions) indexed")
    }

    /// The patch from the filtered index: the same bytes as from the index of every position the
    /// blocks leave (no bucket here is deeper than a search reads, so no search can tell), for any
    /// thread count; the filter of old's strings holds fewer.
    @Test func theSamePatchAsWithoutTheFilter() throws {
        let (old, new) = Self.pair()
        try BlockMatches.$minimumOld.withValue(1 << 16) {
            try old.withUnsafeBufferPointer { o in
                try new.withUnsafeBufferPointer { n in
                    let blocks = BlockMatches.find(old: o, new: n, threads: 2)
                    let all = try ChainIndex(o, threads: 2, blocks: blocks)
                    let allBits = all.filter.words.reduce(0) { $0 + $1.nonzeroBitCount }
                    let plain = try DiffEngine.makePatch(index: all, old: UnsafeRawBufferPointer(o), new: UnsafeRawBufferPointer(n),
                                                         options: DiffOptions(threads: 2), progress: nil)
                    for threads in [1, 2, 4] {
                        let index = try ChainIndex(o, threads: threads, positions: Self.positions(old, new, threads: threads))
                        if threads == 2 {
                            let bits = index.filter.words.reduce(0) { $0 + $1.nonzeroBitCount }
                            #expect(bits < allBits * 3 / 4, "filter bits \(bits), without the positions left out \(allBits)")
                        }
                        let patch = try DiffEngine.makePatch(index: index, old: UnsafeRawBufferPointer(o), new: UnsafeRawBufferPointer(n),
                                                             options: DiffOptions(threads: threads), progress: nil)
                        #expect(patch == plain, "\(threads) threads: \(patch.count) bytes, without the filter \(plain.count)")
                        #expect(try PatchApplier.apply(old: old, patch: patch) == new)
                    }
                }
            }
        }
    }
}
