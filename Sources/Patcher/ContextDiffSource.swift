import PatchFormat

/// Diff bytes of a `phx` patch whose pattern is in old-context order (`DiffOrder.oldContext`).
///
/// Per block of `ContextOrder.blockSize` diff bytes: a second reader of the control stream looks ahead
/// to the old positions of the block's diff bytes, whose keys give each key's place in the sorted
/// pattern (a histogram and its prefix sums); the block's runs are decoded into one bit per diff byte
/// in that sorted order; then the bytes are produced in natural order, each taking the next bit of
/// its key, and the next literal where the bit is set (a count per key down to its next set bit, not
/// a lookup per byte). Memory: its `ContextTables` (the bits of a block, 2 MiB at most, 1 MiB of
/// per-key tables, one literal buffer; shared by a bundle's files, which keep the bits of their
/// largest block), the block's segments, and the look-ahead reader's state.
final class ContextDiffSource: DiffSource {
    private let runs: DecompressingReader
    private let literals: DecompressingReader
    private let lookahead: PhxControlReader
    private let oldInput: OldInput
    private let old: UnsafePointer<UInt8>
    private let oldCount: Int
    private let controlCount: UInt64
    private let blockSize: Int

    @exclusivity(unchecked) private var remaining: UInt64
    @exclusivity(unchecked) private var literalsLeft: UInt64
    // Look-ahead over the control stream.
    @exclusivity(unchecked) private var tuplesRead: UInt64 = 0
    @exclusivity(unchecked) private var aheadOld: Int64 = 0
    @exclusivity(unchecked) private var aheadAddLeft: UInt64 = 0
    @exclusivity(unchecked) private var aheadSeek: Int64 = 0
    // The current block.
    private var segments: [(start: Int64, count: Int)] = []
    @exclusivity(unchecked) private var segmentIndex = 0
    @exclusivity(unchecked) private var segmentOffset = 0
    @exclusivity(unchecked) private var blockLeft = 0
    @exclusivity(unchecked) private var blockIndex: UInt64 = 0
    private let tables: ContextTables
    private let cursor: UnsafeMutablePointer<UInt32>
    private let bits: UnsafeMutablePointer<UInt64>
    private let gap: UnsafeMutablePointer<UInt32>
    private let onePlace: UnsafeMutablePointer<UInt32>
    private let placesEnd: UnsafeMutablePointer<UInt32>
    private let literalBuffer: UnsafeMutableRawBufferPointer
    /// Blocks of fewer diff bytes than this visit only the keys they use (a bundle's small files);
    /// larger ones sweep all 65,536.
    static let sparseBelow = 1 << 14
    @exclusivity(unchecked) private var literalPos = 0
    @exclusivity(unchecked) private var literalEnd = 0

    convenience init(runs: DecompressingReader, literals: DecompressingReader, lookahead: PhxControlReader, old oldInput: OldInput,
                     header: PhxHeader, blockSize: Int = ContextOrder.blockSize) {
        self.init(runs: runs, literals: literals, lookahead: lookahead, old: oldInput, controlCount: header.controlCount,
                  diffBytes: header.diffRawLength, literalBytes: header.literalsRawLength, blockSize: blockSize,
                  tables: ContextTables(blockSize: Int(min(UInt64(blockSize), max(header.diffRawLength, 1)))))
    }

    /// The diff bytes of one patch, or of one file of a bundle (`controlCount` tuples adding `diffBytes`
    /// bytes, `literalBytes` of them from the literals stream; the readers may go on to other files').
    /// `tables` may be shared by sources used one after the other (a bundle's files): a source must be
    /// done before the next is made, which may reallocate the tables' bits (`reserveBits`).
    init(runs: DecompressingReader, literals: DecompressingReader, lookahead: PhxControlReader, old oldInput: OldInput,
         controlCount: UInt64, diffBytes: UInt64, literalBytes: UInt64, blockSize: Int = ContextOrder.blockSize,
         tables: ContextTables) {
        self.runs = runs
        self.literals = literals
        self.lookahead = lookahead
        self.oldInput = oldInput
        let old = oldInput.bytes
        self.old = old.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(bitPattern: 1)!
        self.oldCount = old.count
        self.controlCount = controlCount
        self.blockSize = blockSize
        self.remaining = diffBytes
        self.literalsLeft = literalBytes
        // No block is larger than the diff bytes (a small file's block is small).
        tables.reserveBits(Int(min(UInt64(blockSize), max(diffBytes, 1))))
        self.tables = tables
        (cursor, bits, gap, onePlace, placesEnd, literalBuffer) =
            (tables.cursor, tables.bits, tables.gap, tables.onePlace, tables.placesEnd, tables.literalBuffer)
    }

