import PatchFormat

/// Turns the matcher's control tuples into the three compressed streams of a patch.
/// Empty tuples (no add, no copy) are folded into the previous tuple's seek, so that in a `phx` patch
/// only tuple 0 may be empty (FORMAT.md).
struct StreamAssembler: MatchSink {
    let old: UnsafeBufferPointer<UInt8>
    let new: UnsafeBufferPointer<UInt8>
    let format: PatchKind
    let control: any StreamEncoder
    /// BSDIFF40: the raw diff bytes. phx: the diff-runs stream (`literals` takes the non-zero bytes).
    let diff: any StreamEncoder
    let literals: (any StreamEncoder)?
    let extra: any StreamEncoder
    private var splitter = DiffRunSplitter()

    private(set) var tupleCount: UInt64 = 0
    private(set) var diffRawLength: UInt64 = 0
    private(set) var extraRawLength: UInt64 = 0
    private var pending: ControlTuple?
    private var controlBuffer: [UInt8] = []
    private let scratch: UnsafeMutableBufferPointer<UInt8>
    private static let chunk = 1 << 16

    init(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, format: PatchKind,
         control: any StreamEncoder, diff: any StreamEncoder, literals: (any StreamEncoder)?, extra: any StreamEncoder) {
        precondition((format == .phx) == (literals != nil), "phx needs a literals stream, bsdiff has none")
        self.old = old
        self.new = new
        self.format = format
        self.control = control
        self.diff = diff
        self.literals = literals
        self.extra = extra
        self.scratch = .allocate(capacity: Self.chunk)
        controlBuffer.reserveCapacity(Self.chunk + 64)
    }

    /// Must be called once; frees the scratch buffer.
    mutating func finish() throws {
        defer { scratch.deallocate() }
        if let p = pending { try writeControl(p) }
        pending = nil
        if !controlBuffer.isEmpty { try control.write(controlBuffer) }
        controlBuffer.removeAll()
        if format == .phx {
            splitter.finish()
            try diff.write(splitter.runs)
            splitter.runs.removeAll()
        }
    }

    var literalsRawLength: UInt64 { splitter.literalCount }

    private mutating func writeControl(_ t: ControlTuple) throws {
        switch format {
        case .phx:
            Varint.appendUnsigned(UInt64(t.add), to: &controlBuffer)
            Varint.appendUnsigned(UInt64(t.copy), to: &controlBuffer)
            Varint.appendSigned(t.seek, to: &controlBuffer)
        case .bsdiff:
            SignMagnitude64.encode(t.add, into: &controlBuffer)
            SignMagnitude64.encode(t.copy, into: &controlBuffer)
            SignMagnitude64.encode(t.seek, into: &controlBuffer)
        }
        tupleCount += 1
        if controlBuffer.count >= Self.chunk {
            try control.write(controlBuffer)
            controlBuffer.removeAll(keepingCapacity: true)
        }
    }

    mutating func emit(newStart: Int, oldStart: Int, add: Int, copy: Int, seek: Int) throws {
        precondition(add >= 0 && copy >= 0 && newStart >= 0 && oldStart >= 0 && oldStart + add <= old.count
                     && newStart + add + copy <= new.count,
                     "matcher emitted an invalid tuple: new \(newStart) old \(oldStart) add \(add) copy \(copy)")
        // Differences, a chunk at a time.
        var done = 0
        let n = new.baseAddress, o = old.baseAddress
        while done < add {
            let m = min(Self.chunk, add - done)
            let dst = scratch.baseAddress!
            let src = n! + newStart + done, base = o! + oldStart + done
            for i in 0..<m { dst[i] = src[i] &- base[i] }
            if let literals {
                try splitter.add(UnsafeBufferPointer(start: dst, count: m)) { try literals.write(UnsafeRawBufferPointer($0)) }
                if splitter.runs.count >= Self.chunk {
                    try diff.write(splitter.runs)
                    splitter.runs.removeAll(keepingCapacity: true)
                }
            } else {
                try diff.write(UnsafeRawBufferPointer(start: dst, count: m))
            }
            done += m
        }
        if copy > 0 {
            try extra.write(UnsafeRawBufferPointer(start: n! + newStart + add, count: copy))
        }
        diffRawLength += UInt64(add)
        extraRawLength += UInt64(copy)

        let t = ControlTuple(add: Int64(add), copy: Int64(copy), seek: Int64(seek))
        if add == 0 && copy == 0, pending != nil {
            pending!.seek += t.seek
            return
        }
        if let p = pending { try writeControl(p) }
        pending = t
    }
}
