@testable import DiffEngine
import PatchFormat
import Patcher
import Testing
import TestSupport

/// The block matches found before old is indexed (`BlockMatches`), the index of what they leave, and
/// patches made with both.
@Suite struct BlockMatchesTests {
    /// New made of stretches of old (one of them twice) and new bytes between them.
    static func pair(seed: UInt64) -> (old: [UInt8], new: [UInt8]) {
        var rng = SeededGenerator(seed: seed)
        let old = rng.bytes(600_000)
        var new = Array(old[0..<200_000])
        new += rng.bytes(5_000)
        new += old[250_000..<600_000]
        new += rng.bytes(700)
        new += old[0..<50_000]
        new += rng.bytes(3_000)
        return (old, new)
    }

    static func find(_ old: [UInt8], _ new: [UInt8], threads: Int) -> BlockMatches {
        BlockMatches.$minimumOld.withValue(1 << 16) {
            old.withUnsafeBufferPointer { o in new.withUnsafeBufferPointer { n in BlockMatches.find(old: o, new: n, threads: threads) } }
        }
    }

    /// Every match is exact, at least a block long, in new's order and disjoint; the stretches of old
    /// in new are found whole (random bytes around them may extend a match by a byte or two).
    @Test func findsTheSharedStretches() {
        let (old, new) = Self.pair(seed: 1)
        let blocks = Self.find(old, new, threads: 1)
        var end = 0
        for m in blocks.matches {
            #expect(m.count >= BlockMatches.block)
            #expect(m.newStart >= end, "matches overlap at \(m.newStart)")
            #expect(Array(new[m.newStart..<m.newEnd]) == Array(old[m.oldStart..<(m.oldStart + m.count)]))
            end = m.newEnd
        }
        func covers(_ newRange: Range<Int>, old oldStart: Int) -> Bool {
            blocks.matches.contains { $0.newStart <= newRange.lowerBound && $0.newEnd >= newRange.upperBound
                && $0.oldStart - $0.newStart == oldStart - newRange.lowerBound }
        }
        #expect(covers(0..<200_000, old: 0))
        #expect(covers(205_000..<555_000, old: 250_000))
        #expect(covers(555_700..<605_700, old: 0))
        #expect(blocks.newCovered >= 600_000 && blocks.newCovered < 600_100)
        // Lookups by offset agree with the list.
        for offset in stride(from: 0, to: new.count, by: 997) {
            let listed = blocks.matches.first { $0.newStart <= offset && offset < $0.newEnd }
            #expect(blocks.match(containing: offset) == listed, "offset \(offset)")
        }
    }

    /// New is scanned in fixed parts whatever the thread count, and a match that runs into the next
    /// part trims that part's first matches: the same matches for 1, 2 and 5 threads, with parts small
    /// enough that most matches cross one.
    @Test func sameMatchesForAnyThreadCount() {
        let (old, new) = Self.pair(seed: 2)
        BlockMatches.$part.withValue(40_000) {
            let one = Self.find(old, new, threads: 1)
            #expect(one.matches.count >= 3)
            for threads in [2, 5] {
                #expect(Self.find(old, new, threads: threads).matches == one.matches, "\(threads) threads")
            }
            var end = 0
            for m in one.matches {
                #expect(m.newStart >= end && m.count >= BlockMatches.block)
                #expect(Array(new[m.newStart..<m.newEnd]) == Array(old[m.oldStart..<(m.oldStart + m.count)]))
                end = m.newEnd
            }
        }
    }

