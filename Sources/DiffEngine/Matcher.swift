/// Receives the control tuples of a diff, in order. `add` bytes of new starting at `newStart` are coded
/// as differences against old starting at `oldStart`; the next `copy` bytes of new are stored verbatim;
/// then the old cursor moves by `seek`.
protocol MatchSink {
    mutating func emit(newStart: Int, oldStart: Int, add: Int, copy: Int, seek: Int) throws
}

/// Length of the common prefix of `a` and `b`, at most `limit`. Compares 8 bytes at a time.
@inline(__always)
func commonPrefixLength(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, limit: Int) -> Int {
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i &+ 8 <= limit {
        let x = ra.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ rb.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        if x != 0 { return i &+ (UInt64(littleEndian: x).trailingZeroBitCount >> 3) }
        i &+= 8
    }
    while i < limit && a[i] == b[i] { i &+= 1 }
    return i
}

/// How many of the `count` bytes at `a` and at `b` are equal, compared 8 at a time: the matcher scores
/// an alignment over every byte a match covers, and in long matches (a tar of two releases: nearly all
/// of new) byte by byte was a third of its time.
@inline(__always)
func equalByteCount(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ count: Int) -> Int {
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    let low7: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
    var i = 0, equal = 0
    while i &+ 8 <= count {
        let x = ra.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ rb.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        if x == 0 {
            equal &+= 8
        } else {
            // The top bit of each byte of x that is zero (the bytes agree) and no other bit: adding 0x7F
            // to a byte's low 7 bits carries into its top bit unless they are all clear, and no carry
            // crosses into the next byte.
            equal &+= (~(((x & low7) &+ low7) | x | low7)).nonzeroBitCount
        }
        i &+= 8
    }
    while i < count {
        if a[i] == b[i] { equal &+= 1 }
        i &+= 1
    }
    return equal
}

/// Whether the 8 bytes at `a` and at `b` are all equal.
@inline(__always)
func equalWords(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>) -> Bool {
    UnsafeRawPointer(a).loadUnaligned(as: UInt64.self) == UnsafeRawPointer(b).loadUnaligned(as: UInt64.self)
}

/// Finds, for a position of new, a long match in old: the matcher's one question about old.
protocol MatchFinder {
    /// Bytes `mayMatch` reads: 9 (the shortest match that can win) or 12 (the shortest hash chains find).
    var probeLength: Int { get }
    /// False only when no match of `probeLength` bytes or more starts at `p` (which has that many
    /// readable bytes): then none can win, or `longestMatch` would find none, and the search is skipped.
    func mayMatch(_ p: UnsafePointer<UInt8>) -> Bool
    /// Asks for what `mayMatch(p)` will read, ahead of the call (a hint; `p` has `probeLength` bytes).
    func willAsk(_ p: UnsafePointer<UInt8>)
    /// A match for the pattern `p[0..<length]` (length > 0) in old, as (position in old, length): the
    /// longest there is (`SuffixArrayFinder`) or the longest among those looked at (`ChainIndex.Finder`).
    func longestMatch(_ p: UnsafePointer<UInt8>, length: Int) -> (pos: Int, len: Int)
}

/// One part of old's suffix array (`SuffixArrayParts`): the suffixes that start in
/// `start..<start + sa.count`, sorted as suffixes of `old[start..<end]` (entries relative to `start`),
/// and their two-byte buckets.
struct SuffixArrayPart<SA: SuffixArrayView> {
    let sa: SA
    let prefixes: PrefixRanges.View
    let start: Int
    let end: Int
}

/// The longest match by binary search in old's suffix array, started in the pattern's two-byte
/// bucket (`PrefixRanges`), behind the 9-gram filter (`GramFilter`). Where old was sorted in parts,
/// each part is searched and the longest match kept (the first part's on a tie); a match that reaches
/// the end of its part's text is then followed into the rest of old.
///
/// Cost: O(log n + match length) a search and part, about 25 cache misses on a 24 MB file less the
/// ~16 steps the bucket saves.
struct SuffixArrayFinder<SA: SuffixArrayView>: MatchFinder {
    let old: UnsafeBufferPointer<UInt8>
    let parts: [SuffixArrayPart<SA>]
    let filter: GramFilter.View

