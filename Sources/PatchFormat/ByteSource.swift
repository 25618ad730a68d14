/// Where compressed bytes come from: a byte range of a patch file or an in-memory buffer.
/// `read` fills as much of `buffer` as it can and returns 0 only at the end of the range.
public protocol ByteSource: AnyObject {
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// A `ByteSource` over bytes in memory (tests, and patches already loaded).
public final class MemorySource: ByteSource {
    private let bytes: [UInt8]
    private var position: Int
    private let end: Int

    public init(_ bytes: [UInt8], range: Range<Int>? = nil) {
        self.bytes = bytes
        let r = range ?? 0..<bytes.count
        precondition(r.lowerBound >= 0 && r.upperBound <= bytes.count, "range \(r) outside 0..<\(bytes.count)")
        self.position = r.lowerBound
        self.end = r.upperBound
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, end - position)
        if n > 0 {
            bytes.withUnsafeBytes { src in
                buffer.baseAddress!.copyMemory(from: src.baseAddress!.advanced(by: position), byteCount: n)
            }
            position += n
        }
        return n
    }
}
