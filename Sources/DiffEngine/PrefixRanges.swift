/// Where the suffixes of old that start with each two-byte prefix lie in old's suffix array: a table of
/// 65,537 bucket starts counted from old itself (no pass over the suffix array). The matcher's binary
/// search starts inside the pattern's bucket, with two bytes already known to agree, instead of over
/// the whole array: it saves about 16 of the ~25 steps on a 24 MB file, the cheaper ones (the top of
/// the search tree stays in cache), and the patch does not change.
///
/// Cost: one pass over old; memory 65,537 words (512 KiB).
struct PrefixRanges: ~Copyable {
    private let starts: UnsafeMutableBufferPointer<Int>
    /// The one-byte suffix at the end of old sorts just before every suffix that starts with its byte,
    /// that is, just before the bucket of key `loneKey` (its byte times 256); -1 when there is none.
    private let loneKey: Int

    /// The table of the suffixes of `text` that start in its first `suffixes` bytes (all of them by
    /// default; fewer for a part of old sorted with some bytes past its last suffix, `SuffixArrayParts`).
    init(_ text: UnsafeBufferPointer<UInt8>, suffixes: Int? = nil) {
        starts = .allocate(capacity: 65_537)
        starts.initialize(repeating: 0)
        let n = text.count
        let m = suffixes ?? n
        precondition(m <= n, "\(m) suffixes of a \(n)-byte text")
        guard m > 0, let base = text.baseAddress else {
            loneKey = -1
            return
        }
        // Only the text's last byte is a suffix too short for a key.
        let lone = m == n
        loneKey = lone ? Int(base[n - 1]) << 8 : -1
        // Count each key in starts[key + 1], then sum: starts[k] = suffixes before bucket k.
        var key = Int(base[0])
        for i in 1..<(lone ? n : m + 1) {
            key = (key << 8 | Int(base[i])) & 0xFFFF
            starts[key + 1] += 1
        }
        for k in 1...65_536 { starts[k] += starts[k - 1] }
        if lone { for k in loneKey...65_536 { starts[k] += 1 } }
    }

    deinit { starts.deallocate() }

    /// The suffix-array positions of the suffixes that start with the two bytes at `p`.
    @inline(__always)
    func range(_ p: UnsafePointer<UInt8>) -> Range<Int> { view.range(p) }

    /// The read side, for the matcher; the table lives at least until `body` returns.
    func withView<R>(_ body: (View) throws -> R) rethrows -> R { try body(view) }

    private var view: View { View(starts: UnsafePointer(starts.baseAddress!), loneKey: loneKey) }

    struct View {
        fileprivate let starts: UnsafePointer<Int>
        fileprivate let loneKey: Int

        @inline(__always)
        func range(_ p: UnsafePointer<UInt8>) -> Range<Int> {
            let k = Int(p[0]) << 8 | Int(p[1])
            let end = starts[k + 1] - (k + 1 == loneKey ? 1 : 0)
            return starts[k]..<end
        }
    }
}
