import CPhoenixSys
import Synchronization

/// A one-sided membership filter over the `gram`-byte substrings of a text (9 bytes for the suffix
/// array, 12 for hash chains): a blocked Bloom filter, two bits in one 64-bit word per gram, chosen by
/// a multiplicative hash. The text is old, every position of it, or for the chains the positions they
/// index (and `IndexedPositions` makes one over new's strings outside the block matches).
/// `mayContain` never says no for a gram that was added; for another it says yes with probability
/// about the square of the bitmap's fill (in theory ~15% at 4 bits a byte; one bit per gram gave ~22%).
///
/// The matcher asks it before each search. With the suffix array (9 bytes): when the 9 bytes at a
/// position of new occur nowhere in old, the longest match there is at most 8 bytes, which can never
/// beat the current alignment by more than 8, so the binary search (about 25 cache misses) is skipped
/// for one probe. On real executables 70-80% of the searches bsdiff makes return fewer than 9 bytes.
/// On ruff the searches that got past the filter and found fewer than 9 bytes went from 693,000 with
/// one bit to 355,000 with two (of 1.38 and 1.05 million searches). With hash chains (12 bytes, the
/// shortest match they find): a search whose 12 bytes occur nowhere in old walks its whole chain of
/// other strings that share the hash, and on ruff such searches were 65% of all and took 88% of the
/// chain steps behind a 9-byte filter.
///
/// Cost: one pass over old (O(n), one random write per byte); memory n/2 bytes (4n bits). Eight bits
/// per byte would cut the false positives further but costs ruff 12 MB of peak memory.
struct GramFilter: ~Copyable {
    /// The suffix array's gram: the shortest match that can beat the current alignment.
    static let gram = 9
    /// The gram lengths a filter can have: 9 (`gram`) or 12 (`ChainIndex.gram`).
    static let grams = [9, 12]
    /// Bytes per gram: 9 or 12.
    let gram: Int
    private let bits: UnsafeMutableBufferPointer<UInt64>

    init(_ text: UnsafeBufferPointer<UInt8>, gram: Int = Self.gram) {
        precondition(Self.grams.contains(gram), "a \(gram)-byte gram filter")
        self.gram = gram
        bits = Self.emptyBitmap(for: text.count)
        let count = text.count
        guard count >= gram, let base = text.baseAddress else { return }
        for i in 0...(count - gram) {
            let (word, mask) = Self.probe(base + i, bits.count, gram: gram)
            bits[word] |= mask
        }
    }

    /// An empty filter for a text of `count` bytes, for `filler` to fill.
    init(sizedFor count: Int, gram: Int = Self.gram) {
        precondition(Self.grams.contains(gram), "a \(gram)-byte gram filter")
        self.gram = gram
        bits = Self.emptyBitmap(for: count)
    }

