@testable import DiffEngine
import Dispatch
import PatchFormat
import Patcher
import Testing
import TestSupport

/// `make --index hash-chains` (`ChainIndex`): the search, and patches that apply.
@Suite struct ChainIndexTests {
    /// Every match the chain search returns is real, and where the chains are shorter than the depth
    /// (a small old file of varied bytes) it is the longest there is of `ChainIndex.gram` (12) bytes or
    /// more, as brute force finds it; shorter matches are not reported.
    @Test func searchAgreesWithBruteForceWhereChainsAreShort() throws {
        var rng = SeededGenerator(seed: 650)
        var old = rng.bytes(3000)
        // Repeated pieces, so that some 12-byte strings have several occurrences to choose from.
        for (from, to, count) in [(100, 900, 60), (100, 1700, 40), (2000, 2500, 90), (2010, 400, 30)] {
            old.replaceSubrange(to..<(to + count), with: old[from..<(from + count)])
        }
        var new = [UInt8]()
        for (from, count) in [(95, 70), (2000, 95), (1690, 20), (0, 5)] {
            new += old[from..<(from + count)]
            new += rng.bytes(7)
        }
        new += rng.bytes(50)
        try old.withUnsafeBufferPointer { o in
            let index = try ChainIndex(o, threads: 1)
            new.withUnsafeBufferPointer { n in
                index.withFinder(old: o) { finder in
                    for scan in 0..<new.count {
                        let (pos, len) = finder.longestMatch(n.baseAddress! + scan, length: new.count - scan)
                        var best = 0
                        for p in 0..<old.count {
                            var l = 0
                            while p + l < old.count && scan + l < new.count && old[p + l] == new[scan + l] { l += 1 }
                            best = max(best, l)
                        }
                        #expect(len == (best >= ChainIndex.gram ? best : 0), "scan \(scan): \(len), brute force \(best)")
                        // The filter the matcher asks first never turns away a search that finds something.
                        if scan + finder.probeLength <= new.count && !finder.mayMatch(n.baseAddress! + scan) {
                            #expect(best < ChainIndex.gram, "scan \(scan): the filter rejected a \(best)-byte match")
                        }
                        #expect(Array(old[pos..<(pos + len)]) == Array(new[scan..<(scan + len)]), "scan \(scan)")
                    }
                }
            }
        }
    }

    /// Patches made with hash chains apply to the new file, in both formats, on ordinary, repetitive,
    /// tiny and empty inputs, and are the same bytes at any thread count.
    @Test func patchesApplyAndDoNotDependOnThreads() throws {
        var rng = SeededGenerator(seed: 651)
        let structured = TestData.structured(200_000, rng: &rng)
        let zeros = [UInt8](repeating: 0, count: 150_000)
        var zerosEdited = zeros
        for i in stride(from: 1000, to: 150_000, by: 7919) { zerosEdited[i] = 1 }
        let pairs: [(String, [UInt8], [UInt8])] = [
            ("structured", structured, TestData.mutate(structured, edits: 50, rng: &rng)),
            ("zero runs (one long chain)", zeros, zerosEdited),
            ("old shorter than a gram", [1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]),
            ("empty old", [], rng.bytes(1000)),
        ]
        for (name, old, new) in pairs {
            for format in [PatchKind.phx, .bsdiff] {
                var patches: [[UInt8]] = []
                for threads in [1, 2] {
                    var options = DiffOptions(format: format, threads: threads)
                    options.matchChunkSize = 64 << 10
                    options.index = .hashChains
                    let patch = try DiffEngine.makePatch(old: old, new: new, options: options)
                    #expect(try PatchApplier.apply(old: old, patch: patch) == new, "\(name), \(format)")
                    patches.append(patch)
                }
                #expect(patches[0] == patches[1], "\(name), \(format): the thread count changed the patch")
            }
        }
    }

    /// The buckets the counting sort builds (both cores on two halves of old, or one) hold the newest
    /// `depth` positions of each hash, newest first (the candidates a search reads, in the order the
    /// linked chains had), and nothing else: the older positions of a larger bucket are never placed.
    @Test func bucketsHoldEveryPositionInItsBucketNewestFirst() throws {
        var rng = SeededGenerator(seed: 653)
        var old = TestData.structured(300_000, rng: &rng)
        // Runs of one byte (a bucket each; the halves meet near position 149,994): 7s mostly in the
        // older half, fewer than `depth` of them in the newer (which keeps all its own and the older
        // half the rest of the depth), 5s only in the newer half (tens of thousands: it passes over
        // its oldest), 3s in both halves, over `depth` in the newer (the older half's are all passed over).
        old.replaceSubrange(140_000..<150_100, with: [UInt8](repeating: 7, count: 10_100))
        old.replaceSubrange(200_000..<230_000, with: [UInt8](repeating: 5, count: 30_000))
        old.replaceSubrange(100_000..<101_000, with: [UInt8](repeating: 3, count: 1_000))
        old.replaceSubrange(150_200..<151_000, with: [UInt8](repeating: 3, count: 800))
        try old.withUnsafeBufferPointer { o in
            let shift = UInt64(64 - ChainIndex.headBits(for: o.count))
            var expected = [[Int]](repeating: [], count: 1 << ChainIndex.headBits(for: o.count))
            for i in stride(from: o.count - ChainIndex.gram, through: 0, by: -1) {
                expected[ChainIndex.hash(o.baseAddress! + i, shift)].append(i)
            }
            #expect(expected.contains { $0.count > 20_000 })
            expected = expected.map { Array($0.prefix(ChainIndex.depth)) }
            for threads in [1, 2] {
                let buckets = try ChainIndex(o, threads: threads).buckets
                #expect(buckets.count == expected.count)
                // The first bucket that differs, not all of them (a failure would print megabytes).
                if let h = expected.indices.first(where: { $0 >= buckets.count || buckets[$0] != expected[$0] }) {
                    Issue.record("threads \(threads), bucket \(h): \(buckets.count > h ? buckets[h].prefix(20).description : "missing"), expected \(expected[h].prefix(20))")
                }
            }
        }
        // Old shorter than a gram: no positions, every bucket empty.
        try [UInt8](repeating: 1, count: 11).withUnsafeBufferPointer { o in
            let buckets = try ChainIndex(o, threads: 2).buckets
            #expect(!buckets.isEmpty && buckets.allSatisfy(\.isEmpty))
        }
    }

