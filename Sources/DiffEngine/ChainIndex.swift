import Dispatch
import PatchFormat
#if canImport(Glibc)
import Glibc
#endif

/// The index of `DiffOptions.index = .hashChains` (`make --index hash-chains`): no suffix sort. Every
/// position of old belongs to the chain of its first 12 bytes' hash, and a search walks the pattern's
/// chain, newest position first (as in an LZ77 compressor's match finder), for up to `depth`
/// candidates, keeping the longest match; a filter of old's 12-byte strings (`GramFilter`) decides
/// where a search is worth starting. The price against the suffix array is that a search sees only the
/// `depth` most recent positions on its chain, where the suffix array always finds the longest match.
///
/// Layout: the chains are not linked lists but buckets, old's positions sorted by hash (a counting
/// sort on both cores, newest first within a bucket) with each bucket's start. A search reads its
/// candidates from one contiguous run, so the cache misses on old's bytes at the candidates overlap,
/// where following links waited for one miss per step before the next address was known: the same
/// candidates in the same order (patches byte for byte the same), `make` 1.4x faster on ruff (whose
/// time was mostly these walks) and 1.15x on pyarrow; the Django tar, which searches little, pays
/// for the sort's random writes (+0.07 s).
///
/// Only the newest `depth` positions of a bucket are ever read, so the rest are never placed
/// (`cursors`, from the counts; they were placed, then dropped): 28% of the positions of the 221 MB
/// polars library, 26% of the Django tar's, 10% of pyarrow's. That took the chains' peak under the
/// suffix array's on those files, and with it the reason the suffix array stayed the default above
/// 128 MiB: the chains are the default below 4 GiB (what 32-bit positions hold).
///
/// Measured on the corpus pairs (default xz, 2 cores; the peer benchmark's `phoenix` and `phoenix-sa`
/// rows, before the drop, which changes no patch) against the suffix array: `make` 2.1x faster on
/// numpy, 1.6x on ruff, 2.2x on pyarrow, 2.7x on the Django tar, 1.8x on polars; patches 0.2% larger
/// on numpy, 0.02% on pyarrow, 1.9% on the Django tar (text, whose common strings have long chains),
/// 1.4% smaller on ruff and 3.2% on polars (see `gram`). Memory: the positions and the bucket starts
/// (n/16 to n/8 of them) packed to ceil(log2(n + 1)) bits (4 bytes an entry while they are placed, as
/// libdivsufsort takes, and a second 4-byte cursor per bucket), then the filter (4 bits a byte).
/// Twice the buckets made ruff and pyarrow ~10% faster for 7-13 MB more; half made them 20-45%
/// slower (linked chains).
struct ChainIndex: MatchIndex, ~Copyable {
    /// Bytes hashed; shorter matches are not found. 12 rather than 8 (the shortest that could win is
    /// 9): chains of 12-byte strings mix fewer unrelated places, and skipping 9-11-byte matches
    /// elsewhere in old, which seldom pay for their tuple, made ruff 2.2% and the Django tar 1.9%
    /// smaller, numpy and pyarrow 0.1-0.3% larger. 16 was slower and no better overall.
    static let gram = 12
    /// Candidates a search looks at. Behind a 9-byte filter, deep walks were costly: in a prototype
    /// (2^24 heads) 2048 brought the Django tar within 1.6% of the suffix array but made ruff 1.8x
    /// slower, so it was 64. Behind the 12-byte filter most of ruff's steps (searches for strings old
    /// lacks) are gone and depth costs little; measured (linked chains, default xz, 2 cores; depth 64 /
    /// 128 / 256 / 512 / 1024): the Django tar 6,312 / 6,268 / 6,249 / 6,239 / 6,228 bytes, numpy
    /// 47,275 / 47,267 / 47,234 / 47,228 / 47,231, ruff 3,253,432 / 3,249,935 / 3,247,650 / 3,243,491 /
    /// 3,241,441, pyarrow 435,884 / 435,748 / 435,748 / 436,026 / 435,935; time the same on numpy and
    /// the Django tar, +3% on ruff and pyarrow at 256, +5-8% at 1024.
    static let depth = 256
    /// Old files it takes: positions and bucket starts are 32-bit while placed. Larger files use the
    /// suffix array.
    static let maxCount = Int(UInt32.max) - 1

