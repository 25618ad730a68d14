/// How a `phx` patch orders the zero/non-zero pattern of its diff bytes in the diff-runs stream
/// (header flag bit 0, FORMAT.md).
///
/// **natural**: the pattern in the order of the diff bytes (`DiffRunSplitter`).
///
/// **old context**: the diff bytes are taken in blocks of `blockSize` (the last block shorter); within
/// a block, the pattern bits are stably sorted by the two old bytes before each diff byte's old
/// position (`key`), then run-coded exactly like the natural pattern, a block's runs never spilling
/// into the next block. Changed bytes in executables (relocated addresses) cluster by what precedes
/// them, so the sorted pattern has far longer runs. The literal (non-zero) bytes stay in natural order.
/// A decoder derives every key from the control stream and the old file, so nothing else is stored.
public enum DiffOrder: String, Sendable, CaseIterable {
    case natural
    case oldContext = "context"

    /// The header flag that marks old-context order.
    public static let contextFlag: UInt16 = 1
}

public enum ContextOrder {
    /// Diff bytes per block (16 Mi): the decoder keeps one bit per diff byte of a block.
    public static let blockSize = 1 << 24
    /// Number of distinct keys (two bytes of context).
    public static let keyCount = 1 << 16

    /// The sort key of the diff byte at old position `j`: the old bytes at `j - 2` and `j - 1`, each
    /// read as zero outside the old file.
    @inline(__always)
    public static func key(_ old: UnsafePointer<UInt8>, count: Int, at j: Int) -> Int {
        let a = j >= 2 && j - 2 < count ? Int(old[j - 2]) : 0
        let b = j >= 1 && j - 1 < count ? Int(old[j - 1]) : 0
        return a << 8 | b
    }
}

/// The encoder's side: collects whether each diff byte is non-zero, and at the end of each block
/// appends that block's pattern, sorted by key, to `runs` as `(zero run, non-zero run)` varints.
///
/// Memory: one bit per diff byte of a block (2 MiB), a counter per key (256 KiB), records of up to a
/// 64th of the block's bytes (2 MiB) and the block's segments of old; the keys are not stored but
/// recomputed from old at the end of the block (one pass, two for a block with more non-zero bytes
/// than the records hold), which saved 32 MiB of `make`'s peak for a few milliseconds.
public final class ContextRunCoder {
    public private(set) var runs: [UInt8] = []
    /// One bit per diff byte of the block: set when the byte is non-zero.
    private let bits: UnsafeMutablePointer<UInt64>
    /// Per key: its count in the block, then its next place in the sorted pattern.
    private let start: UnsafeMutablePointer<UInt32>
    /// The block's non-zero diff bytes, while there are at most `recordCap` of them: each one's key
    /// (high half) and how many bytes of that key come before it in the block (low half).
    private let records: UnsafeMutablePointer<UInt64>
    private let recordCap: Int
    /// The block's diff bytes as runs of consecutive old positions, in order.
    private var segments: [(oldStart: Int, count: Int)] = []
    private var old = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
    private var count = 0
    private let blockSize: Int
    private let capacity: Int
    /// Called every 8 segments a block's passes read from old: scattered segments can make much of
    /// a mapped old resident at once (a read maps a whole large folio of the page cache, ~640 KiB
    /// measured), which a low-memory caller releases (see `AnchorMatcher.onProbes`).
    public var onOldPages: (() -> Void)?
    /// Asked before each 64 Ki diff bytes of a block's passes: true stops the coder for good (a
    /// caller that no longer wants its runs; a block's passes over 16 Mi bytes take milliseconds).
    public var shouldStop: (() -> Bool)?
    /// Whether `shouldStop` stopped the coder: its runs are then incomplete, and it does nothing more.
    public private(set) var isStopped = false

    /// `maxBytes`: the most diff bytes that will be added (a bound such as the new file's size), when
    /// smaller than a block: the bits are allocated for that many (a bundle makes one coder per file).
    public init(blockSize: Int = ContextOrder.blockSize, maxBytes: Int? = nil) {
        precondition(blockSize > 0, "block size must be positive")
        self.blockSize = blockSize
        capacity = max(1, min(blockSize, maxBytes ?? blockSize))
        bits = .allocate(capacity: (capacity + 63) / 64)
        bits.initialize(repeating: 0, count: (capacity + 63) / 64)
        start = .allocate(capacity: ContextOrder.keyCount)
        recordCap = max(1, capacity / 64)
        records = .allocate(capacity: recordCap)
    }

    deinit {
        bits.deallocate()
        start.deallocate()
        records.deallocate()
    }

