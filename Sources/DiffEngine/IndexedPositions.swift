import CPhoenixSys
import Dispatch

/// The positions of old that the hash chains index: those the block matches leave
/// (`BlockMatches.indexedOld`), less the ones whose first `ChainIndex.gram` (12) bytes occur nowhere in
/// new outside the blocks, as far as a filter of those strings of new tells (HDiffPatch leaves such
/// "invalid" stretches of old out of its suffix sort too). The chains are searched only from new's
/// positions outside the blocks (inside one the matcher takes its alignment, `BlockAwareFinder`), and
/// a search matches at a position only if its 12 bytes equal those it starts from, so no search could
/// use what is left out: the chains hold fewer positions (ruff: two fifths of its old file's strings
/// are not in new), the build places fewer, and a walk meets fewer candidates that cannot match. A
/// patch changes only where a bucket had more than `ChainIndex.depth` positions (the dropped ones no
/// longer push useful ones past the depth) and by the number of buckets, which follows the count.
///
/// The filter over new (`GramFilter`, 4 bits a position, made on all cores) is freed once old's
/// positions are marked, one bit each, before the chains are built. The positions sampled inside the
/// blocks are checked as well: where new is nearly all blocks (the Django tar), few of their strings
/// occur in what is left of new, and the filter of that little is quick to make and to ask. (The scan
/// meets the blocks by their lines of new, `BlockAwareFinder.mayMatch`, not by old's filter.)
final class IndexedPositions: @unchecked Sendable {
    /// The block matches (none: nil), whose old ranges are indexed at most one position in `sampling`
    /// (of those, the ones whose 12 bytes new may hold outside the blocks).
    let blocks: BlockMatches?
    /// The runs of positions, in old's order; a position is indexed if it is in a run and `contains`.
    let runs: [PositionRun]
    /// How many positions the runs hold, and how many of them are indexed.
    let runPositions: Int, count: Int
    /// One bit per position of old: set where indexed. nil: every position of `runs`.
    private let mask: UnsafeMutableBufferPointer<UInt64>?

    /// Every position of old that `blocks` (if any) leave.
    init(oldCount: Int, blocks: BlockMatches?) {
        let positions = oldCount >= ChainIndex.gram ? oldCount - ChainIndex.gram + 1 : 0
        self.blocks = blocks.flatMap { $0.matches.isEmpty ? nil : $0 }
        runs = self.blocks?.indexedOld(positions: positions) ?? [PositionRun(start: 0, count: positions, step: 1)]
        runPositions = runs.reduce(0) { $0 + $1.count }
        count = runPositions
        mask = nil
    }

    /// What the chains index of old for a diff to new: the block matches of new in old, then the
    /// positions they leave whose grams new may hold. `scanned` is called with each part of new the
    /// block scan is done with (a mapped new drops its pages there).
    static func find(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, threads: Int,
                     scanned: (@Sendable (Range<Int>) -> Void)? = nil) -> IndexedPositions {
        IndexedPositions(old: old, new: new, blocks: BlockMatches.find(old: old, new: new, threads: threads, scanned: scanned),
                         threads: threads)
    }

    /// The positions of old to index, given new and the block matches found in it (nil: none).
    init(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, blocks: BlockMatches?, threads: Int) {
        let all = IndexedPositions(oldCount: old.count, blocks: blocks)
        (self.blocks, runs, runPositions) = (all.blocks, all.runs, all.runPositions)
        // New's strings outside the blocks: inside one, new's bytes are old's, indexed there anyway.
        var newRuns: [PositionRun] = [], at = 0
        let newPositions = new.count - ChainIndex.gram + 1
        for m in all.blocks?.matches ?? [] {
            if m.newStart > at { newRuns.append(PositionRun(start: at, count: min(m.newStart, newPositions) - at, step: 1)) }
            at = max(at, m.newEnd)
        }
        if at < newPositions { newRuns.append(PositionRun(start: at, count: newPositions - at, step: 1)) }
        newRuns.removeAll { $0.count <= 0 }
        let outside = newRuns
        let outsidePositions = outside.reduce(0) { $0 + $1.count }
        // The filter over new (half a byte a position) is made only where it is at most a byte a
        // position of old to check, a quarter of the 4 bytes a position it may save in the build: where
        // new is far larger than old and little of it is blocks, it would cost more than it saves.
        guard old.count >= BlockMatches.minimumOld, new.count >= ChainIndex.gram, outsidePositions <= 2 * runPositions else {
            (count, mask) = (all.count, nil)
            return
        }
        let filter = GramFilter(sizedFor: outsidePositions, gram: ChainIndex.gram)
        let progress = GramFilter.Filler.Progress()
        let filler = filter.filler
        nonisolated(unsafe) let n = new
        DispatchQueue.concurrentPerform(iterations: max(1, threads)) { _ in filler.add(n, runs: outside, sharing: progress) }
        (mask, count) = Self.mark(runs, old: old, filter: filter, threads: threads)
    }

