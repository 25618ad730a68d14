import Dispatch
import PatchFormat

/// What matching needs of old, built once before new is looked at: its suffix array (bit-packed,
/// `PackedSuffixArray`), the 9-gram filter and the two-byte prefix table; and, when asked for, old's
/// SHA-256 for the patch header. The filter, the table and the digest are made on another core while
/// libdivsufsort sorts (which leaves that core idle otherwise).
struct OldIndex: ~Copyable {
    let suffixes: PackedSuffixArray
    let filter: GramFilter
    let prefixes: PrefixRanges
    /// SHA-256 of old, if `hashing` was set.
    let sha256: [UInt8]?

    init(_ old: UnsafeBufferPointer<UInt8>, threads: Int, hashing: Bool = false) throws {
        nonisolated(unsafe) var filter: GramFilter? = nil
        nonisolated(unsafe) var prefixes: PrefixRanges? = nil
        nonisolated(unsafe) var digest: [UInt8]? = nil
        let group = DispatchGroup()
        nonisolated(unsafe) let o = old
        let sideWork: @Sendable () -> Void = {
            filter = GramFilter(o)
            prefixes = PrefixRanges(o)
            if hashing { digest = SHA256Hasher.hash(UnsafeRawBufferPointer(o)) }
        }
        if threads > 1 {
            DispatchQueue.global().async(group: group, execute: sideWork)
        } else {
            sideWork()
        }
        // The other core reads old: wait for it even when the sort fails.
        defer { group.wait() }
        suffixes = try PackedSuffixArray(sorting: old)
        group.wait()
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
                        _ body: (Matcher<PackedSuffixArray.View>) throws -> R) rethrows -> R {
        try suffixes.withView { sa in
            try filter.withView { f in
                try prefixes.withView { p in try body(Matcher(old: old, new: new, sa: sa, filter: f, prefixes: p)) }
            }
        }
    }
}