    /// Old sorted whole (one part).
    init(old: UnsafeBufferPointer<UInt8>, sa: SA, filter: GramFilter.View, prefixes: PrefixRanges.View) {
        self.init(old: old, parts: [SuffixArrayPart(sa: sa, prefixes: prefixes, start: 0, end: old.count)], filter: filter)
    }

    init(old: UnsafeBufferPointer<UInt8>, parts: [SuffixArrayPart<SA>], filter: GramFilter.View) {
        precondition(!parts.isEmpty, "a suffix array in no parts")
        self.old = old
        self.parts = parts
        self.filter = filter
    }

    var probeLength: Int { filter.gram }

    @inline(__always)
    func mayMatch(_ p: UnsafePointer<UInt8>) -> Bool { filter.mayContain(p) }

    @inline(__always)
    func willAsk(_ p: UnsafePointer<UInt8>) { filter.prefetch(p) }

    @inline(__always)
    func longestMatch(_ p: UnsafePointer<UInt8>, length patternLength: Int) -> (pos: Int, len: Int) {
        if old.isEmpty { return (0, 0) }
        return parts.withUnsafeBufferPointer { parts in
            // Two parts at a time, a step of each in turn: the two searches' cache misses overlap (ruff
            // 10% faster than one search after the other). The longest match wins, the earlier part's
            // on a tie.
            var best = (pos: 0, len: -1)
            @inline(__always) func consider(_ m: (pos: Int, len: Int)) { if m.len > best.len { best = m } }
            var k = 0
            while k < parts.count {
                var a = PartSearch(parts[k], old: old, p, patternLength)
                if k &+ 1 < parts.count {
                    var b = PartSearch(parts[k &+ 1], old: old, p, patternLength)
                    while a.active || b.active {
                        if a.active { a.step(parts[k].sa, p, patternLength) }
                        if b.active { b.step(parts[k &+ 1].sa, p, patternLength) }
                    }
                    consider(a.result(parts[k], old: old, p, patternLength))
                    consider(b.result(parts[k &+ 1], old: old, p, patternLength))
                } else {
                    while a.active { a.step(parts[k].sa, p, patternLength) }
                    consider(a.result(parts[k], old: old, p, patternLength))
                }
                k &+= 2
            }
            return best
        }
    }

    /// One binary search of the pattern in one part, a step at a time.
    struct PartSearch {
        let o: UnsafePointer<UInt8>
        let textCount: Int
        var lo = 0, hi: Int
        var lcpLo = 0, lcpHi = 0
        var floor = 0, ceiling: Int
        var found = -1

        @inline(__always)
        init(_ part: SuffixArrayPart<SA>, old: UnsafeBufferPointer<UInt8>, _ p: UnsafePointer<UInt8>, _ patternLength: Int) {
            o = old.baseAddress! + part.start
            textCount = part.end &- part.start
            hi = part.sa.count
            ceiling = hi
            // Search only the suffixes that share the pattern's first two bytes, when there are any (the
            // answer is the same: every other suffix agrees on fewer bytes).
            if patternLength >= 2 {
                let bucket = part.prefixes.range(p)
                if !bucket.isEmpty {
                    (lo, hi) = (bucket.lowerBound, bucket.upperBound)
                    (floor, ceiling) = (lo, hi)
                    (lcpLo, lcpHi) = (2, 2)
                }
            }
        }

        @inline(__always) var active: Bool { found < 0 && lo < hi }

