import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Long exact matches between old and new, found before old is indexed: old's content-defined
/// anchors go into a small table, new's anchors are looked up there, and each hit is extended both
/// ways as far as the bytes agree and kept when it is a block (1 KiB) or longer. Where two versions
/// share long stretches (a tar of two releases of a source tree: 99% of new; numpy's library 54%,
/// pyarrow's 44%, ruff's 14%), those stretches of old need hardly be indexed: the hash chains index
/// the rest of old and at most one position in `sampling` there (`ChainIndex(blocks:)`; of those,
/// `IndexedPositions` keeps the ones whose 12 bytes new may hold outside the blocks), which saves their
/// sort's time and their memory in proportion, and the matcher takes a block's alignment where new is
/// inside one (`BlockAwareFinder`). The price: a search from elsewhere in new finds a match inside
/// those stretches of old (a second copy of shared code) only from a sampled position, so a patch can
/// grow a little (docs/engine-research.md, session 14). HDiffPatch's `-block` pre-matching (on by
/// default in hdiffz 4+) is the same idea.
///
/// New is scanned in fixed parts (`part`), on all cores, each part's matches found on its own and
/// joined where one goes on into the next, so the matches, and so the patch, are the same for any
/// thread count. Memory: the anchor table (8-byte slots, at most 70% full: 23-46 bytes per 512 bytes
/// of old), the anchors found before they go in it (16 bytes each, about old/16) and the matches.
struct BlockMatches {
    struct Match: Equatable {
        var newStart: Int
        var newEnd: Int
        var oldStart: Int
        var count: Int { newEnd - newStart }
    }

    /// Bytes a block has: the shortest match found. 1 KiB: shorter blocks find more (numpy 54% of new
    /// at 1 KiB, 68% at 256 bytes) but the matches they add are the ones the index would find anyway.
    static let block = 1024
    /// Old files smaller than this are indexed whole (their index is small and quick anyway). Tests
    /// lower it.
    @TaskLocal static var minimumOld = 1 << 20
    /// New is scanned in parts of this size. Tests lower it.
    @TaskLocal static var part = 4 << 20
    /// One position in this many of the matches' old ranges may stay indexed (`indexedOld`). On the
    /// Django tar (99% of new in blocks; 6,219 bytes with no blocks): none 6,798 bytes and 85 MB of
    /// peak, 16: 6,465 and 92 MB, 8: 6,381 and 98 MB, 4: 6,294 and 111 MB (before new was read twice).
    static let sampling = 4

    /// The matches, in new's order, disjoint in new, each at least `block` bytes.
    let matches: [Match]
    /// For each `block`-sized slot of new, the index of the first match that ends after the slot's
    /// start (`match(containing:)` looks at most at that one and the next).
    private let slots: [Int32]
    /// One bit for each 64-byte line of new (from 0) that lies wholly inside a match: a block has 15 or
    /// more, so the scan meets one within 63 bytes of the block's start (`covers`).
    private let lines: [UInt64]

    init(matches: [Match], newCount: Int) {
        self.matches = matches
        var slots = [Int32](repeating: Int32(matches.count), count: newCount / Self.block + 1)
        var m = 0
        for s in slots.indices {
            let start = s * Self.block
            while m < matches.count && matches[m].newEnd <= start { m += 1 }
            slots[s] = Int32(m)
        }
        self.slots = slots
        var lines = [UInt64](repeating: 0, count: newCount / (64 * 64) + 1)
        for m in matches {
            var line = (m.newStart + 63) / 64
            while (line + 1) * 64 <= m.newEnd {
                lines[line >> 6] |= 1 << UInt64(line & 63)
                line += 1
            }
        }
        self.lines = lines
    }

    /// Whether `offset` (in new) is in a 64-byte line wholly inside a match (false for some offsets of
    /// a match near its ends, never true outside one).
    @inline(__always)
    func covers(_ offset: Int) -> Bool {
        let line = offset >> 6
        guard offset >= 0 && line >> 6 < lines.count else { return false }
        return lines[line >> 6] & (1 << UInt64(line & 63)) != 0
    }

    /// The match whose new range holds `offset`, if any (none past the end of new).
    @inline(__always)
    func match(containing offset: Int) -> Match? {
        let slot = offset / Self.block
        guard offset >= 0 && slot < slots.count else { return nil }
        var m = Int(slots[slot])
        while m < matches.count {
            let x = matches[m]
            if x.newStart > offset { return nil }
            if offset < x.newEnd { return x }
            m += 1
        }
        return nil
    }

    /// Bytes of new the matches cover.
    var newCovered: Int { matches.reduce(0) { $0 + $1.count } }

