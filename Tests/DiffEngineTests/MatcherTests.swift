@testable import DiffEngine
import PatchFormat
import Patcher
import Testing
import TestSupport

@Suite struct MatcherTests {
    /// The suffix-array search returns a longest match, checked against brute force.
    @Test func longestMatchAgreesWithBruteForce() throws {
        var rng = SeededGenerator(seed: 404)
        // A small alphabet makes many long partial matches.
        let old = (0..<3000).map { _ in UInt8(rng.next() % 4) }
        let new = (0..<400).map { _ in UInt8(rng.next() % 4) }
        try old.withUnsafeBufferPointer { o in
            try new.withUnsafeBufferPointer { n in
                let sa = try SuffixSorting.build32(o)
                defer { sa.deallocate() }
                try Matcher.with(old: o, new: n, sa: UnsafeBufferPointer(sa)) { matcher in
                for scan in 0..<new.count {
                    let (pos, len) = matcher.longestMatch(at: scan)
                    var best = 0
                    for p in 0..<old.count {
                        var l = 0
                        while p + l < old.count && scan + l < new.count && old[p + l] == new[scan + l] { l += 1 }
                        best = max(best, l)
                    }
                    #expect(len == best, "scan \(scan)")
                    #expect(Array(old[pos..<pos + len]) == Array(new[scan..<scan + len]), "scan \(scan)")
                }
                }
            }
        }
    }

    @Test func suffixArrayIsSorted() throws {
        var rng = SeededGenerator(seed: 405)
        let text = (0..<5000).map { _ in UInt8(rng.next() % 3) }
        try text.withUnsafeBufferPointer { t in
            let sa = try SuffixSorting.build32(t)
            defer { sa.deallocate() }
            #expect(Set(sa.map { Int($0) }) == Set(0..<text.count))
            for i in 1..<sa.count {
                #expect(text[Int(sa[i - 1])...].lexicographicallyPrecedes(text[Int(sa[i])...]))
            }
        }
    }

    /// The packed suffix array matches like the unpacked one libdivsufsort makes: the same tuples, in
    /// chunks and threads as `make` runs them.
    @Test func thePackedSuffixArrayMatchesLikeThePlainOne() throws {
        var rng = SeededGenerator(seed: 407)
        let old = TestData.structured(600_000, rng: &rng)
        let new = TestData.mutate(old, edits: 80, rng: &rng)
        func tuples<SA: SuffixArrayView>(_ sa: SA, _ o: UnsafeBufferPointer<UInt8>, _ n: UnsafeBufferPointer<UInt8>) throws -> [[Int]] {
            let chunks = try Matcher.with(old: o, new: n, sa: sa) { m in
                try DiffEngine.matchChunks(m, threads: 2, chunkSize: 100_000, progress: nil)
            }
            return chunks.flatMap { $0.map { [$0.newStart, $0.oldStart, $0.add, $0.copy] } }
        }
        try old.withUnsafeBufferPointer { o in
            try new.withUnsafeBufferPointer { n in
                let sa32 = try SuffixSorting.build32(o)
                defer { sa32.deallocate() }
                let plain = try tuples(UnsafeBufferPointer(sa32), o, n)
                let packed = try PackedSuffixArray(sorting: o).withView { try tuples($0, o, n) }
                #expect(plain.count > 80)
                #expect(packed == plain, "the packed suffix array (20 bits an entry here) matches differently")
            }
        }
    }

    @Test(arguments: GramFilter.grams) func gramFilterNeverRejectsAPresentGram(gram: Int) {
        var rng = SeededGenerator(seed: 406)
        let text = rng.bytes(50_000)
        text.withUnsafeBufferPointer { t in
            let filter = GramFilter(t, gram: gram)
            var missed = 0
            for i in 0...(text.count - gram) where !filter.mayContain(t.baseAddress! + i) { missed += 1 }
            #expect(missed == 0)
            // And rejects most absent ones.
            let probes = rng.bytes(10_000 + gram)
            var yes = 0
            probes.withUnsafeBufferPointer { p in
                for i in 0..<10_000 where filter.mayContain(p.baseAddress! + i) { yes += 1 }
            }
            // Two bits of a word at 4 bits a byte: ~15% in theory (one bit: ~22%).
            #expect(yes < 1900, "filter accepted \(yes) of 10000 random grams")
        }
    }
}