        @inline(__always)
        mutating func step(_ sa: SA, _ p: UnsafePointer<UInt8>, _ patternLength: Int) {
            let mid = lo &+ (hi &- lo) >> 1
            let s = Int(sa[mid])
            let suffixLength = textCount &- s
            let known = min(lcpLo, lcpHi)
            let l = known &+ commonPrefixLength(o + (s &+ known), p + known, limit: min(suffixLength, patternLength) &- known)
            if l == patternLength {
                (found, lcpLo) = (s, l)
            } else if l == suffixLength || o[s &+ l] < p[l] {
                lo = mid &+ 1
                lcpLo = l
            } else {
                hi = mid
                lcpHi = l
            }
        }

        /// The match found, as (position in old, length).
        @inline(__always)
        func result(_ part: SuffixArrayPart<SA>, old: UnsafeBufferPointer<UInt8>, _ p: UnsafePointer<UInt8>,
                    _ patternLength: Int) -> (pos: Int, len: Int) {
            // The longest common prefix is with one of the two suffixes around the insertion point.
            var bestPos = 0, bestLen = -1
            if found >= 0 {
                (bestPos, bestLen) = (found, lcpLo)
            } else {
                if lo > floor { bestPos = Int(part.sa[lo &- 1]); bestLen = lcpLo }
                if lo < ceiling && lcpHi > bestLen { bestPos = Int(part.sa[lo]); bestLen = lcpHi }
                bestLen = max(bestLen, 0)
            }
            // A match that reaches the end of the part's text may go on in old.
            if bestLen == textCount &- bestPos && part.end < old.count && bestLen < patternLength {
                bestLen &+= commonPrefixLength(old.baseAddress! + part.end, p + bestLen,
                                               limit: min(old.count &- part.end, patternLength &- bestLen))
            }
            return (part.start &+ bestPos, bestLen)
        }
    }
}

/// The bsdiff matching loop (Colin Percival, "Naive differences of executable code", 2003): at each
/// position of new, find a long exact match in old (`MatchFinder`: by default the longest, by binary
/// search in a suffix array); accept it when it beats the current alignment by more than 8 bytes; then
/// extend the previous match forward and this one backward while at least half the bytes agree, so
/// that near-identical regions become "add" runs of mostly-zero differences.
///
/// Cost: one search per position scanned outside long matches; a guard skips ahead inside long
/// ambiguous matches so that repetitive inputs stay near-linear. No allocation.
struct Matcher<Finder: MatchFinder> {
    let old: UnsafeBufferPointer<UInt8>
    let new: UnsafeBufferPointer<UInt8>
    let finder: Finder

    init(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, finder: Finder) {
        self.old = old
        self.new = new
        self.finder = finder
    }

    /// Builds the filter and the prefix table of `old` for a matcher over the suffix array `sa` and
    /// calls `body` with it (tests; `OldIndex` owns its own).
    static func with<SA: SuffixArrayView, R>(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, sa: SA,
                                             _ body: (Matcher) throws -> R) rethrows -> R where Finder == SuffixArrayFinder<SA> {
        let filter = GramFilter(old)
        let prefixes = PrefixRanges(old)
        return try filter.withView { f in
            try prefixes.withView { p in
                try body(Matcher(old: old, new: new, finder: SuffixArrayFinder(old: old, sa: sa, filter: f, prefixes: p)))
            }
        }
    }

    /// Matches this long or longer that do not beat the current alignment are skipped over by half
    /// their length instead of one byte at a time. bsdiff walks them a byte at a time, one search per
    /// byte (quadratic on repetitive data); at 64 this was only that guard. At 9 (the shortest match
    /// that can win) it is also the matcher's main saving: on ruff 1.2 of 2.4 million searches were
    /// steps through 9-63-byte matches elsewhere in old that never won. Measured on the corpus
    /// (zstd 19, context order, split control): ruff 25% less matcher CPU and 0.4% smaller, pyarrow
    /// 0.5% smaller, numpy and the Django tar within 0.2% (a few bytes either way).
    static var skipThreshold: Int { GramFilter.gram }
    /// How many positions ahead the scan asks for the filter's word (`MatchFinder.willAsk`).
    static var probeAhead: Int { 16 }