    /// Of old's positions `0..<positions` (those a `gram`-byte string starts at), those the index
    /// still needs: every position outside the matches' old ranges, and one in `sampling` inside
    /// them. The samples keep the index able to find long matches there from elsewhere in new (a
    /// second copy of shared code, a text's common lines: a search meets a sampled start within
    /// `sampling` positions of scanning, and the matcher's backward extension recovers the bytes
    /// before it), at a `sampling`th of the cost. In old's order.
    func indexedOld(positions: Int, sampling: Int = BlockMatches.sampling) -> [PositionRun] {
        let taken = matches.map { $0.oldStart..<($0.oldStart + $0.count) }.sorted { $0.lowerBound < $1.lowerBound }
        var runs: [PositionRun] = []
        var at = 0
        for r in taken {
            if r.lowerBound > at { runs.append(PositionRun(start: at, count: min(r.lowerBound, positions) - at, step: 1)) }
            let lo = max(at, r.lowerBound), hi = min(r.upperBound, positions)
            if hi > lo { runs.append(PositionRun(start: lo, count: (hi - lo + sampling - 1) / sampling, step: sampling)) }
            at = max(at, hi)
            if at >= positions { break }
        }
        if at < positions { runs.append(PositionRun(start: at, count: positions - at, step: 1)) }
        return runs.filter { $0.count > 0 }
    }

    /// Finds the matches of `new` in `old` on up to `threads` cores. Old's content-defined anchors
    /// (`AnchorIndex`: one 32-byte window in `1 << anchorBits` on average, chosen by its hash, so the
    /// same bytes in new are anchors too) are looked up at new's anchors only: a shared stretch of a
    /// block holds four on average (one is missed in fifty), and new is hashed, not searched, at every
    /// other position (an aligned-block table looked up at every position of new cost ruff 0.18 s).
    /// `scanned` is called with each part of new once it is scanned, from the thread that scanned it
    /// (several at once).
    static func find(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, threads: Int,
                     scanned: (@Sendable (Range<Int>) -> Void)? = nil) -> BlockMatches {
        guard old.count >= minimumOld, new.count >= block, let o = old.baseAddress, let n = new.baseAddress else {
            return BlockMatches(matches: [], newCount: new.count)
        }
        var tableBits = 10
        while Double(old.count >> anchorBits) > 0.7 * Double(1 << tableBits) { tableBits += 1 }
        let anchors = AnchorIndex(rateBits: anchorBits, tableBits: tableBits)
        anchors.add(old, threads: threads)
        let parts = stride(from: 0, to: new.count, by: part).map { $0..<min($0 + part, new.count) }
        let found = Mutex<[[Match]]>(Array(repeating: [], count: parts.count))
        let next = Atomic<Int>(0)
        nonisolated(unsafe) let (o2, n2, oldCount, newCount, index) = (o, n, old.count, new.count, anchors)
        DispatchQueue.concurrentPerform(iterations: max(1, min(threads, parts.count))) { _ in
            while case let i = next.wrappingAdd(1, ordering: .relaxed).oldValue, i < parts.count {
                let m = scan(parts[i], old: o2, oldCount: oldCount, new: n2, newCount: newCount, anchors: index)
                found.withLock { $0[i] = m }
                scanned?(parts[i])
            }
        }
        // A part's matches stop at its end (give or take an anchor window): one that goes on in the
        // next part, in the same alignment, is joined to that part's first; where they overlap (the
        // window) the later one is trimmed. Then matches shorter than a block are dropped.
        var matches: [Match] = []
        for var m in found.withLock({ $0 }).joined() {
            if let last = matches.last, m.newStart < last.newEnd {
                let cut = min(last.newEnd - m.newStart, m.count)
                m.newStart += cut
                m.oldStart += cut
            }
            if m.count == 0 { continue }
            if let last = matches.last, m.newStart == last.newEnd, m.oldStart - m.newStart == last.oldStart - last.newStart {
                matches[matches.count - 1].newEnd = m.newEnd
                continue
            }
            matches.append(m)
        }
        return BlockMatches(matches: matches.filter { $0.count >= block }, newCount: new.count)
    }

    /// log2 of the average spacing of the anchors.
    static let anchorBits = 8