    private func corrupt(_ detail: String) -> PatchFormatError {
        .corruptStream(stream: "diff-runs", detail: "block \(blockIndex): " + detail)
    }

    /// The old positions of the next `n` diff bytes, from the look-ahead reader. Positions outside the
    /// old file are possible here in a hostile patch (the main pass rejects that tuple); their keys
    /// read as zero.
    private func gatherSegments(_ n: Int) throws {
        segments.removeAll(keepingCapacity: true)
        var need = n
        while need > 0 {
            if aheadAddLeft == 0 {
                // Finish the previous tuple's seek, then read the next tuple.
                let (moved, overflow) = aheadOld.addingReportingOverflow(aheadSeek)
                aheadOld = overflow ? Int64.max / 2 : moved
                aheadSeek = 0
                guard tuplesRead < controlCount else {
                    throw corrupt("the \(controlCount) control tuples add fewer diff bytes than the \(remaining - UInt64(n - need)) still declared")
                }
                let (a, _, seek) = try lookahead.next()
                aheadSeek = seek
                tuplesRead += 1
                aheadAddLeft = a
                continue
            }
            let take = Int(min(UInt64(need), aheadAddLeft))
            segments.append((aheadOld, take))
            let (next, overflow) = aheadOld.addingReportingOverflow(Int64(take))
            aheadOld = overflow ? Int64.max / 2 : next
            aheadAddLeft -= UInt64(take)
            need -= take
        }
        segmentIndex = 0
        segmentOffset = 0
    }

    @inline(__always)
    private func key(_ j: Int64) -> Int {
        j < 0 || j > Int64(oldCount) + 2 ? 0 : ContextOrder.key(old, count: oldCount, at: Int(j))
    }

    private func startBlock() throws {
        let n = Int(min(UInt64(blockSize), remaining))
        try gatherSegments(n)
        // The old bytes this block reads (here and in `read`): wait until they are loaded. A key at j
        // reads j - 2 and j - 1, so positions up to old's size + 2 read old's end.
        var end = 0
        for s in segments where s.count > 0 && s.start <= Int64(oldCount) + 2 {
            end = max(end, s.start > Int64(oldCount) - Int64(s.count) ? oldCount : Int(s.start) + s.count)
        }
        try oldInput.need(end)
        // Each key's first place in the sorted pattern.
        // A small block visits only its keys (`touched`, sorted), from a cursor table left all zero;
        // a large one clears and sweeps them all.
        let sparse = n < Self.sparseBelow
        // Taken out of the tables while in use, so that emptying it keeps its buffer.
        var touched = tables.touched
        tables.touched = []
        touched.removeAll(keepingCapacity: true)
        if !sparse || !tables.cursorClean {
            cursor.initialize(repeating: 0, count: ContextOrder.keyCount)
        }
        tables.cursorClean = false
        let marks = tables.keyMarks
        @inline(__always) func count(_ k: Int) {
            if sparse && cursor[k] == 0 { marks[k >> 6] |= 1 << UInt64(k & 63) }
            cursor[k] &+= 1
        }
        for s in segments {
            // Hostile look-ahead positions can be anywhere in Int64: compare without overflowing.
            if s.start >= 2 && s.start <= Int64(oldCount) - Int64(s.count) {
                // Inside the old file: no bounds checks. Each key is read afresh from its two bytes
                // (compiled to one 16-bit load): a key rolled along from the last, k = (k << 8 | byte) & 0xFFFF,
                // made a chain of dependent steps through every byte (pyarrow's apply 13% slower).
                let o = old + Int(s.start)
                for t in 0..<s.count { count(Int(o[t - 2]) << 8 | Int(o[t - 1])) }
            } else {
                for t in 0..<s.count { count(key(s.start &+ Int64(t))) }
            }
        }
        if sparse {
            // The keys used, in order, from their marks (which are cleared on the way).
            for w in 0..<(ContextOrder.keyCount / 64) where marks[w] != 0 {
                var word = marks[w]
                marks[w] = 0
                while word != 0 {
                    touched.append(w << 6 | word.trailingZeroBitCount)
                    word &= word &- 1
                }
            }
        }
        var sum: UInt32 = 0
        func prefixSum(_ k: Int) {
            let c = cursor[k]
            cursor[k] = sum
            sum &+= c
        }
        if sparse {
            for k in touched { prefixSum(k) }
        } else {
            for k in 0..<ContextOrder.keyCount { prefixSum(k) }
        }
        // The block's sorted pattern, one bit per diff byte.
        let words = (n + 63) / 64
        bits.initialize(repeating: 0, count: max(words, 1))
        var filled = 0, ones: UInt64 = 0, pair: UInt64 = 0
        while filled < n {
            let z = try runs.readVarint(index: pair, field: "zero run")
            let l = try runs.readVarint(index: pair, field: "literal run")
            if z == 0 && l == 0 { throw corrupt("run pair \(pair) is empty") }
            let (sum, overflow) = z.addingReportingOverflow(l)
            if overflow || sum > UInt64(n - filled) {
                throw corrupt("run pair \(pair) covers \(z) + \(l) bits but only \(n - filled) remain in the block")
            }
            var p = filled + Int(z)
            let end = p + Int(l)
            while p < end {
                bits[p >> 6] |= 1 << UInt64(p & 63)
                p += 1
            }
            ones += l
            filled = end
            pair += 1
        }
        let available = literalsLeft + UInt64(literalEnd - literalPos)
        if ones > available {
            throw corrupt("the pattern sets \(ones) bytes but only \(available) literal bytes remain")
        }
        // Each key's first set place, if any (a key's places end where the next key's begin).
        func firstPlace(_ k: Int, end hi: Int) {
            let lo = Int(cursor[k])
            placesEnd[k] = UInt32(truncatingIfNeeded: hi)
            let q = firstSetPlace(from: lo, below: hi)
            if q < 0 {
                gap[k] = .max
            } else {
                gap[k] = UInt32(truncatingIfNeeded: q - lo + 1)
                onePlace[k] = UInt32(truncatingIfNeeded: q)
            }
        }
        if sparse {
            for (i, k) in touched.enumerated() {
                firstPlace(k, end: i + 1 < touched.count ? Int(cursor[touched[i + 1]]) : n)
            }
            // Back to all zero for the next small block.
            for k in touched { cursor[k] = 0 }
            tables.cursorClean = true
        } else {
            for k in 0..<ContextOrder.keyCount {
                firstPlace(k, end: k + 1 < ContextOrder.keyCount ? Int(cursor[k + 1]) : n)
            }
        }
        tables.touched = touched
        blockLeft = n
        blockIndex += 1
    }

