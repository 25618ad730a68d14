import PatchFormat

/// The index of `DiffOptions.index = .hashChains` (`make --index hash-chains`): no suffix sort. Every
/// position of old goes on the chain of its first 12 bytes' hash (the newest first, as in an LZ77
/// compressor's match finder), and a search walks the pattern's chain for up to `depth` candidates,
/// keeping the longest match; a filter of old's 12-byte strings (`GramFilter`) decides where a search
/// is worth starting. Building it is one pass over old, several times faster than libdivsufsort, so
/// `make` no longer waits for a sort; the price is that a search sees only the `depth` most recent
/// positions on its chain, where the suffix array always finds the longest match.
///
/// Measured on the corpus pairs (default xz, 2 cores; the peer benchmark's `phoenix` and `phoenix-sa`
/// rows) against the suffix array: `make` 1.9x faster on numpy, 1.7x on pyarrow, 3.0x on the Django
/// tar, 1.2x on ruff (whose time is mostly matching and LZMA); patches 0.2% larger on numpy, 0.02% on
/// pyarrow, 1.9% on the Django tar (text, whose common strings have long chains), and 1.4% smaller
/// on ruff (see `gram`). Memory: the links and the chain heads (n/16 to n/8 of them) packed to
/// ceil(log2(n + 1)) bits (4 bytes an entry while they are built, as libdivsufsort takes), and the
/// filter; that is the suffix array's peak plus the heads: 80 MB on numpy, 168 on ruff, 181 on the
/// Django tar and 351.5 on pyarrow (HDiffPatch -m: 82, 174, 184, 352.4).
/// Twice the heads made ruff and pyarrow ~10% faster for 7-13 MB more; half made them 20-45% slower.
struct ChainIndex: MatchIndex, ~Copyable {
    /// Bytes hashed; shorter matches are not found. 12 rather than 8 (the shortest that could win is
    /// 9): chains of 12-byte strings mix fewer unrelated places, and skipping 9-11-byte matches
    /// elsewhere in old, which seldom pay for their tuple, made ruff 2.2% and the Django tar 1.9%
    /// smaller, numpy and pyarrow 0.1-0.3% larger. 16 was slower and no better overall.
    static let gram = 12
    /// Candidates a search looks at. Behind a 9-byte filter, deep walks were costly: in a prototype
    /// (2^24 heads) 2048 brought the Django tar within 1.6% of the suffix array but made ruff 1.8x
    /// slower, so it was 64. Behind the 12-byte filter most of ruff's steps (searches for strings old
    /// lacks) are gone and depth costs little; measured (default xz, 2 cores; depth 64 / 128 / 256 /
    /// 512 / 1024): the Django tar 6,312 / 6,268 / 6,249 / 6,239 / 6,228 bytes, numpy 47,275 / 47,267 /
    /// 47,234 / 47,228 / 47,231, ruff 3,253,432 / 3,249,935 / 3,247,650 / 3,243,491 / 3,241,441,
    /// pyarrow 435,884 / 435,748 / 435,748 / 436,026 / 435,935; time the same on numpy and the Django
    /// tar, +3% on ruff and pyarrow at 256, +5-8% at 1024.
    static let depth = 256
    /// Old files it takes: a link is a 32-bit position + 1 (0 ends a chain). Larger files use the
    /// suffix array.
    static let maxCount = Int(UInt32.max) - 1

    /// links[i]: 1 + the previous position whose first `gram` bytes hash like those at i, or 0.
    let links: PackedSuffixArray
    /// Which 12-byte strings occur in old: a search starts only where one may. The chains cannot tell:
    /// each mixes the strings whose hashes share a head, and a search for a string absent from old
    /// walks all of them.
    let filter: GramFilter
    /// heads[h]: 1 + the last position of old whose first `gram` bytes hash to h, or 0; packed like the links.
    private let heads: PackedSuffixArray
    private let shift: UInt64
    /// SHA-256 of old, if `hashing` was set (made on another core while the chains are built).
    let sha256: [UInt8]?

    /// log2 of the number of chain heads for `count` bytes of old: between n/16 and n/8 heads (more
    /// heads shorten the walks, but cost memory that would take pyarrow's peak over HDiffPatch's).
    static func headBits(for count: Int) -> Int {
        min(30, max(10, PackedSuffixArray.bits(for: count) - 4))
    }

