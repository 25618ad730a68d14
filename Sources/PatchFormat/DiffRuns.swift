/// The `phx` encoding of the diff bytes: the concatenated diff data alternates between runs of zero
/// bytes and runs of literal (non-zero) bytes. The **runs** stream holds the pairs
/// `(zero run length, literal run length)` as unsigned varints; the **literals** stream holds the bytes
/// of the literal runs. On typical version pairs 90%+ of diff bytes are zero, so this is both smaller
/// after compression and several times cheaper to compress than the raw bsdiff diff stream.
public struct DiffRunSplitter {
    /// Varints of finished pairs, waiting to be flushed by the caller.
    public var runs: [UInt8] = []
    private var zeros: UInt64 = 0
    private var literals: UInt64 = 0
    public private(set) var literalCount: UInt64 = 0

    public init() {}

    /// Splits `diff` (a piece of the diff data) into run lengths (appended to `runs`) and literal bytes
    /// (passed to `literal` in contiguous slices).
    public mutating func add(_ diff: UnsafeBufferPointer<UInt8>, literal: (UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        guard let base = diff.baseAddress else { return }
        let n = diff.count
        var i = 0
        while i < n {
            if literals == 0 {
                // In a zero run: count zeros, eight at a time while they last.
                var j = i
                let p = UnsafeRawPointer(base)
                while j &+ 8 <= n && p.loadUnaligned(fromByteOffset: j, as: UInt64.self) == 0 { j &+= 8 }
                while j < n && base[j] == 0 { j += 1 }
                zeros += UInt64(j - i)
                i = j
                if i == n { break }
            }
            var j = i
            while j < n && base[j] != 0 { j += 1 }
            if j > i {
                try literal(UnsafeBufferPointer(start: base + i, count: j - i))
                literals += UInt64(j - i)
                literalCount += UInt64(j - i)
            }
            i = j
            if i < n {
                // A zero byte ends the literal run: emit the pair.
                flushPair()
            }
        }
    }

    private mutating func flushPair() {
        Varint.appendUnsigned(zeros, to: &runs)
        Varint.appendUnsigned(literals, to: &runs)
        zeros = 0
        literals = 0
    }

    /// Emits the last pair, if any bytes are pending.
    public mutating func finish() {
        if zeros > 0 || literals > 0 { flushPair() }
    }
}

/// Reads diff bytes back from the runs and literals streams.
public final class DiffRunReader {
    private let runs: DecompressingReader
    private let literals: DecompressingReader
    @exclusivity(unchecked) private var zerosLeft: UInt64 = 0
    @exclusivity(unchecked) private var literalsLeft: UInt64 = 0
    @exclusivity(unchecked) private var remaining: UInt64
    @exclusivity(unchecked) private var pairIndex: UInt64 = 0

    /// `total` is the number of diff bytes the patch declares (the sum of the add lengths).
    public init(runs: DecompressingReader, literals: DecompressingReader, total: UInt64) {
        self.runs = runs
        self.literals = literals
        self.remaining = total
    }

    private func nextPair() throws {
        let z = try runs.readVarint(index: pairIndex, field: "zero run")
        let l = try runs.readVarint(index: pairIndex, field: "literal run")
        if z == 0 && l == 0 {
            throw PatchFormatError.corruptStream(stream: "diff-runs", detail: "run pair \(pairIndex) is empty")
        }
        let (sum, overflow) = z.addingReportingOverflow(l)
        if overflow || sum > remaining {
            throw PatchFormatError.corruptStream(
                stream: "diff-runs",
                detail: "run pair \(pairIndex) covers \(z) + \(l) bytes but only \(remaining) diff bytes remain")
        }
        zerosLeft = z
        literalsLeft = l
        pairIndex += 1
    }

    /// A zero run at least this long is returned on its own, as all zero, so that the caller writes
    /// those old bytes straight from the old file; shorter runs are filled in among the literals.
    public static let longZeroRun = 1 << 12

    /// Fills `buffer` with the next diff bytes, and returns how many and whether they are all zero (so
    /// that the caller can copy old bytes instead of adding). A long zero run (`longZeroRun`) comes
    /// alone; otherwise runs are filled in until the buffer is full, a long zero run is next, or the
    /// declared diff bytes end. One call per run cost the natural order a call, a write and a
    /// reference count each (pyarrow's changed bytes are 1.4 million runs).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> (count: Int, allZero: Bool) {
        precondition(!buffer.isEmpty, "read into an empty buffer")
        var filled = 0
        while filled < buffer.count {
            if zerosLeft == 0 && literalsLeft == 0 {
                if remaining == 0 {
                    if filled > 0 { break }
                    throw PatchFormatError.truncatedStream(stream: "diff", producedBytes: 0, neededMore: UInt64(buffer.count))
                }
                do { try nextPair() } catch let PatchFormatError.invalidControl(_, reason) {
                    throw PatchFormatError.corruptStream(stream: "diff-runs", detail: "pair \(pairIndex) " + reason)
                }
            }
            if zerosLeft > 0 {
                let n = Int(min(UInt64(buffer.count - filled), zerosLeft))
                let long = zerosLeft >= UInt64(Self.longZeroRun)
                if filled == 0 && (long || n == buffer.count) {
                    zerosLeft -= UInt64(n)
                    remaining -= UInt64(n)
                    return (n, true)
                }
                if long { break }
                (buffer.baseAddress! + filled).initializeMemory(as: UInt8.self, repeating: 0, count: n)
                zerosLeft -= UInt64(n)
                remaining -= UInt64(n)
                filled += n
                continue
            }
            let n = Int(min(UInt64(buffer.count - filled), literalsLeft))
            try literals.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + n)]))
            literalsLeft -= UInt64(n)
            remaining -= UInt64(n)
            filled += n
        }
        return (filled, false)
    }

    /// Starts the diff bytes of the next file of a bundle (whose runs end where the file ends).
    public func beginFile(total: UInt64) throws {
        try endFile()
        remaining = total
    }

    /// Checks that the current file's runs are used up exactly.
    public func endFile() throws {
        if zerosLeft > 0 || literalsLeft > 0 || remaining > 0 {
            throw PatchFormatError.corruptStream(
                stream: "diff-runs", detail: "runs and control tuples disagree by \(zerosLeft + literalsLeft + remaining) bytes")
        }
    }

    /// Checks that both streams are used up exactly.
    public func finish() throws {
        if zerosLeft > 0 || literalsLeft > 0 {
            throw PatchFormatError.trailingData(location: "in the diff-runs stream",
                                                detail: "runs cover \(zerosLeft + literalsLeft) bytes more than the control tuples add")
        }
        try runs.finish()
        try literals.finish()
    }
}
