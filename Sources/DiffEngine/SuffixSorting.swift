import CDivSufSort

/// Suffix arrays built by libdivsufsort (Debian's libdivsufsort-dev), 32-bit: `sort` into memory the
/// caller provides (`PackedSuffixArray`, what `make` uses), or `build32` into a new, unpacked array
/// (the reference the tests hold the packed one and the matcher to). Old files of 2 GiB and more are
/// sorted in parts (`SuffixArrayParts`), so no 64-bit sort is needed.
///
/// Cost: O(n log n) worst case, close to linear on real files; memory 4n bytes on top of the text
/// itself. The caller owns and deallocates the result.
enum SuffixSorting {
    /// Sorts the suffixes of `text` into `sa` (room for `text.count` entries); `text.count` must be
    /// below 2^31 - 1.
    static func sort(_ text: UnsafeBufferPointer<UInt8>, into sa: UnsafeMutablePointer<Int32>) throws {
        precondition(text.count < Int(Int32.max), "a 32-bit suffix sort of \(text.count) bytes")
        guard text.count > 0 else { return }
        let r = divsufsort(text.baseAddress!, sa, Int32(text.count))
        guard r == 0 else { throw DiffEngineError.suffixSortFailed(code: Int(r)) }
    }

    /// Builds a 32-bit suffix array; `text.count` must be below 2^31 - 1.
    static func build32(_ text: UnsafeBufferPointer<UInt8>) throws -> UnsafeMutableBufferPointer<Int32> {
        let sa = UnsafeMutableBufferPointer<Int32>.allocate(capacity: max(text.count, 1))
        do { try sort(text, into: sa.baseAddress!) } catch { sa.deallocate(); throw error }
        return UnsafeMutableBufferPointer(rebasing: sa[0..<text.count])
    }
}
