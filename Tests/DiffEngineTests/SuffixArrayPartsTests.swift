@testable import DiffEngine
import PatchFormat
import Patcher
import Testing
import TestSupport

/// Old's suffix array sorted in parts side by side (`SuffixArrayParts`, `SortedPart`), and the search
/// over the parts (`SuffixArrayFinder`).
@Suite struct SuffixArrayPartsTests {
    /// The parts tile old, each sees `overlap` bytes past its suffixes, each sorts with 32-bit
    /// positions, and how many there are depends on old's size alone.
    @Test(arguments: [(0, 1), (1, 1), (100, 1), ((16 << 20) - 1, 1), (16 << 20, 2), (24_500_000, 2), (221_000_000, 2),
                      (4_292_870_140, 2), (4_292_870_141, 3), (4 << 30, 3), (5 << 30, 3), (9 << 30, 5)])
    func partsTileOldAndStayUnder32Bits(count: Int, parts: Int) {
        let layout = SuffixArrayParts.layout(count: count)
        #expect(layout.count == parts, "\(count) bytes in \(layout.count) parts")
        var at = 0
        for part in layout {
            #expect(part.start == at)
            #expect(part.count >= 0)
            #expect(part.end == min(count, part.start + part.count + SuffixArrayParts.overlap))
            #expect(part.end - part.start < Int(Int32.max), "a part of \(part.end - part.start) bytes")
            at += part.count
        }
        #expect(at == count)
    }