    /// A match for the prefix of new[scan..<end] in old (the longest, with the suffix-array finder), as
    /// (position in old, length). `end`: new's end by default.
    @inline(__always)
    func longestMatch(at scan: Int, end: Int? = nil) -> (pos: Int, len: Int) {
        let patternLength = (end ?? new.count) - scan
        if old.isEmpty || patternLength <= 0 { return (0, 0) }
        return finder.longestMatch(new.baseAddress! + scan, length: patternLength)
    }

    func run<Sink: MatchSink>(_ sink: inout Sink, progress: ((Int) -> Void)? = nil) throws {
        try run(0..<new.count, &sink, progress: progress)
    }

    /// Matches the part `range` of new (searches see all of old, and new up to the range's end: a match
    /// is found no longer than what is left of the range). Every tuple emitted covers new bytes inside
    /// `range`, the last one ending exactly at its end.
    func run<Sink: MatchSink>(_ range: Range<Int>, _ sink: inout Sink, progress: ((Int) -> Void)? = nil) throws {
        let newCount = range.upperBound, oldCount = old.count
        if range.isEmpty { return }
        let o = old.baseAddress, n = new.baseAddress!

        @inline(__always) func aligned(_ i: Int, _ offset: Int) -> Bool {
            let j = i &+ offset
            return j >= 0 && j < oldCount && o![j] == n[i]
        }
        /// How many positions of new in `from..<to` are `aligned` (the same count, 8 bytes at a time).
        @inline(__always) func alignedCount(_ from: Int, _ to: Int, _ offset: Int) -> Int {
            let lo = max(from, 0 &- offset), hi = min(to, oldCount &- offset)
            guard lo < hi, let o else { return 0 }
            return equalByteCount(n + lo, o + (lo &+ offset), hi &- lo)
        }

        var scan = range.lowerBound, len = 0, pos = 0
        // Start as if the previous match ended at the same position in old (the usual alignment of two
        // versions); lastPos - lastScan must equal lastOffset, or the first tuple extends from the wrong place.
        var lastScan = range.lowerBound
        var lastPos = min(range.lowerBound, oldCount)
        var lastOffset = lastPos &- lastScan
        var nextReport = scan &+ (1 << 20)
        let probeLength = finder.probeLength
        while scan < newCount {
            var oldScore = 0
            // (Matches end within the range: the `min` is a guard.)
            scan = min(scan &+ len, newCount)
            var scsc = scan
            while scan < newCount {
                // oldScore counts the positions of [scan, scsc) where the current alignment agrees.
                if scsc < scan { scsc = scan }
                // The filter's word for a position a little ahead: most positions are probed one after
                // the other, and each probe is a miss on a bitmap larger than the caches.
                if scan &+ (Self.probeAhead &+ probeLength) <= newCount { finder.willAsk(n + (scan &+ Self.probeAhead)) }
                if scan &+ probeLength <= newCount && !finder.mayMatch(n + scan) {
                    // No match the finder could return starts here (or none that could win): move on.
                    len = 0
                    if aligned(scan, lastOffset) && scan < scsc { oldScore &-= 1 }
                    scan &+= 1
                    continue
                }
                (pos, len) = longestMatch(at: scan, end: newCount)
                // Score the current alignment (lastOffset) over the stretch this match covers.
                let end = scan &+ len
                if scsc < end {
                    oldScore &+= alignedCount(scsc, end, lastOffset)
                    scsc = end
                }
                if (len == oldScore && len != 0) || len > oldScore &+ 8 { break }
                if len >= Self.skipThreshold {
                    // A long match no better than where we already are: skip half of it, but not past
                    // the range (the next chunk's tuples start there).
                    let step = min(len >> 1, newCount &- scan)
                    oldScore &-= alignedCount(scan, scan &+ step, lastOffset)
                    scan &+= step
                    continue
                }
                if scan < scsc && aligned(scan, lastOffset) { oldScore &-= 1 }
                scan &+= 1
            }
            if scan >= nextReport {
                progress?(scan)
                nextReport = scan &+ (1 << 20)
            }

            if len != oldScore || scan == newCount {
                (lastScan, lastPos) = try joinAlignments(old: old, new: new, lastScan: lastScan, lastPos: lastPos,
                                                         scan: scan, pos: pos, extendBackward: scan < newCount, &sink)
                lastOffset = pos &- scan
            }
        }
        progress?(newCount)
    }
}

