import CDivSufSort

/// Suffix arrays built by libdivsufsort (Debian's libdivsufsort-dev), unpacked: the reference the
/// tests hold `PackedSuffixArray` (what `make` uses) and the matcher to.
///
/// Cost: O(n log n) worst case, close to linear on real files; memory 4n bytes for n < 2^31 and 8n bytes
/// above (libdivsufsort64), on top of the text itself. The caller owns and deallocates the result.
enum SuffixSorting {
    /// Builds a 32-bit suffix array; `text.count` must be below 2^31 - 1.
    static func build32(_ text: UnsafeBufferPointer<UInt8>) throws -> UnsafeMutableBufferPointer<Int32> {
        precondition(text.count < Int(Int32.max), "build32 called with \(text.count) bytes")
        let sa = UnsafeMutableBufferPointer<Int32>.allocate(capacity: max(text.count, 1))
        if text.count > 0 {
            let r = divsufsort(text.baseAddress!, sa.baseAddress!, Int32(text.count))
            guard r == 0 else {
                sa.deallocate()
                throw DiffEngineError.suffixSortFailed(code: Int(r))
            }
        }
        return UnsafeMutableBufferPointer(rebasing: sa[0..<text.count])
    }

    /// Builds a 64-bit suffix array, for texts of 2^31 - 1 bytes and more.
    static func build64(_ text: UnsafeBufferPointer<UInt8>) throws -> UnsafeMutableBufferPointer<Int64> {
        let sa = UnsafeMutableBufferPointer<Int64>.allocate(capacity: max(text.count, 1))
        if text.count > 0 {
            let r = divsufsort64(text.baseAddress!, sa.baseAddress!, Int64(text.count))
            guard r == 0 else {
                sa.deallocate()
                throw DiffEngineError.suffixSortFailed(code: Int(r))
            }
        }
        return UnsafeMutableBufferPointer(rebasing: sa[0..<text.count])
    }
}