/// The chunks of a parallel match must tile new exactly: each tuple starts where the previous one
/// ended and the last ends at new's end. (A skip over a long non-winning match once ran past a
/// chunk's end: the next chunk covered the same bytes again and the patch declared more bytes than
/// the new file has; polars, 180 MB, hit it.)
@Suite struct ChunkTilingTests {
    @Test(arguments: 0..<12)
    func chunksTileNewExactly(seed: UInt64) throws {
        var rng = SeededGenerator(seed: 700 + seed)
        // A four-letter alphabet: matches of 9-12 bytes elsewhere in old at almost every position, which
        // do not beat the alignment and get skipped, right across chunk boundaries.
        let old = (0..<50_000).map { _ in UInt8(rng.next() % 4) }
        let new = TestData.mutate(old, edits: 400, rng: &rng)
        try old.withUnsafeBufferPointer { o in
            try new.withUnsafeBufferPointer { n in
                let sa = try SuffixSorting.build32(o)
                defer { sa.deallocate() }
                let chunkSize = [13, 29, 64, 97, 250, 1_000][Int(seed) % 6]
                let chunks = try Matcher.with(old: o, new: n, sa: UnsafeBufferPointer(sa)) { m in
                    try DiffEngine.matchChunks(m, threads: 2, chunkSize: chunkSize, progress: nil)
                }
                var at = 0
                var bad: [String] = []
                for t in chunks.joined() {
                    if t.newStart != at && bad.count < 3 { bad.append("tuple at \(t.newStart), expected \(at)") }
                    at = t.newStart + t.add + t.copy
                }
                #expect(bad.isEmpty, "chunk size \(chunkSize): \(bad)")
                #expect(at == new.count)
            }
        }
    }

    /// Where chunk boundaries fall inside one alignment (new is old with 1,000 bytes inserted near
    /// its start and bytes changed in place, so every later chunk starts where the last one's match
    /// goes on, 1,000 bytes off the identity a chunk starts from), joining the chunks' tuples gives
    /// the tuples one chunk makes: no tuple per boundary, no empty tuple at a chunk's start. And the
    /// patch applies, in both formats.
    @Test func tuplesAcrossChunkBoundariesAreJoined() throws {
        var rng = SeededGenerator(seed: 731)
        let old = TestData.structured(400_000, rng: &rng)
        var new = old
        for i in stride(from: 5_000, to: new.count, by: 23_456) { new[i] &+= 1 }
        new.insert(contentsOf: rng.bytes(1_000), at: 3_000)
        struct Counter: MatchSink {
            var tuples = 0
            mutating func emit(newStart: Int, oldStart: Int, add: Int, copy: Int, seek: Int) throws { tuples += 1 }
        }
        func tuples(chunkSize: Int) throws -> Int {
            var counter = Counter()
            try old.withUnsafeBufferPointer { o in
                try new.withUnsafeBufferPointer { n in
                    try DiffEngine.match(old: o, new: n, index: .suffixArray, threads: 2, chunkSize: chunkSize,
                                         into: &counter, progress: nil)
                }
            }
            return counter.tuples
        }
        let whole = try tuples(chunkSize: new.count)
        #expect(try tuples(chunkSize: 10_000) == whole, "40 chunks")
        #expect(try tuples(chunkSize: 65_536) == whole, "7 chunks")
        for format in [PatchKind.phx, .bsdiff] {
            var options = DiffOptions(format: format, threads: 2)
            options.matchChunkSize = 10_000
            let patch = try DiffEngine.makePatch(old: old, new: new, options: options)
            #expect(try PatchApplier.apply(old: old, patch: patch) == new, "\(format)")
        }
    }

    /// A chunk's searches ask for matches that end within the chunk: a near-identical file's match
    /// runs on to new's end, and comparing it that far from every chunk was quadratic. The finder here
    /// answers the identity alignment (new equals old) and records the longest pattern asked for.
    @Test func aChunksSearchesEndAtItsEnd() throws {
        final class Asked { var beyond = 0, searches = 0 }
        struct IdentityFinder: MatchFinder {
            let old: UnsafeBufferPointer<UInt8>
            let new: UnsafePointer<UInt8>
            let end: Int
            let asked: Asked
            var probeLength: Int { 9 }
            func mayMatch(_ p: UnsafePointer<UInt8>) -> Bool { true }
            func willAsk(_ p: UnsafePointer<UInt8>) {}
            func longestMatch(_ p: UnsafePointer<UInt8>, length: Int) -> (pos: Int, len: Int) {
                let at = p - new
                asked.searches += 1
                if at + length > end { asked.beyond += 1 }
                return (at, commonPrefixLength(old.baseAddress! + at, p, limit: min(length, old.count - at)))
            }
        }
        struct Tuples: MatchSink {
            var added = 0
            mutating func emit(newStart: Int, oldStart: Int, add: Int, copy: Int, seek: Int) throws { added += add + copy }
        }
        var rng = SeededGenerator(seed: 732)
        let old = TestData.structured(300_000, rng: &rng)
        try old.withUnsafeBufferPointer { o in
            for range in [0..<100_000, 100_000..<200_000, 250_000..<300_000] {
                let asked = Asked()
                let matcher = Matcher(old: o, new: o, finder: IdentityFinder(old: o, new: o.baseAddress!, end: range.upperBound, asked: asked))
                var sink = Tuples()
                try matcher.run(range, &sink)
                #expect(asked.searches > 0 && asked.beyond == 0, "\(range): \(asked.beyond) of \(asked.searches) searches past the end")
                #expect(sink.added == range.count, "\(range)")
            }
        }
    }
}
