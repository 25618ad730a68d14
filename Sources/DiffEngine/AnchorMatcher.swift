/// The matcher of the low-memory diff: bsdiff's tuples (approximate matches joined by the half-agreement
/// rule of `joinAlignments`), with candidate alignments found through an `AnchorIndex` instead of a
/// suffix array. It scans new once, rolling the window hash; at each anchor it looks up old, and a
/// candidate that agrees exactly for at least a window and beats the current alignment by more than 8
/// bytes over its exact stretch starts a new alignment.
///
/// It reads new and old through their mappings and never holds more than `span` bytes of new between
/// two tuples, so `checkpoint` (called at least every `span / 2` bytes of new) can drop the pages
/// behind it: the resident set stays near 2·`span` of each file plus the index.
struct AnchorMatcher {
    let old: UnsafeBufferPointer<UInt8>
    let new: UnsafeBufferPointer<UInt8>
    let index: AnchorIndex
    /// The most bytes of new a tuple's forward extension or an exact match may cover.
    var span = 4 << 20
    /// Called every `probesPerCheck` lookups that read old: each reads a page of old anywhere, and the
    /// pages stay resident until released; the kernel maps a whole large folio of the page cache at a
    /// time (measured: ~640 KiB a lookup), so between two checkpoints they added up to most of old
    /// (polars: 105 MB within a 192 MiB limit). The caller measures and releases (`releaseOldIfOver`).
    var onProbes: (() -> Void)? = nil
    var probesPerCheck = 8

    /// Emits the tuples covering all of new, in order. `checkpoint(p)` says that new before `p` will not
    /// be read again (old may be read anywhere).
    func run<Sink: MatchSink>(_ sink: inout Sink, checkpoint: (Int) throws -> Void) throws {
        let n = new.count, oldCount = old.count, w = RollingHash.window
        if n == 0 { return try checkpoint(0) }
        var lastScan = 0, lastPos = 0, lastOffset = 0
        // New before `frontier` is covered by an accepted match or an emitted tuple; exact matches do not
        // extend back past it (joinAlignments needs lastScan <= scan).
        var frontier = 0
        let checkpointEvery = max(1, span / 2)
        var nextCheckpoint = checkpointEvery
        var probes = 0
        /// Counts a lookup about to read old; always true (it sits in the condition that reads).
        func probe() -> Bool {
            probes &+= 1
            if probes == probesPerCheck {
                probes = 0
                onProbes?()
            }
            return true
        }
        if n >= w, oldCount >= w, let nb = new.baseAddress, let ob = old.baseAddress {
            var i = 0
            var h = RollingHash.of(nb)
            let tables = RollingHash.tables
            scanning: while true {
                // On every path (roll, accepted match, skip), before looking at window i:
                if i &- lastScan > span {
                    // A long stretch in one alignment (or none): close the tuple here so the pages behind
                    // can go, and continue in the same alignment.
                    let pos = min(max(i &+ lastOffset, 0), oldCount)
                    (lastScan, lastPos) = try joinAlignments(old: old, new: new, lastScan: lastScan, lastPos: lastPos,
                                                             scan: i, pos: pos, extendBackward: false, &sink)
                    lastOffset = lastPos &- lastScan
                    // What is before the cut is emitted: a later match may not extend back into it.
                    frontier = max(frontier, lastScan)
                }
                if i >= nextCheckpoint {
                    try checkpoint(lastScan)
                    nextCheckpoint = i &+ checkpointEvery
                }
                let x = RollingHash.mix(h)
                if index.isAnchor(x), let q = index.lookup(x), q &- i != lastOffset,
                   probe(), commonPrefixLength(ob + q, nb + i, limit: w) == w {
                    var back = 0
                    while back < 4096, i &- back > frontier, q &- back > 0, ob[q &- back &- 1] == nb[i &- back &- 1] { back &+= 1 }
                    let start = i &- back, oldStart = q &- back
                    let length = back &+ commonPrefixLength(ob + q, nb + i, limit: min(n &- i, oldCount &- q, span))
                    // How well the current alignment already does over the same stretch.
                    var score = 0
                    for j in start..<(start &+ length) {
                        let k = j &+ lastOffset
                        if k >= 0 && k < oldCount && ob[k] == nb[j] { score &+= 1 }
                    }
                    if length > score &+ 8 {
                        (lastScan, lastPos) = try joinAlignments(old: old, new: new, lastScan: lastScan, lastPos: lastPos,
                                                                 scan: start, pos: oldStart, extendBackward: true, &sink)
                        lastOffset = oldStart &- start
                        frontier = start &+ length
                        i = frontier
                        if i &+ w > n { break scanning }
                        h = RollingHash.of(nb + i)
                        continue scanning
                    }
                    if length >= 64 {
                        // A long match no better than the current alignment: skip half of it (bsdiff's
                        // guard against quadratic work on repetitive data).
                        // (Of the forward part: the backward part is behind i already.)
                        i &+= (length &- back) >> 1
                        if i &+ w > n { break scanning }
                        h = RollingHash.of(nb + i)
                        continue scanning
                    }
                }
                if i &+ w >= n { break }
                h = tables.roll(h, leaving: nb[i], entering: nb[i &+ w])
                i &+= 1
            }
        }
        // The rest of new, in the current alignment, in tuples of at most `span` bytes.
        while true {
            let scan = min(n, lastScan &+ span)
            let pos = scan == n ? lastPos : min(max(scan &+ lastOffset, 0), oldCount)
            (lastScan, lastPos) = try joinAlignments(old: old, new: new, lastScan: lastScan, lastPos: lastPos,
                                                     scan: scan, pos: pos, extendBackward: false, &sink)
            lastOffset = lastPos &- lastScan
            if scan == n { break }
            try checkpoint(lastScan)
        }
        try checkpoint(n)
    }
}