    /// The matches found from the anchors of new that start in `range`, in order. A match extends
    /// backwards no further than the part's start or the previous match's end, and forwards as far as
    /// the bytes agree up to the part's end (each part past it would compare the same stretch again:
    /// quadratic on a long file that matches to its end); it is kept when it is at least a block long
    /// or reaches the part's end (`find` joins it to the next part's).
    private static func scan(_ range: Range<Int>, old o: UnsafePointer<UInt8>, oldCount: Int,
                             new n: UnsafePointer<UInt8>, newCount: Int, anchors: AnchorIndex) -> [Match] {
        let w = RollingHash.window
        var out: [Match] = []
        var i = range.lowerBound
        var floor = range.lowerBound
        guard i + w <= newCount else { return out }
        let tables = RollingHash.tables
        var h = RollingHash.of(n + i)
        while true {
            let x = RollingHash.mix(h)
            if anchors.isAnchor(x), let at = anchors.lookup(x), at + w <= oldCount, memcmp(o + at, n + i, w) == 0 {
                var start = i, oldStart = at
                while start > floor && oldStart > 0 && n[start - 1] == o[oldStart - 1] {
                    start -= 1
                    oldStart -= 1
                }
                // A window that straddles the part's end ends the match there (the room is negative).
                let room = min(min(range.upperBound, newCount) - (i + w), oldCount - (at + w))
                let end = i + w + (room > 0 ? commonPrefixLength(n + (i + w), o + (at + w), limit: room) : 0)
                if end - start >= block || end >= range.upperBound {
                    out.append(Match(newStart: start, newEnd: end, oldStart: oldStart))
                    floor = end
                    i = end
                    guard i < range.upperBound && i + w <= newCount else { return out }
                    h = RollingHash.of(n + i)
                    continue
                }
            }
            guard i + 1 < range.upperBound && i + 1 + w <= newCount else { return out }
            h = tables.roll(h, leaving: n[i], entering: n[i + w])
            i += 1
        }
    }
}

/// A finder that answers from the block matches where new is inside one (their alignment, as far as
/// it agrees) and asks `inner` (the index of the rest of old) elsewhere.
struct BlockAwareFinder<Inner: MatchFinder>: MatchFinder {
    let inner: Inner
    let blocks: BlockMatches
    let old: UnsafeBufferPointer<UInt8>
    let new: UnsafePointer<UInt8>

    var probeLength: Int { inner.probeLength }

    /// Yes in a line of new wholly inside a block (`BlockMatches.covers`: a bit in a bitmap of new's
    /// 64-byte lines, a 512th of new, mostly in cache), so the scan meets each block within 63 bytes
    /// of its start and takes its alignment (the join's backward extension recovers the bytes before);
    /// elsewhere, the index's filter. Old's filter then need not hold the positions sampled inside
    /// the blocks, only those indexed: it did, so that it would say yes inside a block, and filling
    /// it with them was a tenth of the Django tar's time.
    @inline(__always)
    func mayMatch(_ p: UnsafePointer<UInt8>) -> Bool { blocks.covers(p - new) || inner.mayMatch(p) }

    @inline(__always)
    func willAsk(_ p: UnsafePointer<UInt8>) { inner.willAsk(p) }

    @inline(__always)
    func longestMatch(_ p: UnsafePointer<UInt8>, length: Int) -> (pos: Int, len: Int) {
        let offset = p - new
        guard let m = blocks.match(containing: offset), let o = old.baseAddress else {
            return inner.longestMatch(p, length: length)
        }
        let pos = m.oldStart + (offset - m.newStart)
        return (pos, commonPrefixLength(o + pos, p, limit: min(old.count - pos, length)))
    }
}

/// Positions `start`, `start + step`, ... (`count` of them): a run of old's positions to index.
struct PositionRun: Equatable {
    var start: Int
    var count: Int
    var step: Int

    /// `runs` cut after their first `count` positions: (those, the rest).
    static func halves(_ runs: [PositionRun], at count: Int) -> ([PositionRun], [PositionRun]) {
        var first: [PositionRun] = [], second: [PositionRun] = []
        var left = count
        for r in runs {
            if left >= r.count {
                first.append(r)
                left -= r.count
            } else if left > 0 {
                first.append(PositionRun(start: r.start, count: left, step: r.step))
                second.append(PositionRun(start: r.start + left * r.step, count: r.count - left, step: r.step))
                left = 0
            } else {
                second.append(r)
            }
        }
        return (first, second)
    }

    /// Calls `body` with each position of `runs`, in order.
    @inline(__always)
    static func forEach(_ runs: [PositionRun], _ body: (Int) -> Void) {
        for r in runs { r.forEach(0..<r.count, body) }
    }

    /// Calls `body` with positions `k` of the run, in order.
    @inline(__always)
    func forEach(_ k: Range<Int>, _ body: (Int) -> Void) {
        var p = start &+ k.lowerBound &* step
        for _ in k {
            body(p)
            p &+= step
        }
    }
}
