/// How a `phx` control stream lays out its tuples (header flag bit 1, FORMAT.md).
///
/// **interleaved**: each tuple's three varints in turn (add, copy, zigzag seek).
///
/// **split**: the tuples in blocks of `blockTuples` (the last block holds the rest). A block of `n`
/// tuples is its `n` add varints, then its `n` copy varints, then 8 planes of `n` bytes: plane `k` holds
/// byte `k` (little-endian) of each tuple's zigzag-mapped *end diagonal* `e = o - p`, where `p` is the
/// new position after the tuple and `o` the old cursor after its seek. Adds, copies and positions each
/// have their own statistics, and on executables the diagonal drifts slowly, so each plane is nearly
/// constant: the ruff pair's compressed control stream shrinks by 8%.
public enum ControlLayout {
    /// The header flag that marks the split layout.
    public static let splitFlag: UInt16 = 2
    /// Tuples per block of the split layout.
    public static let blockTuples = 1 << 16
}

/// Writes control tuples in the split layout. Memory: one block (24 bytes a tuple).
public struct SplitControlWriter {
    private var adds: [UInt64] = []
    private var copies: [UInt64] = []
    private var ends: [UInt64] = []
    private let blockTuples: Int

    public init(blockTuples: Int = ControlLayout.blockTuples) {
        self.blockTuples = blockTuples
    }

    /// Adds a tuple; `endDiagonal` is the old cursor after its seek minus the new position after it.
    /// Returns true when a block is complete (call `flush`).
    public mutating func append(add: UInt64, copy: UInt64, endDiagonal: Int64) -> Bool {
        adds.append(add)
        copies.append(copy)
        ends.append(Varint.zigzag(endDiagonal))
        return adds.count == blockTuples
    }

    /// Appends the tuples so far as one block to `out` (nothing if there are none).
    public mutating func flush(into out: inout [UInt8]) {
        guard !adds.isEmpty else { return }
        for a in adds { Varint.appendUnsigned(a, to: &out) }
        for c in copies { Varint.appendUnsigned(c, to: &out) }
        for k in 0..<8 {
            let shift = UInt64(8 * k)
            for e in ends { out.append(UInt8(truncatingIfNeeded: e >> shift)) }
        }
        adds.removeAll(keepingCapacity: true)
        copies.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
    }
}

/// Reads the control tuples of a `phx` stream in either layout, as (add, copy, seek). For the split
/// layout the seek is derived from the end diagonal and the positions the reader tracks (the apply
/// checks every result, so a hostile diagonal only ever yields a rejected seek). Memory: one block.
public final class PhxControlReader {
    public let reader: DecompressingReader
    private let count: UInt64
    private let split: Bool
    private var index: UInt64 = 0
    private var adds: [UInt64] = []
    private var copies: [UInt64] = []
    private var ends: [Int64] = []
    private var at = 0
    private var newPos: Int64 = 0
    private var oldPos: Int64 = 0
    private var planes: [UInt8] = []

    /// - Parameters: count: the header's number of tuples; split: flag bit 1.
    public init(reader: DecompressingReader, count: UInt64, split: Bool) {
        self.reader = reader
        self.count = count
        self.split = split
    }

    /// The next tuple. Call at most `count` times.
    public func next() throws -> (add: UInt64, copy: UInt64, seek: Int64) {
        precondition(index < count, "read past the declared \(count) control tuples")
        defer { index += 1 }
        if !split {
            let a = try reader.readVarint(index: index, field: "add")
            let c = try reader.readVarint(index: index, field: "copy")
            return (a, c, Varint.unzigzag(try reader.readVarint(index: index, field: "seek")))
        }
        if at == adds.count { try readBlock() }
        let a = adds[at], c = copies[at], e = ends[at]
        at += 1
        // Wrapping arithmetic: a hostile value gives a wrong seek, which the apply rejects by range.
        let newAfter = newPos &+ Int64(truncatingIfNeeded: a) &+ Int64(truncatingIfNeeded: c)
        let target = newAfter &+ e
        let seek = target &- (oldPos &+ Int64(truncatingIfNeeded: a))
        newPos = newAfter
        oldPos = target
        return (a, c, seek)
    }

    private func readBlock() throws {
        let n = Int(min(UInt64(ControlLayout.blockTuples), count - index))
        adds.removeAll(keepingCapacity: true)
        copies.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
        for i in 0..<n { adds.append(try reader.readVarint(index: index + UInt64(i), field: "add")) }
        for i in 0..<n { copies.append(try reader.readVarint(index: index + UInt64(i), field: "copy")) }
        if planes.count < 8 * n { planes = [UInt8](repeating: 0, count: 8 * n) }
        try planes.withUnsafeMutableBytes { try reader.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<(8 * n)])) }
        for i in 0..<n {
            var u: UInt64 = 0
            for k in 0..<8 { u |= UInt64(planes[k * n + i]) << UInt64(8 * k) }
            ends.append(Varint.unzigzag(u))
        }
        at = 0
    }
}