    /// Old's positions outside the matches are all indexed, one in `sampling` inside them.
    @Test func indexedPositionsSampleTheMatchedOld() {
        let blocks = BlockMatches(matches: [.init(newStart: 0, newEnd: 2000, oldStart: 1000),
                                            .init(newStart: 5000, newEnd: 6500, oldStart: 2500)], newCount: 7000)
        let runs = blocks.indexedOld(positions: 5000, sampling: 4)
        // The two old ranges overlap (1000..<3000 and 2500..<4000): sampled once, the second from where
        // the first ends.
        #expect(runs == [PositionRun(start: 0, count: 1000, step: 1),
                         PositionRun(start: 1000, count: 500, step: 4),
                         PositionRun(start: 3000, count: 250, step: 4),
                         PositionRun(start: 4000, count: 1000, step: 1)])
        var positions: [Int] = []
        PositionRun.forEach(runs) { positions.append($0) }
        #expect(positions.count == 2750 && positions.first == 0 && positions.last == 4999)
        let (a, b) = PositionRun.halves(runs, at: 1375)
        var joined: [Int] = []
        PositionRun.forEach(a + b) { joined.append($0) }
        #expect(joined == positions && a.reduce(0) { $0 + $1.count } == 1375)
        #expect(blocks.match(containing: 1999)?.oldStart == 1000 && blocks.match(containing: 2000) == nil)
        #expect(blocks.match(containing: 5000)?.oldStart == 2500 && blocks.match(containing: 6999) == nil)
        // Past the new file the blocks were found in.
        #expect(blocks.match(containing: 7000) == nil && blocks.match(containing: 1 << 40) == nil)
    }

    /// `covers` answers yes in every 64-byte line of new wholly inside a match, and nowhere outside one.
    @Test func coversTheLinesInsideTheMatches() {
        let matches = [BlockMatches.Match(newStart: 100, newEnd: 1_200, oldStart: 0),
                       BlockMatches.Match(newStart: 1_200, newEnd: 2_300, oldStart: 5_000),
                       BlockMatches.Match(newStart: 8_192, newEnd: 9_216, oldStart: 0),
                       BlockMatches.Match(newStart: 20_000, newEnd: 30_000, oldStart: 100)]
        let blocks = BlockMatches(matches: matches, newCount: 30_000)
        for line in 0..<(30_000 / 64) {
            let bytes = line * 64..<(line + 1) * 64
            let inside = matches.contains { $0.newStart <= bytes.lowerBound && bytes.upperBound <= $0.newEnd }
            for offset in [bytes.lowerBound, bytes.lowerBound + 37, bytes.upperBound - 1] where blocks.covers(offset) != inside {
                Issue.record("offset \(offset): covers \(blocks.covers(offset)), wholly inside a match: \(inside)")
            }
        }
        #expect(blocks.covers(8_192) && !blocks.covers(9_216) && !blocks.covers(64) && blocks.covers(128))
    }

    /// Where the index's filter says no (it need not hold the positions sampled inside the blocks),
    /// the block-aware finder still says yes in each line of new wholly inside a block, and no outside
    /// the blocks; where it says yes, so does the finder.
    @Test func theScanIsToldWhereTheBlocksAre() {
        struct YesOnlyAt: MatchFinder {
            let yesAt: Int
            let new: UnsafePointer<UInt8>
            var probeLength: Int { 12 }
            func mayMatch(_ p: UnsafePointer<UInt8>) -> Bool { p - new == yesAt }
            func willAsk(_ p: UnsafePointer<UInt8>) {}
            func longestMatch(_ p: UnsafePointer<UInt8>, length: Int) -> (pos: Int, len: Int) { (0, 0) }
        }
        var rng = SeededGenerator(seed: 45)
        let old = rng.bytes(20_000), new = Array(old[..<9_000]) + rng.bytes(50) + old[9_000...]
        let blocks = BlockMatches(matches: [BlockMatches.Match(newStart: 0, newEnd: 9_000, oldStart: 0),
                                            BlockMatches.Match(newStart: 9_050, newEnd: 20_050, oldStart: 9_000)], newCount: new.count)
        old.withUnsafeBufferPointer { o in
            new.withUnsafeBufferPointer { n in
                let finder = BlockAwareFinder(inner: YesOnlyAt(yesAt: 9_020, new: n.baseAddress!), blocks: blocks, old: o, new: n.baseAddress!)
                for offset in 0..<(new.count - 12) {
                    let line = offset / 64 * 64..<(offset / 64 + 1) * 64
                    let inside = line.upperBound <= 9_000 || (line.lowerBound >= 9_050 && line.upperBound <= 20_050)
                    let outside = offset >= 9_000 && offset < 9_050
                    let yes = finder.mayMatch(n.baseAddress! + offset)
                    if (inside && !yes) || (outside && yes != (offset == 9_020)) {
                        Issue.record("offset \(offset): mayMatch \(yes)")
                    }
                }
            }
        }
    }

    /// Patches made with the block matches apply, are the same bytes for any thread count, and are no
    /// larger than a few bytes over the patch made without them; the index holds a quarter of the
    /// matched positions.
    @Test func patchesWithBlocksApplyAndDoNotDependOnThreads() throws {
        let (old, new) = Self.pair(seed: 3)
        let without = try DiffEngine.makePatch(old: old, new: new)
        try BlockMatches.$minimumOld.withValue(1 << 16) {
            try BlockMatches.$part.withValue(64_000) {
                var patches: [[UInt8]] = []
                for threads in [1, 2, 4] {
                    var options = DiffOptions()
                    options.threads = threads
                    let patch = try DiffEngine.makePatch(old: old, new: new, options: options)
                    #expect(try PatchApplier.apply(old: old, patch: patch) == new, "\(threads) threads")
                    patches.append(patch)
                }
                #expect(patches.allSatisfy { $0 == patches[0] })
                #expect(patches[0].count <= without.count + 64, "with blocks \(patches[0].count), without \(without.count)")
                let blocks = Self.find(old, new, threads: 2)
                let indexed = try old.withUnsafeBufferPointer { o in
                    try ChainIndex(o, threads: 2, blocks: blocks).buckets.reduce(0) { $0 + $1.count }
                }
                #expect(indexed < old.count / 2, "\(indexed) positions indexed of \(old.count)")
            }
        }
    }
}