    /// A part holds the suffixes that start in its stretch, in the order libdivsufsort gives its text;
    /// where no two of them agree for the whole overlap (a four-letter alphabet here), that is old's
    /// own order. Each part's two-byte table matches where its suffixes lie.
    @Test(arguments: [2, 3, 5])
    func partsHoldTheirSuffixesInOldsOrder(parts: Int) throws {
        var rng = SeededGenerator(seed: 900 + UInt64(parts))
        let old = (0..<30_001).map { _ in UInt8(rng.next() % 4) }
        try old.withUnsafeBufferPointer { o in
            let whole = try SuffixSorting.build32(o)
            defer { whole.deallocate() }
            let size = (old.count + parts - 1) / parts
            var covered = 0
            for start in stride(from: 0, to: old.count, by: size) {
                let count = min(size, old.count - start), end = min(old.count, start + count + 200)
                let part = try SortedPart(o, start: start, count: count, end: end)
                let inOldsOrder = whole.map { Int($0) }.filter { (start..<start + count).contains($0) }
                part.suffixes.withView { sa in
                    #expect(sa.count == count)
                    let got = (0..<sa.count).map { start + sa[$0] }
                    // (Not `got == inOldsOrder`: the test library takes minutes to print two such arrays.)
                    let firstDifference = zip(got, inOldsOrder).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                    #expect(got.count == inOldsOrder.count && firstDifference == nil,
                            "part at \(start): first out of old's order at \(firstDifference ?? -1)")
                    // Each key's range in the table is exactly where the part holds that key's suffixes.
                    let errors = part.prefixes.withView { keyRangeErrors($0, positions: got, text: old) }
                    #expect(errors.isEmpty, "part at \(start): \(errors.prefix(5))")
                }
                covered += count
            }
            #expect(covered == old.count)
        }
    }

    /// The search over parts finds a true match at every position of new, one that goes no further
    /// where it is, of the longest length there is when that is within the overlap, and of more than
    /// the overlap otherwise: long matches across the parts' seams are followed into the next part.
    @Test func theSearchOverPartsFindsTheLongestMatchOrOneLongerThanTheOverlap() throws {
        var rng = SeededGenerator(seed: 910)
        let old = (0..<12_000).map { _ in UInt8(rng.next() % 4) }
        // Stretches of old across the seams of three parts (4,000 and 8,000), with edits, and noise.
        var new = Array(old[3_700..<4_600]) + rng.bytes(50) + Array(old[7_900..<8_300])
        new[300] &+= 1
        new += (0..<300).map { _ in UInt8(rng.next() % 4) }
        let overlap = 64
        try old.withUnsafeBufferPointer { o in
            try new.withUnsafeBufferPointer { n in
                // Three parts: by hand, as `OldIndex` sorts them, with a filter that rejects nothing.
                let parts = try [0, 4_000, 8_000].map { try SortedPart(o, start: $0, count: 4_000, end: min(12_000, $0 + 4_000 + overlap)) }
                let filter = GramFilter(o)
                let views = parts.map(\.view)
                var longerThanOverlap = 0
                for scan in 0..<new.count {
                    var longest = 0
                    for p in 0..<old.count {
                        var l = 0
                        while p + l < old.count && scan + l < new.count && old[p + l] == new[scan + l] { l += 1 }
                        longest = max(longest, l)
                    }
                    let (pos, len) = filter.withView { f in
                        SuffixArrayFinder(old: o, parts: views, filter: f).longestMatch(n.baseAddress! + scan, length: new.count - scan)
                    }
                    #expect(Array(old[pos..<pos + len]) == Array(new[scan..<scan + len]), "scan \(scan)")
                    #expect(pos + len == old.count || scan + len == new.count || old[pos + len] != new[scan + len],
                            "scan \(scan): the match at \(pos) goes on past \(len) bytes")
                    if longest <= overlap {
                        #expect(len == longest, "scan \(scan)")
                    } else {
                        #expect(len > overlap, "scan \(scan): \(len) bytes of a longest \(longest)")
                        longerThanOverlap += 1
                    }
                }
                // The seams were crossed: matches of hundreds of bytes run over them.
                #expect(longerThanOverlap > 500)
            }
        }
    }

    /// Where two parts hold matches of the same length, the earlier part's is kept (the patch must not
    /// depend on which search finished first): old is one block twice, a part each.
    @Test func onATieTheEarlierPartWins() throws {
        var rng = SeededGenerator(seed: 915)
        let block = rng.bytes(5_000)
        let old = block + block
        // The whole pattern matches in both parts; then a pattern whose last byte matches neither.
        var partial = Array(block[100..<400])
        partial.append(block[400] &+ 1)
        for new in [Array(block[100..<400]), partial] {
            try old.withUnsafeBufferPointer { o in
                let parts = try [0, 5_000].map { try SortedPart(o, start: $0, count: 5_000, end: min(10_000, $0 + 5_000 + 64)) }
                let views = parts.map(\.view)
                let filter = GramFilter(o)
                let (pos, len) = new.withUnsafeBufferPointer { n in
                    filter.withView { f in
                        SuffixArrayFinder(old: o, parts: views, filter: f).longestMatch(n.baseAddress!, length: new.count)
                    }
                }
                #expect(len == 300)
                #expect(pos == 100, "a tie taken from the later part (\(pos))")
            }
        }
    }

    /// Old sorted in parts: the same patch at any thread count, it applies, and it is about the size
    /// of the patch from old sorted whole (the parts miss only order among suffixes that agree past
    /// the overlap).
    @Test func patchesFromPartsAreTheSameAtAnyThreadCountAndApply() throws {
        var rng = SeededGenerator(seed: 920)
        let old = TestData.structured(400_000, rng: &rng)
        let new = TestData.mutate(old, edits: 60, rng: &rng)
        var options = DiffOptions()
        options.index = .suffixArray
        let whole = try DiffEngine.makePatch(old: old, new: new, options: options)
        var patches: [[UInt8]] = []
        try SuffixArrayParts.$splitFrom.withValue(100_000) {
            try SuffixArrayParts.$overlap.withValue(4_096) {
                #expect(SuffixArrayParts.layout(count: old.count).count == 2)
                for threads in [1, 2, 3] {
                    options.threads = threads
                    patches.append(try DiffEngine.makePatch(old: old, new: new, options: options))
                }
            }
        }
        #expect(patches.allSatisfy { $0 == patches[0] }, "\(patches.map(\.count))")
        #expect(try PatchApplier.apply(old: old, patch: patches[0]) == new)
        #expect(Double(patches[0].count) <= Double(whole.count) * 1.02, "parts \(patches[0].count) bytes, whole \(whole.count)")
    }
}