    /// The index's memory while matching, for `count` bytes of old: the links and the heads, packed,
    /// and the filter (4 bits a byte).
    static func matchingBytes(count: Int) -> Int {
        let entryBits = PackedSuffixArray.bits(for: count + 1)
        return (count + (1 << headBits(for: count))) * entryBits / 8 + count / 2
    }

    /// The chain of the `gram` (12) bytes at `p`: a multiplicative hash, its top bits.
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ shift: UInt64) -> Int {
        let a = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
        let b = UInt64(UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        return Int(truncatingIfNeeded: ((a ^ (b &* 0xC2B2_AE3D_27D4_EB4F)) &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    init(_ old: UnsafeBufferPointer<UInt8>, threads: Int, hashing: Bool = false) throws {
        let n = old.count
        precondition(n <= Self.maxCount, "hash chains over \(n) bytes")
        let bits = Self.headBits(for: n)
        let shift = UInt64(64 - bits)
        nonisolated(unsafe) var digest: [UInt8]? = nil
        // The filter takes longer to fill than the chains to build (a random write per byte each, but
        // a larger bitmap): the other core starts on it, and this one joins once the chains are built.
        let filter = GramFilter(sizedFor: n, gram: Self.gram)
        let filler = filter.filler, progress = GramFilter.Filler.Progress()
        nonisolated(unsafe) let o = old
        var built: PackedSuffixArray? = nil
        heads = try besideAnotherCore(threads: threads, {
            if hashing { digest = SHA256Hasher.hash(UnsafeRawBufferPointer(o)) }
            filler.add(o, sharing: progress)
        }, then: {
            // Heads and links are 32-bit while the chains are built, then packed like the links (the
            // heads after the links, so that only one is at 4 bytes an entry at a time). Both mappings
            // start zeroed: empty chains, and the last positions (fewer than `gram` bytes left) end theirs.
            let heads = try PackedSuffixArray(count: 1 << bits, maxValue: UInt32(n), what: "the match chain heads of a \(n)-byte file") { h in
                built = try PackedSuffixArray(count: n, maxValue: UInt32(n), what: "the match chains of a \(n)-byte file") { next in
                    guard n >= Self.gram, let b = old.baseAddress else { return }
                    for i in 0...(n - Self.gram) {
                        let k = Self.hash(b + i, shift)
                        next[i] = h[k]
                        h[k] = UInt32(truncatingIfNeeded: i &+ 1)
                    }
                }
            }
            filler.add(old, sharing: progress)
            return heads
        })
        links = built.take()!
        self.filter = filter
        self.shift = shift
        sha256 = digest
    }

    /// Calls `body` with the finder; the index lives at least until it returns.
    func withFinder<R>(old: UnsafeBufferPointer<UInt8>, _ body: (Finder) throws -> R) rethrows -> R {
        try links.withView { l in
            try heads.withView { h in
                try filter.withView { f in
                    try body(Finder(old: old, links: l, heads: h, shift: shift, filter: f))
                }
            }
        }
    }

    func matchChunks(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, threads: Int, chunkSize: Int?,
                     progress: ((Int) -> Void)?) throws -> [[RecordedTuple]] {
        try withFinder(old: old) { f in
            try DiffEngine.matchChunks(Matcher(old: old, new: new, finder: f), threads: threads, chunkSize: chunkSize,
                                       progress: progress)
        }
    }

    struct Finder: MatchFinder {
        let old: UnsafeBufferPointer<UInt8>
        let links: PackedSuffixArray.View
        let heads: PackedSuffixArray.View
        let shift: UInt64
        let filter: GramFilter.View

        var probeLength: Int { filter.gram }

        @inline(__always)
        func mayMatch(_ p: UnsafePointer<UInt8>) -> Bool { filter.mayContain(p) }

        @inline(__always)
        func longestMatch(_ p: UnsafePointer<UInt8>, length: Int) -> (pos: Int, len: Int) {
            let count = old.count
            guard length >= ChainIndex.gram, count >= ChainIndex.gram, let o = old.baseAddress else { return (0, 0) }
            // The pattern's first 12 bytes, as two overlapping 8-byte words.
            let key = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
            let key2 = UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 4, as: UInt64.self)
            var link = heads[ChainIndex.hash(p, shift)]
            var bestPos = 0, bestLen = 0, left = ChainIndex.depth
            while link != 0 && left > 0 {
                let pos = link &- 1
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
                link = links[pos]
                left &-= 1
            }
            return (bestPos, bestLen)
        }
    }
}