    /// The first set bit of `bits` in `from..<below`, or -1.
    @inline(__always)
    private func firstSetPlace(from: Int, below: Int) -> Int {
        var p = from
        while p < below {
            let word = bits[p >> 6] >> UInt64(p & 63)
            if word != 0 {
                let q = p + word.trailingZeroBitCount
                return q < below ? q : -1
            }
            p = (p | 63) + 1
        }
        return -1
    }

    /// The byte of key `k` whose countdown reached zero is a literal: take it, and count down to the
    /// key's next set place.
    @inline(__always)
    private func literalAndNext(_ k: Int) throws -> UInt8 {
        let b = try nextLiteral()
        let p = Int(onePlace[k])
        let q = firstSetPlace(from: p + 1, below: Int(placesEnd[k]))
        if q < 0 {
            gap[k] = .max
        } else {
            gap[k] = UInt32(truncatingIfNeeded: q - p)
            onePlace[k] = UInt32(truncatingIfNeeded: q)
        }
        return b
    }

    @inline(__always)
    private func nextLiteral() throws -> UInt8 {
        if literalPos == literalEnd {
            let n = Int(min(UInt64(literalBuffer.count), literalsLeft))
            guard n > 0 else { throw corrupt("the pattern needs more literal bytes than the stream declares") }
            try literals.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: literalBuffer[0..<n]))
            literalsLeft -= UInt64(n)
            literalPos = 0
            literalEnd = n
        }
        let b = literalBuffer[literalPos]
        literalPos += 1
        return b
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> (count: Int, allZero: Bool) {
        precondition(!buffer.isEmpty, "read into an empty buffer")
        if blockLeft == 0 {
            guard remaining > 0 else {
                throw PatchFormatError.truncatedStream(stream: "diff", producedBytes: 0, neededMore: UInt64(buffer.count))
            }
            try startBlock()
        }
        let m = min(buffer.count, blockLeft)
        let out = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
        out.initialize(repeating: 0, count: m)
        var any: UInt8 = 0
        var i = 0
        while i < m {
            let s = segments[segmentIndex]
            let n = min(m - i, s.count - segmentOffset)
            let j0 = s.start &+ Int64(segmentOffset)
            if j0 >= 2 && j0 <= Int64(oldCount) - Int64(n) {
                // Inside the old file: no bounds checks; each key is read afresh, as in `startBlock`.
                let o = old + Int(j0)
                for t in 0..<n {
                    let k = Int(o[t - 2]) << 8 | Int(o[t - 1])
                    let g = gap[k] &- 1
                    gap[k] = g
                    if g == 0 {
                        let b = try literalAndNext(k)
                        out[i + t] = b
                        any |= b | 1
                    }
                }
            } else {
                var j = j0
                for t in 0..<n {
                    let k = key(j)
                    let g = gap[k] &- 1
                    gap[k] = g
                    if g == 0 {
                        let b = try literalAndNext(k)
                        out[i + t] = b
                        any |= b | 1
                    }
                    j &+= 1
                }
            }
            i += n
            segmentOffset += n
            if segmentOffset == s.count {
                segmentIndex += 1
                segmentOffset = 0
            }
        }
        blockLeft -= m
        remaining -= UInt64(m)
        return (m, any == 0)
    }

    /// Checks that this file's diff bytes and literals are used up exactly, and moves the look-ahead
    /// reader past the file's remaining tuples (those that add nothing are never read ahead), so that
    /// it is at the next file's first tuple; the shared streams go on.
    func endFile() throws {
        if remaining > 0 {
            throw PatchFormatError.corruptStream(stream: "diff-runs", detail: "runs and control tuples disagree by \(remaining) bytes")
        }
        if literalPos != literalEnd || literalsLeft > 0 {
            throw corrupt("\(UInt64(literalEnd - literalPos) + literalsLeft) literal bytes are left over")
        }
        while tuplesRead < controlCount {
            _ = try lookahead.next()
            tuplesRead += 1
        }
    }

    func finish() throws {
        if remaining > 0 {
            throw PatchFormatError.truncatedStream(stream: "diff", producedBytes: 0, neededMore: remaining)
        }
        if literalPos != literalEnd || literalsLeft > 0 {
            throw corrupt("\(UInt64(literalEnd - literalPos) + literalsLeft) literal bytes are left over")
        }
        try runs.finish()
        try literals.finish()
    }
}