/// Old's anchors found on several cores (`AnchorIndex.add(_:threads:)`, for the block matches).
@Suite struct AnchorIndexTests {
    /// The same table as one pass over the whole text: every anchor window's lookup answers the same
    /// position (the first of repeated windows, wherever the stretches were cut), and as many entries.
    /// Every window is an anchor here (rate 0), so one lost or doubled at a cut would show.
    @Test(arguments: [2, 3, 8])
    func anchorsFoundSideBySideFillTheSameTable(_ threads: Int) {
        var rng = SeededGenerator(seed: 41)
        // Repeated records and runs (the same windows many times over), across the stretches' cuts.
        let text = TestData.structured(3_300_000, rng: &rng)
        let one = AnchorIndex(rateBits: 0, tableBits: 23), many = AnchorIndex(rateBits: 0, tableBits: 23)
        text.withUnsafeBufferPointer { t in
            one.add(t, 0..<t.count)
            many.add(t, threads: threads)
            #expect(one.entries == many.entries && one.entries > 10_000)
            var h = RollingHash.of(t.baseAddress!)
            var anchors = 0
            for i in 0...(t.count - RollingHash.window) {
                if i > 0 { h = RollingHash.roll(h, leaving: t[i - 1], entering: t[i + RollingHash.window - 1]) }
                let x = RollingHash.mix(h)
                guard one.isAnchor(x) else { continue }
                anchors += 1
                if one.lookup(x) != many.lookup(x) { Issue.record("anchor at \(i): \(String(describing: one.lookup(x))) against \(String(describing: many.lookup(x)))") }
            }
            #expect(anchors == t.count - RollingHash.window + 1 && anchors > one.entries)
        }
    }

    /// The anchors of a range, found by two rolling chains side by side, are those of hashing every
    /// window from scratch, in order: for ranges shorter than a window, odd and even, within one piece
    /// of 128 KiB and across several, and ending at the text's end.
    @Test func anchorsAreThoseOfEveryWindowHashedAlone() {
        var rng = SeededGenerator(seed: 42)
        let text = TestData.structured(400_001, rng: &rng)
        let rateMask: UInt64 = 3
        text.withUnsafeBufferPointer { t in
            let w = RollingHash.window
            for range in [0..<0, 5..<6, 7..<40, 100..<131_172, 3..<262_147, 262_144..<400_001, 0..<400_001, 399_950..<400_001] {
                var found: [(UInt64, Int)] = []
                AnchorIndex.forEachAnchor(t, range, rateMask: rateMask) { found.append(($0, $1)) }
                var expected: [(UInt64, Int)] = []
                for i in range where i + w <= t.count {
                    let x = RollingHash.mix(RollingHash.of(t.baseAddress! + i))
                    if x & rateMask == 0 { expected.append((x, i)) }
                }
                #expect(found.count == expected.count, "\(range): \(found.count) anchors, expected \(expected.count)")
                if let k = found.indices.first(where: { $0 < expected.count && found[$0] != expected[$0] }) {
                    Issue.record("\(range): anchor \(k) is \(found[k]), expected \(expected[k])")
                }
            }
        }
    }
}
