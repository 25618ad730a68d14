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
    /// nil when the caller compresses the extra stream itself (`AsideStream`); its length is still counted.
    let extra: (any StreamEncoder)?
    /// phx: the diff-runs stream in old-context order, when it is being made here (`diff` may then be
    /// nil in effect: `naturalRuns` false); nil when another core makes it (`AsideContextRuns`).
    let contextRuns: (any StreamEncoder)?
    let naturalRuns: Bool
    private let contextCoder: ContextRunCoder?
    /// While the old-context coder reads old (`ContextRunCoder.onOldPages`).
    var onOldPages: (() -> Void)? {
        get { contextCoder?.onOldPages }
        nonmutating set { contextCoder?.onOldPages = newValue }
    }
    private var splitter = DiffRunSplitter()

    private(set) var tupleCount: UInt64 = 0
    private(set) var diffRawLength: UInt64 = 0
    private(set) var extraRawLength: UInt64 = 0
    private var pending: ControlTuple?
    /// Where the pending tuple ends in new and where its add starts in old (for the split layout).
    private var pendingNewEnd = 0
    private var pendingOldStart = 0
    /// phx: the control stream in the split layout (`ControlLayout`), when it is being made; `control`
    /// then gets the interleaved layout only if `interleavedControl`.
    let splitControl: (any StreamEncoder)?
    let interleavedControl: Bool
    private var splitWriter = SplitControlWriter()
    private var splitBuffer: [UInt8] = []
    private var controlBuffer: [UInt8] = []
    private let scratch: UnsafeMutableBufferPointer<UInt8>
    private static let chunk = 1 << 16

    init(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, format: PatchKind,
         control: any StreamEncoder, diff: any StreamEncoder, literals: (any StreamEncoder)?, extra: (any StreamEncoder)?,
         contextRuns: (any StreamEncoder)? = nil, naturalRuns: Bool = true, contextAside: Bool = false,
         splitControl: (any StreamEncoder)? = nil, interleavedControl: Bool = true) {
        precondition((format == .phx) == (literals != nil), "phx needs a literals stream, bsdiff has none")
        precondition(splitControl == nil || format == .phx, "only phx has the split control layout")
        precondition(interleavedControl || splitControl != nil, "at least one control layout must be made")
        self.splitControl = splitControl
        self.interleavedControl = interleavedControl
        precondition(naturalRuns || contextRuns != nil || contextAside, "at least one diff order must be made")
        self.contextRuns = contextRuns
        self.naturalRuns = naturalRuns
        // Diff bytes never outnumber new's bytes.
        self.contextCoder = contextRuns == nil ? nil : ContextRunCoder(maxBytes: new.count)
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
        if let splitControl {
            splitWriter.flush(into: &splitBuffer)
            try splitControl.write(splitBuffer)
            splitBuffer.removeAll()
        }
        if format == .phx {
            splitter.finish()
            if naturalRuns { try diff.write(splitter.runs) }
            splitter.runs.removeAll()
            if let contextCoder, let contextRuns {
                contextCoder.finish()
                try contextRuns.write(contextCoder.takeRuns())
            }
        }
    }

    var literalsRawLength: UInt64 { splitter.literalCount }

    private mutating func writeControl(_ t: ControlTuple) throws {
        if let splitControl {
            // The end diagonal: the old cursor after the seek minus the new position after the tuple.
            let end = Int64(pendingOldStart) + t.add + t.seek - Int64(pendingNewEnd)
            if splitWriter.append(add: UInt64(t.add), copy: UInt64(t.copy), endDiagonal: end) {
                splitWriter.flush(into: &splitBuffer)
                try splitControl.write(splitBuffer)
                splitBuffer.removeAll(keepingCapacity: true)
            }
        }
        switch format {
        case .phx where !interleavedControl:
            break
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

    /// Calls `body` with the diff bytes (new's minus old's) of `count` bytes from `newStart` and
    /// `oldStart`, `scratch.count` at a time, in `scratch`, each with its old position.
    static func forEachDiffChunk(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, oldStart: Int, newStart: Int,
                                 count: Int, scratch: UnsafeMutableBufferPointer<UInt8>,
                                 _ body: (Int, UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        var done = 0
        while done < count {
            let m = min(scratch.count, count - done)
            let dst = scratch.baseAddress!
            let src = new.baseAddress! + newStart + done, base = old.baseAddress! + oldStart + done
            for i in 0..<m { dst[i] = src[i] &- base[i] }
            try body(oldStart + done, UnsafeBufferPointer(start: dst, count: m))
            done += m
        }
    }

    mutating func emit(newStart: Int, oldStart: Int, add: Int, copy: Int, seek: Int) throws {
        precondition(add >= 0 && copy >= 0 && newStart >= 0 && oldStart >= 0 && oldStart + add <= old.count
                     && newStart + add + copy <= new.count,
                     "matcher emitted an invalid tuple: new \(newStart) old \(oldStart) add \(add) copy \(copy)")
        try Self.forEachDiffChunk(old: old, new: new, oldStart: oldStart, newStart: newStart, count: add,
                                  scratch: scratch) { at, piece in
            if let literals {
                try splitter.add(piece) { try literals.write(UnsafeRawBufferPointer($0)) }
                if splitter.runs.count >= Self.chunk {
                    if naturalRuns { try diff.write(splitter.runs) }
                    splitter.runs.removeAll(keepingCapacity: true)
                }
                if let contextCoder, let contextRuns {
                    contextCoder.add(old: old, oldStart: at, diff: piece)
                    if contextCoder.runs.count >= Self.chunk { try contextRuns.write(contextCoder.takeRuns()) }
                }
            } else {
                try diff.write(UnsafeRawBufferPointer(piece))
            }
        }
        if copy > 0, let extra {
            try extra.write(UnsafeRawBufferPointer(start: new.baseAddress! + newStart + add, count: copy))
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
        pendingNewEnd = newStart + add + copy
        pendingOldStart = oldStart
    }
}
