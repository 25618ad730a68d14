import Dispatch
import PatchFormat

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
    /// SHA-256 of old, when it was computed while indexing.
    var sha256: [UInt8]? { get }
    /// The index's memory while matching, for `count` bytes of old.
    static func matchingBytes(count: Int) -> Int
    /// The tuples of the diff of `new` against this index (of `old`), chunk by chunk
    /// (`DiffEngine.matchChunks`).
    func matchChunks(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, threads: Int, chunkSize: Int?,
                     progress: ((Int) -> Void)?) throws -> [[RecordedTuple]]
}

/// What matching needs of old, built once before new is looked at: its suffix array (bit-packed,
/// `PackedSuffixArray`), the 9-gram filter and the two-byte prefix table; and, when asked for, old's
/// SHA-256 for the patch header. The filter, the table and the digest are made on another core while
/// libdivsufsort sorts (which leaves that core idle otherwise).
struct OldIndex: MatchIndex, ~Copyable {
    let suffixes: PackedSuffixArray
    let filter: GramFilter
    let prefixes: PrefixRanges
    /// SHA-256 of old, if `hashing` was set.
    let sha256: [UInt8]?

    init(_ old: UnsafeBufferPointer<UInt8>, threads: Int, hashing: Bool = false) throws {
        nonisolated(unsafe) var filter: GramFilter? = nil
        nonisolated(unsafe) var prefixes: PrefixRanges? = nil
        nonisolated(unsafe) var digest: [UInt8]? = nil
        nonisolated(unsafe) let o = old
        suffixes = try besideAnotherCore(threads: threads, {
            filter = GramFilter(o)
            prefixes = PrefixRanges(o)
            if hashing { digest = SHA256Hasher.hash(UnsafeRawBufferPointer(o)) }
        }, then: { try PackedSuffixArray(sorting: old) })
        self.filter = filter.take()!
        self.prefixes = prefixes.take()!
        sha256 = digest
    }

    /// The index's memory while matching, for `count` bytes of old: the packed suffix array, the
    /// filter (4 bits a byte) and the prefix table.
    static func matchingBytes(count: Int) -> Int {
        count * PackedSuffixArray.bits(for: count) / 8 + count / 2 + (1 << 19)
    }

    /// Calls `body` with a matcher of `new` against this index (of `old`).
    func withMatcher<R>(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>,
                        _ body: (Matcher<SuffixArrayFinder<PackedSuffixArray.View>>) throws -> R) rethrows -> R {
        try suffixes.withView { sa in
            try filter.withView { f in
                try prefixes.withView { p in
                    try body(Matcher(old: old, new: new, finder: SuffixArrayFinder(old: old, sa: sa, filter: f, prefixes: p)))
                }
            }
        }
    }

    func matchChunks(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, threads: Int, chunkSize: Int?,
                     progress: ((Int) -> Void)?) throws -> [[RecordedTuple]] {
        try withMatcher(old: old, new: new) { m in
            try DiffEngine.matchChunks(m, threads: threads, chunkSize: chunkSize, progress: progress)
        }
    }
}
