import Dispatch
import PatchFormat
import Synchronization

/// Runs `side` on another core while `main` runs (when `threads` is 1, `side` first, on this thread),
/// and returns `main`'s result once both are done, even when `main` throws: the indexes build their
/// filter and old's digest beside the sort or the chains, and both read old.
func besideAnotherCore<T: ~Copyable>(threads: Int, _ side: @escaping @Sendable () -> Void,
                                     then main: () throws -> T) rethrows -> T {
    let group = DispatchGroup()
    if threads > 1 {
        DispatchQueue.global().async(group: group, execute: side)
    } else {
        side()
    }
    defer { group.wait() }
    return try main()
}

/// What matching needs of old, built once before new is looked at (`OldIndex` or `ChainIndex`).
protocol MatchIndex: ~Copyable {
    /// Old's digest (SHA-256 and the parts' XXH64s), when it was computed while indexing.
    var digest: InputDigest? { get }
    /// The index's memory while matching, for `count` bytes of old.
    static func matchingBytes(count: Int) -> Int
    /// The memory this index holds while matching.
    var heldBytes: Int { get }
    /// The tuples of the diff of `new` against this index (of `old`), chunk by chunk
    /// (`DiffEngine.matchChunks`; `done` as there).
    func matchChunks(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, threads: Int, chunkSize: Int?,
                     progress: ((Int) -> Void)?, done: DiffEngine.ChunkDone?) throws -> [[RecordedTuple]]
}

/// How old's suffix array is split into parts that are sorted side by side (libdivsufsort has no
/// parallel mode). Each part holds the suffixes that start in one stretch of old, sorted as far as
/// the part's text goes: its stretch and `overlap` bytes past it. A search looks in every part and
/// keeps the longest match, followed on into old where it reached its part's end, so a part misses
/// nothing but where two of its suffixes agree for more than `overlap` bytes (the order among those
/// is then its own, not old's: the longest match may be passed over for another of over a megabyte).
///
/// The split depends on old's size alone, never on the thread count: the patch is the same on any
/// machine. Below `splitFrom` old is one part (sorting it takes well under a second; the patches of
/// small files are those of one suffix array); from there two halves, or as many parts as keep each
/// under 2 GiB (so every part sorts with 32-bit positions: 4 bytes a byte of old, not 8).
enum SuffixArrayParts {
    /// Bytes of old a part's sort sees past its own suffixes. Tests lower it.
    @TaskLocal static var overlap = 1 << 20
    /// The size of old from which it is sorted in parts. Tests lower it.
    @TaskLocal static var splitFrom = 16 << 20
    /// The most suffixes a part holds: its text (with the overlap) stays under libdivsufsort's 32-bit
    /// limit of 2^31 - 1 bytes.
    static var maxPart: Int { Int(Int32.max) - 1 - overlap }

    /// The parts of an old file of `count` bytes: the suffixes at `start..<start + count` of each, sorted
    /// as suffixes of old[start..<end].
    static func layout(count n: Int) -> [(start: Int, count: Int, end: Int)] {
        let k = max(n < splitFrom ? 1 : 2, (n + maxPart - 1) / maxPart)
        let size = (n + k - 1) / k, overlap = overlap
        return (0..<k).map { i in
            let start = i * size, c = min(size, n - start)
            return (start, c, min(n, start + c + overlap))
        }
    }
}

/// One sorted part of old (`SuffixArrayParts`), for the matcher (`SuffixArrayPart`). Unchecked
/// Sendable: nothing in it is written after `init`, and the matching threads only read it.
final class SortedPart: @unchecked Sendable {
    let start: Int
    let end: Int
    let suffixes: PackedSuffixArray
    let prefixes: PrefixRanges

    init(_ old: UnsafeBufferPointer<UInt8>, start: Int, count: Int, end: Int) throws {
        let text = UnsafeBufferPointer(rebasing: old[start..<end])
        self.start = start
        self.end = end
        suffixes = try PackedSuffixArray(sorting: text, suffixes: count)
        prefixes = PrefixRanges(text, suffixes: count)
    }

    /// The part as the matcher reads it; valid while this part lives.
    var view: SuffixArrayPart<PackedSuffixArray.View> {
        suffixes.withView { sa in prefixes.withView { SuffixArrayPart(sa: sa, prefixes: $0, start: start, end: end) } }
    }
}

/// What matching needs of old, built once before new is looked at: its suffix array, in parts
/// (`SuffixArrayParts`; bit-packed, `PackedSuffixArray`) each with its two-byte prefix table, and the
/// 9-gram filter; and, when asked for, old's SHA-256 for the patch header. The parts are sorted on
/// up to `threads` threads, the filter and the digest made on one more meanwhile (with two cores and
/// two parts, three threads share them).
struct OldIndex: MatchIndex, ~Copyable {
    let parts: [SortedPart]
    let filter: GramFilter
    /// Old's digest, as `hashing` asked.
    let digest: InputDigest?

    init(_ old: UnsafeBufferPointer<UInt8>, threads: Int, hashing: InputDigest.Taken = .nothing) throws {
        nonisolated(unsafe) var filter: GramFilter? = nil
        nonisolated(unsafe) var digest: InputDigest? = nil
        nonisolated(unsafe) let o = old
        parts = try besideAnotherCore(threads: threads, {
            filter = GramFilter(o)
            digest = InputDigest.of(UnsafeRawBufferPointer(o), hashing)
        }, then: {
            let layout = SuffixArrayParts.layout(count: o.count)
            let sorted = Mutex<[Result<SortedPart, any Error>?]>(Array(repeating: nil, count: layout.count))
            let sort = { @Sendable (i: Int) in
                let r = Result { try SortedPart(o, start: layout[i].start, count: layout[i].count, end: layout[i].end) }
                sorted.withLock { $0[i] = r }
            }
            // On at most `threads` cores, each taking the next part not yet taken.
            let next = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: min(threads, layout.count)) { _ in
                while case let i = next.wrappingAdd(1, ordering: .relaxed).oldValue, i < layout.count { sort(i) }
            }
            return try sorted.withLock { try $0.map { try $0!.get() } }
        })
        self.filter = filter.take()!
        self.digest = digest
    }

    /// The index's memory while matching, for `count` bytes of old: the packed parts and their prefix
    /// tables, and the filter (4 bits a byte).
    static func matchingBytes(count: Int) -> Int {
        SuffixArrayParts.layout(count: count).reduce(count / 2) { total, part in
            total + part.count * PackedSuffixArray.bits(for: part.count) / 8 + (1 << 19)
        }
    }

    var heldBytes: Int { parts.reduce(filter.byteCount) { $0 + $1.suffixes.byteCount + (1 << 19) } }

    /// Calls `body` with a matcher of `new` against this index (of `old`).
    func withMatcher<R>(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>,
                        _ body: (Matcher<SuffixArrayFinder<PackedSuffixArray.View>>) throws -> R) rethrows -> R {
        // The views stay valid while `parts` (and so each part's mappings) lives: `self` outlives `body`.
        try filter.withView { f in
            try body(Matcher(old: old, new: new, finder: SuffixArrayFinder(old: old, parts: parts.map(\.view), filter: f)))
        }
    }

    func matchChunks(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, threads: Int, chunkSize: Int?,
                     progress: ((Int) -> Void)?, done: DiffEngine.ChunkDone?) throws -> [[RecordedTuple]] {
        try withMatcher(old: old, new: new) { m in
            try DiffEngine.matchChunks(m, threads: threads, chunkSize: chunkSize, progress: progress, done: done)
        }
    }
}