    /// Old's positions (those with `gram` bytes to read), by bucket: bucket h is
    /// `positions[starts[h + 1] ..< starts[h + 2]]`, descending.
    let positions: PackedSuffixArray
    /// Which 12-byte strings occur in old: a search starts only where one may. The buckets cannot tell:
    /// each mixes the strings whose hashes share it, and a search for a string absent from old reads
    /// all of them.
    let filter: GramFilter
    /// Where each bucket starts in `positions` (entry h + 1 for bucket h; the last entry is the
    /// number of positions), packed like them.
    private let starts: PackedSuffixArray
    private let shift: UInt64
    /// Old's digest, as `hashing` asked (made on the other core while this one packs the positions).
    let digest: InputDigest?
    /// The block matches whose old ranges are not indexed, if any.
    let blocks: BlockMatches?

    /// log2 of the number of buckets for `count` positions indexed: between n/16 and n/8 (more buckets
    /// shorten the walks, but cost memory: twice the buckets took 7-13 MB more on ruff and pyarrow).
    /// Sized by the positions, not old's size: where block matches leave most of old unindexed, old's
    /// size gave the Django tar four times the buckets its positions fill (11 MB more at the build's
    /// peak, 0.04 s more), for the same patch.
    static func headBits(for count: Int) -> Int {
        min(30, max(10, PackedSuffixArray.bits(for: count) - 4))
    }

    /// The index's memory while matching, for `count` bytes of old: the positions and the bucket
    /// starts, packed, and the filter (4 bits a byte).
    static func matchingBytes(count: Int) -> Int {
        let entryBits = PackedSuffixArray.bits(for: count + 1)
        return (count + (1 << headBits(for: count))) * entryBits / 8 + count / 2
    }

    var heldBytes: Int { positions.byteCount + starts.byteCount + filter.byteCount }