    /// Adds `diff.count` diff bytes whose old positions start at `oldStart`. `old` must be the same
    /// buffer on every call.
    public func add(old: UnsafeBufferPointer<UInt8>, oldStart: Int, diff: UnsafeBufferPointer<UInt8>) {
        guard let d = diff.baseAddress, !isStopped else { return }
        self.old = old
        var i = 0
        while i < diff.count {
            let n = min(diff.count - i, blockSize - count)
            precondition(count + n <= capacity, "more diff bytes than the coder was sized for")
            // Eight bytes at a time: most diff bytes are zero (a byte at a time was half the coder's
            // time on the Django tar).
            let p = UnsafeRawPointer(d + i)
            var t = 0
            while t &+ 8 <= n {
                if p.loadUnaligned(fromByteOffset: t, as: UInt64.self) != 0 {
                    for u in t..<(t &+ 8) where d[i &+ u] != 0 {
                        let at = count &+ u
                        bits[at >> 6] |= 1 << UInt64(at & 63)
                    }
                }
                t &+= 8
            }
            for u in t..<n where d[i &+ u] != 0 {
                let at = count &+ u
                bits[at >> 6] |= 1 << UInt64(at & 63)
            }
            segments.append((oldStart + i, n))
            count += n
            i += n
            if count == blockSize {
                flushBlock()
                if isStopped { return }
            }
        }
    }

    /// Ends the last block.
    public func finish() {
        if count > 0 && !isStopped { flushBlock() }
    }

    /// Takes the runs produced so far (the caller compresses them).
    public func takeRuns() -> [UInt8] {
        defer { runs.removeAll(keepingCapacity: true) }
        return runs
    }

    /// Calls `body(i, key)` for each diff byte of the block in order.
    @inline(__always)
    private func forEachKey(_ body: (Int, Int) -> Void) {
        let o = old.baseAddress ?? UnsafePointer(bitPattern: 1)!
        let oldCount = old.count
        var i = 0
        for (index, (segmentStart, segmentCount)) in segments.enumerated() {
            if index & 7 == 7 { onOldPages?() }
            var done = 0
            while done < segmentCount {
                if let shouldStop, shouldStop() {
                    isStopped = true
                    return
                }
                let n = min(segmentCount - done, 1 << 16), start = segmentStart + done
                if start >= 2 && start <= oldCount - n {
                    // Inside old: no bounds checks; each key is read afresh from its two bytes (a key
                    // rolled along from the previous one chains every byte's work to the last's).
                    let p = o + start
                    for t in 0..<n { body(i + t, Int(p[t - 2]) << 8 | Int(p[t - 1])) }
                } else {
                    for t in 0..<n { body(i + t, ContextOrder.key(o, count: oldCount, at: start + t)) }
                }
                i += n
                done += n
            }
        }
    }

    private func flushBlock() {
        // Each key's first place in the sorted pattern (counts, then their running sums). On the way,
        // each non-zero byte's key and rank among its key's bytes, while they are few (a diff of long
        // matches is nearly all zeros): its place is then its key's first place plus its rank, and the
        // second pass over every byte is not needed.
        start.initialize(repeating: 0, count: ContextOrder.keyCount)
        var recorded = 0
        forEachKey { i, k in
            if bits[i >> 6] >> UInt64(i & 63) & 1 != 0 {
                if recorded < recordCap { records[recorded] = UInt64(k) << 32 | UInt64(start[k]) }
                recorded &+= 1
            }
            start[k] &+= 1
        }
        if isStopped { return }
        var sum: UInt32 = 0
        for k in 0..<ContextOrder.keyCount {
            let c = start[k]
            start[k] = sum
            sum &+= c
        }
        let words = (count + 63) / 64
        let sorted = UnsafeMutablePointer<UInt64>.allocate(capacity: words)
        sorted.initialize(repeating: 0, count: words)
        defer { sorted.deallocate() }
        if recorded <= recordCap {
            for r in 0..<recorded {
                let e = records[r]
                let p = Int(start[Int(e >> 32)]) &+ Int(e & 0xFFFF_FFFF)
                sorted[p >> 6] |= 1 << UInt64(p & 63)
            }
        } else {
            forEachKey { i, k in
                let p = Int(start[k])
                start[k] = UInt32(truncatingIfNeeded: p + 1)
                if bits[i >> 6] >> UInt64(i & 63) & 1 != 0 {
                    sorted[p >> 6] |= 1 << UInt64(p & 63)
                }
            }
            if isStopped { return }
        }
        // The first bit at or after `p` equal to `one`, or `count`: a word at a time (the runs are long).
        func next(_ one: Bool, from p: Int) -> Int {
            var w = p >> 6
            if w >= words { return count }
            var v = (one ? sorted[w] : ~sorted[w]) & (~0 << UInt64(p & 63))
            while v == 0 {
                w += 1
                if w >= words { return count }
                v = one ? sorted[w] : ~sorted[w]
            }
            return min(count, w << 6 | v.trailingZeroBitCount)
        }
        var i = 0
        while i < count {
            let z = next(true, from: i)
            let l = next(false, from: z)
            Varint.appendUnsigned(UInt64(z - i), to: &runs)
            Varint.appendUnsigned(UInt64(l - z), to: &runs)
            i = l
        }
        // Only the words this block used (the last block of a file is usually short).
        bits.update(repeating: 0, count: words)
        segments.removeAll(keepingCapacity: true)
        count = 0
    }
}