    /// 4 bits per byte of text, at least 2^16, zeroed. (The two initializers share this rather than
    /// one delegating to the other: Swift 6.3's ThreadSanitizer build crashes compiling a delegating
    /// initializer of this noncopyable type.)
    private static func emptyBitmap(for count: Int) -> UnsafeMutableBufferPointer<UInt64> {
        let bits = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: max(1 << 10, (count * 4 + 63) / 64))
        bits.initialize(repeating: 0)
        return bits
    }

    /// The memory it holds.
    var byteCount: Int { bits.count * 8 }

    /// The bitmap (tests).
    var words: [UInt64] { Array(bits) }

    /// Fills the filter from several threads at once (`Filler.add`); the filter lives while it is used.
    var filler: Filler { Filler(bits: bits.baseAddress!, words: bits.count, gram: gram) }

    /// Adds the grams of a text to the filter with atomic ORs, a chunk of positions at a time, taken
    /// from a counter that every thread filling it shares: the bitmap ends the same whichever thread
    /// adds which gram. (Where the sort keeps the main thread busy, `init(_:)` fills it on the side
    /// alone, without the atomic cost.)
    struct Filler: @unchecked Sendable {
        fileprivate let bits: UnsafeMutablePointer<UInt64>
        fileprivate let words: Int
        fileprivate let gram: Int
        static let chunk = 1 << 20

        /// The next chunk to fill, shared by the threads filling.
        final class Progress: Sendable {
            private let next = Atomic<Int>(0)
            /// The index of the next chunk not yet taken.
            func take() -> Int { next.wrappingAdd(1, ordering: .relaxed).oldValue }
        }

        func add(_ text: UnsafeBufferPointer<UInt8>, sharing progress: Progress) {
            guard text.count >= gram else { return }
            add(text, runs: [PositionRun(start: 0, count: text.count - gram + 1, step: 1)], sharing: progress)
        }

        /// Adds the grams that start at the positions of `runs` (within the text's gram positions), those
        /// of them `indexed` if given: the chunks are numbered over the runs' positions laid end to end.
        func add(_ text: UnsafeBufferPointer<UInt8>, runs: [PositionRun], of indexed: IndexedPositions? = nil,
                 sharing progress: Progress) {
            guard text.count >= gram, let base = text.baseAddress, !runs.isEmpty else { return }
            // Where each run starts among the positions laid end to end.
            var starts: [Int] = []
            var positions = 0
            for r in runs {
                starts.append(positions)
                positions += r.count
            }
            // The probes go to the C side in batches (Swift has no atomic OR on plain memory): one call
            // per 4096 bits, and computing a batch of probes before its ORs lets their misses overlap
            // (pyarrow's filter fills ~5% faster than with one inlined OR per bit).
            let batch = 4096
            let index = UnsafeMutablePointer<Int64>.allocate(capacity: batch)
            let mask = UnsafeMutablePointer<UInt64>.allocate(capacity: batch)
            defer {
                index.deallocate()
                mask.deallocate()
            }
            while true {
                let start = progress.take() &* Self.chunk
                if start >= positions { return }
                let end = min(start &+ Self.chunk, positions)
                // The run holding the chunk's first position (the last that starts at or before it, by
                // binary search: a file may have many runs), then on through the next ones.
                var lo = 0, hi = starts.count - 1
                while lo < hi {
                    let mid = (lo + hi + 1) / 2
                    if starts[mid] <= start { lo = mid } else { hi = mid - 1 }
                }
                var s = lo
                var v = start
                var probes = 0
                let each = { (i: Int) in
                    let (word, bits) = GramFilter.probe(base + i, words, gram: gram)
                    index[probes] = Int64(word)
                    mask[probes] = bits
                    probes &+= 1
                    if probes == batch {
                        phx_atomic_or_batch(self.bits, index, mask, probes)
                        probes = 0
                    }
                }
                while v < end {
                    let runEnd = min(end, starts[s] + runs[s].count)
                    let k = (v - starts[s])..<(runEnd - starts[s])
                    if let indexed { indexed.forEach(runs[s], k, each) } else { runs[s].forEach(k, each) }
                    v = runEnd
                    s += 1
                }
                if probes > 0 { phx_atomic_or_batch(self.bits, index, mask, probes) }
            }
        }
    }

    deinit { bits.deallocate() }

    /// The word of the bitmap a gram maps to and the two bits it sets there (a blocked Bloom filter
    /// with two probes: one cache line per gram, and fewer false positives than one bit: ~15% instead
    /// of ~22% at 4 bits a byte). `gram` is 9 or 12.
    @inline(__always)
    static func probe(_ p: UnsafePointer<UInt8>, _ words: Int, gram: Int) -> (word: Int, mask: UInt64) {
        let raw = UnsafeRawPointer(p)
        let a = raw.loadUnaligned(as: UInt64.self)
        let b = gram == 12 ? UInt64(raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
                           : UInt64(raw.load(fromByteOffset: 8, as: UInt8.self))
        let h = (a ^ (b &* 0x9E37_79B9)) &* 0xFF51_AFD7_ED55_8CCD
        // The top bits pick the word (Lemire's multiply-shift range reduction); a second mix of the
        // whole hash picks the two bits.
        let word = Int(truncatingIfNeeded: h.multipliedFullWidth(by: UInt64(words)).high)
        let g = (h ^ (h >> 31)) &* 0x9E37_79B9_7F4A_7C15
        return (word, (1 << (g >> 58)) | (1 << ((g >> 52) & 63)))
    }

    /// Whether the `gram` bytes at `p` may occur in the old file. `p` must have `gram` readable bytes.
    @inline(__always)
    func mayContain(_ p: UnsafePointer<UInt8>) -> Bool { view.mayContain(p) }

    /// The read side, for the matcher; the filter lives at least until `body` returns.
    func withView<R>(_ body: (View) throws -> R) rethrows -> R { try body(view) }

    private var view: View { View(bits: UnsafePointer(bits.baseAddress!), words: bits.count, gram: gram) }

    struct View {
        fileprivate let bits: UnsafePointer<UInt64>
        fileprivate let words: Int
        let gram: Int

        @inline(__always)
        func mayContain(_ p: UnsafePointer<UInt8>) -> Bool {
            let (word, mask) = GramFilter.probe(p, words, gram: gram)
            return bits[word] & mask == mask
        }

        /// Asks for the word `mayContain(p)` will read (a hint; `p` must have `gram` readable bytes).
        @inline(__always)
        func prefetch(_ p: UnsafePointer<UInt8>) {
            phx_prefetch(bits + GramFilter.probe(p, words, gram: gram).word)
        }

        /// `mayContain` in steps, for a caller overlapping the misses of many: where the gram at `p`
        /// would be (`probe`), a hint to fetch that word, then whether it is there.
        @inline(__always)
        func probe(_ p: UnsafePointer<UInt8>) -> (word: Int, mask: UInt64) { GramFilter.probe(p, words, gram: gram) }

        @inline(__always)
        func prefetch(word: Int) { phx_prefetch(bits + word) }

        @inline(__always)
        func holds(_ probe: (word: Int, mask: UInt64)) -> Bool { bits[probe.word] & probe.mask == probe.mask }
    }
}