    /// The gram filter filled by two threads sharing the work (atomic ORs; how the chain index
    /// fills its 12-byte one) is bit for bit the one a single thread fills.
    @Test(arguments: GramFilter.grams) func filterFilledByTwoThreadsIsTheSame(gram: Int) {
        var rng = SeededGenerator(seed: 652)
        let text = TestData.structured(5 << 20, rng: &rng)
        text.withUnsafeBufferPointer { t in
            let alone = GramFilter(t, gram: gram)
            let shared = GramFilter(sizedFor: t.count, gram: gram)
            let filler = shared.filler, progress = GramFilter.Filler.Progress()
            nonisolated(unsafe) let u = t
            DispatchQueue.concurrentPerform(iterations: 2) { _ in filler.add(u, sharing: progress) }
            // The first differing word, not the arrays: printing a difference of two 300,000-word
            // arrays takes the test library minutes.
            let a = shared.words, b = alone.words
            let firstDifference = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            #expect(a.count == b.count && firstDifference == nil,
                    "word \(firstDifference ?? -1) of \(b.count): \(firstDifference.map { String(a[$0], radix: 16) + " vs " + String(b[$0], radix: 16) } ?? "")")
            #expect(b.contains { $0 != 0 })
        }
    }
}

/// Which index `make` uses by default (`--index auto`) and when it is asked for one.
@Suite struct IndexChoiceTests {
    @Test func autoUsesChainsWhereTheyTakeTheFile() {
        var options = DiffOptions()
        #expect(options.index == .auto)
        #expect(options.usesChains(oldCount: 0))
        #expect(options.usesChains(oldCount: ChainIndex.maxCount))
        #expect(!options.usesChains(oldCount: ChainIndex.maxCount + 1))
        options.index = .hashChains
        #expect(options.usesChains(oldCount: ChainIndex.maxCount))
        #expect(!options.usesChains(oldCount: ChainIndex.maxCount + 1), "32-bit links cannot hold the position")
        options.index = .suffixArray
        #expect(!options.usesChains(oldCount: 1000))
        #expect(MatchIndexKind.best.tried(oldCount: 1000) == [.hashChains, .suffixArray])
        #expect(MatchIndexKind.best.tried(oldCount: ChainIndex.maxCount + 1) == [.suffixArray])
        #expect(MatchIndexKind.auto.tried(oldCount: ChainIndex.maxCount + 1) == [.suffixArray])
    }

    /// `best` keeps the smaller of the two indexes' patches, byte for byte, whichever is smaller: on
    /// these inputs the chains win with xz and the suffix array with bsdiff's format.
    @Test func bestKeepsTheSmallerPatch() throws {
        var rng = SeededGenerator(seed: 424242)
        let old = TestData.structured(300_000, rng: &rng)
        let new = TestData.mutate(old, edits: 60, rng: &rng)
        var winners: Set<MatchIndexKind> = []
        for format in [PatchKind.phx, .bsdiff] {
            var patches: [MatchIndexKind: [UInt8]] = [:]
            for kind in [MatchIndexKind.hashChains, .suffixArray, .best] {
                var options = DiffOptions(format: format)
                options.index = kind
                patches[kind] = try DiffEngine.makePatch(old: old, new: new, options: options)
            }
            let chains = patches[.hashChains]!, sorted = patches[.suffixArray]!
            let smaller = chains.count <= sorted.count ? chains : sorted
            winners.insert(chains.count <= sorted.count ? .hashChains : .suffixArray)
            let same = patches[.best]! == smaller
            #expect(same, "\(format): \(patches[.best]!.count) bytes, chains \(chains.count), suffix array \(sorted.count)")
            #expect(try PatchApplier.apply(old: old, patch: patches[.best]!) == new)
        }
        #expect(winners.count == 2, "each index should win once here, so that both choices are checked")
    }

    /// The estimate behind `--memory-limit` follows the index actually used: the chains' bucket starts
    /// make it larger than the suffix array's, and from 4 GiB `auto` is the suffix array.
    /// (bsdiff's bzip2 compressors are small, so matching is the estimate's peak.)
    @Test func theMemoryEstimateFollowsTheChoice() {
        func estimate(_ index: MatchIndexKind, _ size: Int) -> Int {
            var options = DiffOptions(format: .bsdiff)
            options.index = index
            return DiffEngine.estimatedPeakMemory(oldSize: size, newSize: size, options: options)
        }
        let small = 24 << 20, large = ChainIndex.maxCount + 1
        #expect(estimate(.auto, small) == estimate(.hashChains, small))
        #expect(estimate(.hashChains, small) > estimate(.suffixArray, small))
        #expect(estimate(.auto, large) == estimate(.suffixArray, large))
        #expect(estimate(.best, small) >= estimate(.hashChains, small) + small, "best runs both, one after the other")
    }
}