    /// Marks the positions of `runs` whose gram `filter` (of new) may hold, sampled (inside a block) or
    /// not. Each thread takes whole 64-position words of the mask, so no bit is written by two. Returns
    /// the mask and the count.
    private static func mark(_ runs: [PositionRun], old: UnsafeBufferPointer<UInt8>, filter: borrowing GramFilter,
                             threads: Int) -> (UnsafeMutableBufferPointer<UInt64>, Int) {
        let positions = old.count - ChainIndex.gram + 1
        let words = (positions + 63) / 64
        let mask = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: words)
        mask.initialize(repeating: 0)
        // Runs cut at word boundaries into pieces of about 1 Mi positions, taken by the threads in turn.
        let pieceWords = 1 << 14
        let pieces = stride(from: 0, to: words, by: pieceWords).map { $0 * 64..<min(positions, ($0 + pieceWords) * 64) }
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: pieces.count)
        counts.initialize(repeating: 0)
        defer { counts.deallocate() }
        nonisolated(unsafe) let (m, c, o) = (mask, counts, old.baseAddress!)
        filter.withView { view in
            nonisolated(unsafe) let view = view
            DispatchQueue.concurrentPerform(iterations: max(1, min(threads, pieces.count))) { worker in
                var k = worker
                while k < pieces.count {
                    c[k] = mark(pieces[k], of: runs, old: o, filter: view, into: m)
                    k += max(1, threads)
                }
            }
        }
        return (mask, counts.reduce(0, +))
    }

    deinit { mask?.deallocate() }

    /// Marks the positions of `runs` inside `piece`; returns how many.
    private static func mark(_ piece: Range<Int>, of runs: [PositionRun], old: UnsafePointer<UInt8>, filter: GramFilter.View,
                             into mask: UnsafeMutableBufferPointer<UInt64>) -> Int {
        // The first run that may reach into the piece (runs are in old's order and disjoint).
        var lo = 0, hi = runs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if runs[mid].start + (runs[mid].count - 1) * runs[mid].step < piece.lowerBound { lo = mid + 1 } else { hi = mid }
        }
        var marked = 0
        let probes = UnsafeMutablePointer<(word: Int, mask: UInt64)>.allocate(capacity: 64)
        defer { probes.deallocate() }
        for r in runs[lo...] {
            if r.start >= piece.upperBound { break }
            // The run's positions inside the piece.
            let step = r.step
            var j = r.start >= piece.lowerBound ? 0 : (piece.lowerBound - r.start + step - 1) / step
            let last = min(r.count, (piece.upperBound - r.start + step - 1) / step)
            // A mask word's positions at a time: their filter words are all asked for before any is
            // read, so the misses overlap.
            while j < last {
                let p = r.start &+ j &* step
                let k = min(last &- j, ((p | 63) &+ 1 &- p &+ step &- 1) / step)
                for t in 0..<k {
                    probes[t] = filter.probe(old + (p &+ t &* step))
                    filter.prefetch(word: probes[t].word)
                }
                var bits: UInt64 = 0
                for t in 0..<k where filter.holds(probes[t]) { bits |= 1 << UInt64((p &+ t &* step) & 63) }
                mask[p >> 6] |= bits
                marked &+= bits.nonzeroBitCount
                j &+= k
            }
        }
        return marked
    }

    /// Whether position `p` (one of a run's) is indexed.
    @inline(__always)
    func contains(_ p: Int) -> Bool {
        guard let mask else { return true }
        return mask[p >> 6] & (1 << UInt64(p & 63)) != 0
    }

    /// Calls `body` with each indexed position of `runs` (some of `self.runs`), in order.
    @inline(__always)
    func forEach(_ runs: [PositionRun], _ body: (Int) -> Void) {
        for r in runs { forEach(r, 0..<r.count, body) }
    }

    /// Calls `body` with each indexed position among positions `k` of `run`, in order. With a mask,
    /// by its set bits, a word at a time: only the runs' positions are ever marked and the runs'
    /// stretches of old are disjoint, so the bits inside a run's stretch are its positions. (Asking
    /// `contains` of each position was most of the Django tar's count, place and filter passes:
    /// a few of its 6.7 million positions sampled inside blocks are marked.)
    @inline(__always)
    func forEach(_ run: PositionRun, _ k: Range<Int>, _ body: (Int) -> Void) {
        guard let mask, !k.isEmpty else { return run.forEach(k, body) }
        let lo = run.start &+ k.lowerBound &* run.step, hi = run.start &+ (k.upperBound &- 1) &* run.step &+ 1
        let first = lo >> 6, last = (hi &- 1) >> 6
        for w in first...last {
            var bits = mask[w]
            if w == first { bits &= ~0 << UInt64(lo & 63) }
            if w == last && hi & 63 != 0 { bits &= (1 << UInt64(hi & 63)) &- 1 }
            while bits != 0 {
                body(w << 6 | bits.trailingZeroBitCount)
                bits &= bits &- 1
            }
        }
    }
}