    /// The chain of the `gram` (12) bytes at `p`: a multiplicative hash, its top bits.
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ shift: UInt64) -> Int {
        let a = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
        let b = UInt64(UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        return Int(truncatingIfNeeded: ((a ^ (b &* 0xC2B2_AE3D_27D4_EB4F)) &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// Indexes every position of `old`, or with `blocks` (matches found before, `BlockMatches`) those
    /// outside the blocks' old ranges; the matcher then takes the blocks where new is inside one. Or,
    /// with `positions` (which then stand for `blocks`), those positions (`IndexedPositions`).
    init(_ old: UnsafeBufferPointer<UInt8>, threads: Int, hashing: InputDigest.Taken = .nothing, blocks: BlockMatches? = nil,
         positions given: IndexedPositions? = nil) throws {
        let n = old.count
        precondition(n <= Self.maxCount, "hash chains over \(n) bytes")
        let indexed = given ?? IndexedPositions(oldCount: n, blocks: blocks)
        let usable = indexed.blocks
        let segments = indexed.runs
        let total = indexed.count
        let bits = Self.headBits(for: total)
        let shift = UInt64(64 - bits)
        let buckets = 1 << bits
        // The older and newer halves of the positions, by the runs' count.
        let (olderHalf, newerHalf) = PositionRun.halves(segments, at: indexed.runPositions / 2)
        // A counting sort of old's positions by bucket, by both cores at once, each on one half of old:
        // each half counts its positions per bucket, one prefix sum turns the counts into both halves'
        // cursors, and each half places the positions it keeps (`cursors`), newest first (a random
        // write per position: most of the build). The newer half's cursors end as the bucket starts
        // (`starts`); the older half's are dropped. Then old's digest and the filter, on both cores,
        // once the positions are packed (so the filter's memory is not added to the 4 bytes a position
        // they take while placed).
        nonisolated(unsafe) let o = old
        let parallel = threads > 1
        let side = DispatchGroup()
        let counted = DispatchSemaphore(value: 0), cursorsMade = DispatchSemaphore(value: 0)
        let placed = DispatchSemaphore(value: 0), filterMade = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var digest: InputDigest? = nil
        nonisolated(unsafe) var sideFiller: GramFilter.Filler? = nil
        let progress = GramFilter.Filler.Progress()
        var built: PackedSuffixArray? = nil
        // If this thread ever left before handing over the filter, the other core must not wait for it.
        var handedOver = false
        defer { if parallel && !handedOver { filterMade.signal() } }
        starts = try PackedSuffixArray(count: buckets + 2, maxValue: UInt32(n), what: "the match index buckets of a \(n)-byte file") { newer in
            // Positions and starts are 32-bit while placed, then packed (the starts after the positions).
            built = try PackedSuffixArray(upTo: total, maxValue: UInt32(n), what: "the match index of a \(n)-byte file") { positions in
                guard let olderCursors = calloc(buckets + 2, 4) else {
                    throw DiffEngineError.outOfMemory(what: "the match index buckets of a \(n)-byte file", bytes: (buckets + 2) * 4)
                }
                defer { free(olderCursors) }
                nonisolated(unsafe) let older = olderCursors.bindMemory(to: UInt32.self, capacity: buckets + 2)
                nonisolated(unsafe) let (newer, positions) = (newer, positions)
                let skips = Skips()
                // Nothing below throws: the other core, once started, always finds its signals.
                if parallel {
                    DispatchQueue.global().async(group: side) {
                        Self.count(o, newerHalf, of: indexed, shift, into: newer)
                        counted.signal()
                        cursorsMade.wait()
                        Self.place(o, newerHalf, of: indexed, shift, cursors: newer, skips: skips.newer, kept: skips.kept,
                                   into: positions)
                        placed.signal()
                        digest = InputDigest.of(UnsafeRawBufferPointer(o), hashing)
                        filterMade.wait()
                        sideFiller?.add(o, runs: segments, of: indexed, sharing: progress)
                    }
                    Self.count(o, olderHalf, of: indexed, shift, into: older)
                    counted.wait()
                } else {
                    Self.count(o, olderHalf, of: indexed, shift, into: older)
                    Self.count(o, newerHalf, of: indexed, shift, into: newer)
                }
                Self.cursors(older: older, newer: newer, buckets: buckets, skips: skips)
                let kept = skips.kept
                if parallel { cursorsMade.signal() }
                Self.place(o, olderHalf, of: indexed, shift, cursors: older, skips: skips.older, kept: kept, into: positions)
                if parallel {
                    placed.wait()
                } else {
                    Self.place(o, newerHalf, of: indexed, shift, cursors: newer, skips: skips.newer, kept: kept, into: positions)
                }
                // Bucket k is positions[newer[k + 1] ..< newer[k + 2]]: the last bucket ends at the count kept.
                newer[buckets + 1] = kept
                return Int(kept)
            }
        }
        let filter = GramFilter(sizedFor: total, gram: Self.gram)
        if parallel {
            sideFiller = filter.filler
            filterMade.signal()
            handedOver = true
        } else {
            digest = InputDigest.of(UnsafeRawBufferPointer(old), hashing)
        }
        filter.filler.add(old, runs: segments, of: indexed, sharing: progress)
        side.wait()
        positions = built.take()!
        self.filter = filter
        self.shift = shift
        self.blocks = usable
        self.digest = digest
    }

    /// Counts the positions `runs` of `old` (those of them `indexed`) into `counts[bucket + 1]`.
    private static func count(_ old: UnsafeBufferPointer<UInt8>, _ runs: [PositionRun], of indexed: IndexedPositions,
                              _ shift: UInt64, into counts: UnsafeMutablePointer<UInt32>) {
        guard let b = old.baseAddress else { return }
        indexed.forEach(runs) { i in counts[hash(b + i, shift) &+ 1] &+= 1 }
    }

    /// A half's positions of one bucket that come before the newest `depth` of the bucket (a search
    /// never reads them): the count of them still to come, and the cursor to take once they are past.
    struct Skip {
        var left: UInt32
        let cursor: UInt32
    }

    /// Both halves' skips, and the count of positions kept (placed). A bucket whose cursor is above
    /// `kept` has a skip: its cursor is `UInt32.max - k`, for skip k of its half.
    final class Skips: @unchecked Sendable {
        var older: [Skip] = []
        var newer: [Skip] = []
        var kept: UInt32 = 0
    }

    /// Turns both halves' counts into their cursors, keeping of each bucket only its newest `depth`
    /// positions: runs of one byte, padding and a text's common strings fill buckets far past it (28% of
    /// the positions of the 221 MB polars library, 26% of the Django tar, 10% of pyarrow), and they were
    /// placed and then dropped, 4 bytes each at the build's peak. Bucket k keeps the newer half's newest
    /// `min(newer, depth)` and then the older half's newest, up to `depth` in all; a half's cursor is
    /// where its kept positions end (they are placed backwards from there), so that once both are placed
    /// `newer[k + 1]` is bucket k's start. A half with positions to pass over first (its oldest) gets a
    /// `Skip` instead. The positions kept go to `skips.kept`.
    private static func cursors(older: UnsafeMutablePointer<UInt32>, newer: UnsafeMutablePointer<UInt32>, buckets: Int,
                                skips: Skips) {
        let depth = UInt32(Self.depth)
        var end: UInt32 = 0
        for k in 1...buckets {
            let olderCount = older[k], newerCount = newer[k]
            let newerKept = min(newerCount, depth)
            let olderKept = min(olderCount, depth &- newerKept)
            end &+= newerKept &+ olderKept
            if newerKept < newerCount {
                newer[k] = UInt32.max &- UInt32(truncatingIfNeeded: skips.newer.count)
                skips.newer.append(Skip(left: newerCount &- newerKept, cursor: end &- olderKept))
            } else {
                newer[k] = end &- olderKept
            }
            if olderKept < olderCount {
                older[k] = UInt32.max &- UInt32(truncatingIfNeeded: skips.older.count)
                skips.older.append(Skip(left: olderCount &- olderKept, cursor: end))
            } else {
                older[k] = end
            }
        }
        // Each skip passes over at least one position, so `kept` plus either half's skips is at most the
        // positions' count (below UInt32.max): every marked cursor is above `kept`, every plain one not.
        precondition(UInt64(end) + UInt64(max(skips.older.count, skips.newer.count)) < UInt64(UInt32.max),
                     "bucket cursors overlap their marks")
        skips.kept = end
    }

    /// Places the positions `runs` of `old` (those of them `indexed`), ascending, each just before its
    /// bucket's cursor: within a bucket they end newest first. A bucket with a skip (its cursor above
    /// `kept`) passes over as many first, then takes the skip's cursor.
    private static func place(_ old: UnsafeBufferPointer<UInt8>, _ runs: [PositionRun], of indexed: IndexedPositions,
                              _ shift: UInt64, cursors: UnsafeMutablePointer<UInt32>, skips: [Skip], kept: UInt32,
                              into positions: UnsafeMutablePointer<UInt32>) {
        guard let b = old.baseAddress else { return }
        var skips = skips
        skips.withUnsafeMutableBufferPointer { skips in
            indexed.forEach(runs) { i in
                let k = hash(b + i, shift) &+ 1
                let c = cursors[k]
                if c <= kept {
                    cursors[k] = c &- 1
                    positions[Int(c &- 1)] = UInt32(truncatingIfNeeded: i)
                } else {
                    let s = Int(UInt32.max &- c)
                    skips[s].left &-= 1
                    if skips[s].left == 0 { cursors[k] = skips[s].cursor }
                }
            }
        }
    }

    /// Calls `body` with the finder; the index lives at least until it returns.
    func withFinder<R>(old: UnsafeBufferPointer<UInt8>, _ body: (Finder) throws -> R) rethrows -> R {
        try positions.withView { p in
            try starts.withView { s in
                try filter.withView { f in
                    try body(Finder(old: old, positions: p, starts: s, shift: shift, filter: f))
                }
            }
        }
    }

    /// The positions of every bucket, in the order a search reads them (tests).
    var buckets: [[Int]] {
        positions.withView { p in
            starts.withView { s in (0..<(s.count - 2)).map { h in (s[h + 1]..<s[h + 2]).map { p[$0] } } }
        }
    }

    func matchChunks(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, threads: Int, chunkSize: Int?,
                     progress: ((Int) -> Void)?, done: DiffEngine.ChunkDone?) throws -> [[RecordedTuple]] {
        try withFinder(old: old) { f in
            if let blocks, let base = new.baseAddress {
                let finder = BlockAwareFinder(inner: f, blocks: blocks, old: old, new: base)
                return try DiffEngine.matchChunks(Matcher(old: old, new: new, finder: finder), threads: threads,
                                                  chunkSize: chunkSize, progress: progress, done: done)
            }
            return try DiffEngine.matchChunks(Matcher(old: old, new: new, finder: f), threads: threads, chunkSize: chunkSize,
                                              progress: progress, done: done)
        }
    }

    struct Finder: MatchFinder {
        let old: UnsafeBufferPointer<UInt8>
        let positions: PackedSuffixArray.View
        let starts: PackedSuffixArray.View
        let shift: UInt64
        let filter: GramFilter.View

        var probeLength: Int { filter.gram }

        @inline(__always)
        func mayMatch(_ p: UnsafePointer<UInt8>) -> Bool { filter.mayContain(p) }

        @inline(__always)
        func willAsk(_ p: UnsafePointer<UInt8>) { filter.prefetch(p) }

        @inline(__always)
        func longestMatch(_ p: UnsafePointer<UInt8>, length: Int) -> (pos: Int, len: Int) {
            let count = old.count
            guard length >= ChainIndex.gram, count >= ChainIndex.gram, let o = old.baseAddress else { return (0, 0) }
            // The pattern's first 12 bytes, as two overlapping 8-byte words.
            let key = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
            let key2 = UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 4, as: UInt64.self)
            // The newest `depth` positions of the pattern's bucket.
            let h = ChainIndex.hash(p, shift)
            var j = starts[h &+ 1]
            let end = min(starts[h &+ 2], j &+ ChainIndex.depth)
            var bestPos = 0, bestLen = 0
            while j < end {
                let pos = positions[j]
                // A candidate no longer than the best so far differs from the pattern at the best
                // length (or ends before it): one byte rules most of them out.
                if (bestLen == 0 || (pos &+ bestLen < count && o[pos &+ bestLen] == p[bestLen]))
                    && UnsafeRawPointer(o + pos).loadUnaligned(as: UInt64.self) == key
                    && UnsafeRawPointer(o + pos).loadUnaligned(fromByteOffset: 4, as: UInt64.self) == key2 {
                    let l = ChainIndex.gram &+ commonPrefixLength(o + (pos &+ ChainIndex.gram), p + ChainIndex.gram,
                                                                  limit: min(count &- pos, length) &- ChainIndex.gram)
                    if l > bestLen {
                        (bestPos, bestLen) = (pos, l)
                        if l == length { break }
                    }
                }
                j &+= 1
            }
            return (bestPos, bestLen)
        }
    }
}