/// The working tables of `ContextDiffSource`, allocated once and shared by the sources of a bundle's
/// files (each would otherwise allocate about 1 MiB and clear its cursor table a block). Memory: 1 MiB of per-key tables, the
/// bits of the largest block used (2 MiB at most) and a 64 KiB literal buffer.
final class ContextTables {
    /// Per key: its count in the block, then its first place in the sorted pattern.
    let cursor: UnsafeMutablePointer<UInt32>
    /// Per key: how many more of its bytes until the next one whose place is set (0xFFFFFFFF: none
    /// left), that place, and the end of the key's places. `read` counts a key's bytes down instead of
    /// looking each one's place up in `bits`: the pattern is sparse, and those lookups, scattered over
    /// 2 MiB, were most of the apply's time on numpy.
    let gap: UnsafeMutablePointer<UInt32>
    let onePlace: UnsafeMutablePointer<UInt32>
    let placesEnd: UnsafeMutablePointer<UInt32>
    let literalBuffer: UnsafeMutableRawBufferPointer
    /// One bit per diff byte of the block, in sorted order.
    private(set) var bits: UnsafeMutablePointer<UInt64>
    private var bitCapacity: Int
    /// A small block's keys: a bit per key (all zero between blocks), then the list of them.
    let keyMarks: UnsafeMutablePointer<UInt64>
    var touched: [Int] = []
    /// Whether `cursor` is all zero.
    var cursorClean = false

    /// `blockSize`: the largest block expected (more is allocated by `reserveBits` when needed).
    init(blockSize: Int = ContextOrder.blockSize) {
        cursor = .allocate(capacity: ContextOrder.keyCount)
        gap = .allocate(capacity: ContextOrder.keyCount)
        onePlace = .allocate(capacity: ContextOrder.keyCount)
        placesEnd = .allocate(capacity: ContextOrder.keyCount)
        literalBuffer = .allocate(byteCount: 1 << 16, alignment: 16)
        keyMarks = .allocate(capacity: ContextOrder.keyCount / 64)
        keyMarks.initialize(repeating: 0, count: ContextOrder.keyCount / 64)
        bitCapacity = max(1, blockSize)
        bits = .allocate(capacity: (bitCapacity + 63) / 64)
    }

    /// Makes room for blocks of `count` bits.
    func reserveBits(_ count: Int) {
        guard count > bitCapacity else { return }
        bits.deallocate()
        bitCapacity = count
        bits = .allocate(capacity: (count + 63) / 64)
    }

    deinit {
        cursor.deallocate()
        gap.deallocate()
        onePlace.deallocate()
        placesEnd.deallocate()
        literalBuffer.deallocate()
        keyMarks.deallocate()
        bits.deallocate()
    }
}