/// bsdiff's join of two alignments: the previous match (new `lastScan` against old `lastPos`) is extended
/// forward while more than half its bytes agree, the next one (new `scan` against old `pos`) backward
/// the same way, an overlap is split where the agreement is best, and the tuple covering the previous
/// alignment is emitted. Returns where the next tuple starts (in new, in old).
///
/// Cost: O(scan - lastScan) byte comparisons.
@inline(__always)
func joinAlignments<Sink: MatchSink>(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>,
                                     lastScan: Int, lastPos: Int, scan: Int, pos: Int, extendBackward: Bool,
                                     _ sink: inout Sink) throws -> (scan: Int, pos: Int) {
    let o = old.baseAddress, n = new.baseAddress!, oldCount = old.count
    // Extend the previous match forward while more than half the bytes agree. Eight equal bytes at
    // once where they are: the score 2s - i only grows over them, so its best among them is at their
    // end, as byte by byte.
    var s = 0, bestF = 0, lenF = 0
    var i = 0
    while lastScan &+ i < scan && lastPos &+ i < oldCount {
        if lastScan &+ i &+ 8 <= scan && lastPos &+ i &+ 8 <= oldCount && equalWords(o! + (lastPos &+ i), n + (lastScan &+ i)) {
            s &+= 8
            i &+= 8
        } else {
            if o![lastPos &+ i] == n[lastScan &+ i] { s &+= 1 }
            i &+= 1
        }
        if s &* 2 &- i > bestF &* 2 &- lenF { bestF = s; lenF = i }
    }
    // Extend this match backward the same way (bytes i ..< i + 8 back: the 8 bytes ending at pos - i).
    var lenB = 0
    if extendBackward {
        var s = 0, bestB = 0
        var i = 1
        while scan >= lastScan &+ i && pos >= i {
            if scan >= lastScan &+ i &+ 7 && pos >= i &+ 7 && equalWords(o! + (pos &- i &- 7), n + (scan &- i &- 7)) {
                s &+= 8
                i &+= 7
            } else if o![pos &- i] == n[scan &- i] {
                s &+= 1
            }
            if s &* 2 &- i > bestB &* 2 &- lenB { bestB = s; lenB = i }
            i &+= 1
        }
    }
    // If the two extensions overlap, split the overlap where the agreement is best.
    if lastScan &+ lenF > scan &- lenB {
        let overlap = (lastScan &+ lenF) &- (scan &- lenB)
        var s = 0, bestS = 0, lenS = 0
        for i in 0..<overlap {
            if n[lastScan &+ lenF &- overlap &+ i] == o![lastPos &+ lenF &- overlap &+ i] { s &+= 1 }
            if n[scan &- lenB &+ i] == o![pos &- lenB &+ i] { s &-= 1 }
            if s > bestS { bestS = s; lenS = i &+ 1 }
        }
        lenF &+= lenS &- overlap
        lenB &-= lenS
    }
    try sink.emit(newStart: lastScan, oldStart: lastPos, add: lenF,
                  copy: (scan &- lenB) &- (lastScan &+ lenF),
                  seek: (pos &- lenB) &- (lastPos &+ lenF))
    return (scan &- lenB, pos &- lenB)
}
