#if canImport(Glibc)
import Glibc
#endif
import PatchFormat
import TreeIO

/// Where patched bytes go: a file being written atomically, or memory.
protocol OutputSink: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws
}

extension AtomicFileWriter: OutputSink {}

final class MemorySink: OutputSink {
    var bytes: [UInt8] = []
    func write(_ b: UnsafeRawBufferPointer) throws { bytes.append(contentsOf: b) }
}

/// The three readers a phx-rule tuple sequence draws from, and a work buffer. A file patch has its
/// own; a bundle shares one set across all its files.
final class TupleStreams {
    static let chunk = 1 << 18
    let control: DecompressingReader
    /// The diff bytes' source: one for a patch; for a bundle, a file's own in old-context order.
    var diff: any DiffSource
    let extra: DecompressingReader
    let buffer: UnsafeMutableRawBufferPointer

    init(control: DecompressingReader, diff: any DiffSource, extra: DecompressingReader) {
        self.control = control
        self.diff = diff
        self.extra = extra
        self.buffer = .allocate(byteCount: Self.chunk, alignment: 16)
    }

    deinit { buffer.deallocate() }

    func finish() throws {
        try control.finish()
        try diff.finish()
        try extra.finish()
    }

    /// Writes `add` bytes: diff bytes plus old bytes from `cursor`. Old bytes outside the old file count
    /// as zero (bspatch's rule; phx never gets here with such a range). A run of zero diff bytes is a
    /// plain copy of old bytes, written straight from the old file's buffer.
    func add(_ add: UInt64, from cursor: Int64, old oldInput: OldInput, to sink: any OutputSink) throws {
        let old = oldInput.bytes
        let oldSize = Int64(old.count)
        var remaining = add
        var cursor = cursor
        while remaining > 0 {
            let want = Int(min(UInt64(buffer.count), remaining))
            let (m, allZero) = try diff.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]))
            let lo = max(cursor, 0)
            let (end, overflow) = cursor.addingReportingOverflow(Int64(m))
            let hi = overflow ? oldSize : min(end, oldSize)
            if lo < hi { try oldInput.need(Int(hi)) }
            if allZero && lo == cursor && hi - lo == Int64(m) {
                try sink.write(UnsafeRawBufferPointer(rebasing: old[Int(lo)..<Int(hi)]))
            } else {
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<m])
                if allZero { part.initializeMemory(as: UInt8.self, repeating: 0) }
                if lo < hi {
                    let dst = part.baseAddress!.assumingMemoryBound(to: UInt8.self) + Int(lo - cursor)
                    let src = old.baseAddress!.assumingMemoryBound(to: UInt8.self) + Int(lo)
                    for i in 0..<Int(hi - lo) { dst[i] &+= src[i] }
                }
                try sink.write(UnsafeRawBufferPointer(part))
            }
            cursor = overflow ? Int64.max : end
            remaining -= UInt64(m)
        }
    }

    /// Writes `copy` bytes from the extra stream.
    func copy(_ copy: UInt64, to sink: any OutputSink) throws {
        var remaining = copy
        while remaining > 0 {
            let m = Int(min(UInt64(buffer.count), remaining))
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<m])
            try extra.readExactly(into: part)
            try sink.write(UnsafeRawBufferPointer(part))
            remaining -= UInt64(m)
        }
    }

    /// Applies `count` control tuples under the strict phx rules (FORMAT.md), writing exactly `newSize`
    /// bytes. Every tuple is checked before use: lengths against the space left, the add window inside
    /// the old file, only tuple 0 empty, the seek inside 0...old size.
    func applyPhx(count: UInt64, newSize: UInt64, old: OldInput, splitControl: Bool = false,
                  to sink: any OutputSink, progress: ((UInt64) -> Void)? = nil) throws {
        let tuples = PhxControlReader(reader: control, count: count, split: splitControl)
        let oldSize = Int64(old.count)
        var newPos: UInt64 = 0
        var oldPos: Int64 = 0
        var nextReport: UInt64 = 1 << 22
        for index in 0..<count {
            func fail(_ reason: String) -> PatcherError { .format(.invalidControl(index: index, reason: reason)) }
            let (a, c, seek) = try tuples.next()
            if a > newSize - newPos {
                throw fail("adds \(a) bytes at new offset \(newPos), past the declared new size \(newSize)")
            }
            if a > 0 && (oldPos < 0 || a > UInt64(oldSize - oldPos)) {
                throw fail("reads old bytes \(oldPos)..<\(oldPos.addingReportingOverflow(Int64(a)).partialValue) outside the old file of \(oldSize) bytes")
            }
            if c > newSize - newPos - a {
                throw fail("copies \(c) extra bytes at new offset \(newPos + a), past the declared new size \(newSize)")
            }
            if index > 0 && a == 0 && c == 0 {
                throw fail("writes nothing (only tuple 0 may be empty in a phx patch)")
            }
            try add(a, from: oldPos, old: old, to: sink)
            try copy(c, to: sink)
            newPos += a + c
            let (moved, overflow) = (oldPos + Int64(a)).addingReportingOverflow(seek)
            if overflow || moved < 0 || moved > oldSize {
                throw fail("seeks the old cursor to \(overflow ? "beyond 64 bits" : "\(moved)"), outside 0...\(oldSize)")
            }
            oldPos = moved
            if newPos >= nextReport {
                progress?(newPos)
                nextReport = newPos + (1 << 22)
            }
        }
        if newPos != newSize {
            throw PatcherError.format(.invalidControl(
                index: count, reason: "is missing: the \(count) tuples write \(newPos) bytes but the declared new size is \(newSize)"))
        }
        progress?(newPos)
    }
}

/// How the apply opens a patch's streams: with a second core, each stream decompresses on its own
/// thread, up to 15 64 KiB blocks ahead of the apply, from before the old file is read (ruff: 0.37
/// -> 0.25 s; LZMA decoding was half of the apply's time); with one core, on the applying thread
/// through a 64 KiB window. The bytes read, and every error and its message, are the same either way.
enum StreamReading {
    static let readAhead = sysconf(Int32(_SC_NPROCESSORS_ONLN)) > 1
    /// Streams shorter than this (compressed) are read on the applying thread: starting a thread
    /// costs more than decoding them (libFuzzer's small patches spent twice their user time in the
    /// kernel creating threads).
    static let minimumLength: UInt64 = 1 << 16

    /// Opens the stream at `offset` of `input`, read ahead if `readAhead` and it is at least `minimum`
    /// bytes long.
    static func open(_ name: String, codec: CodecID, in input: any PatchInput, offset: UInt64, length: UInt64,
                     readAhead: Bool = readAhead, minimum: UInt64 = minimumLength) throws -> DecompressingReader {
        try DecompressingReader(streamName: name, codec: codec, source: input.source(offset: offset, length: length),
                                bufferSize: 1 << 16, readAhead: readAhead && length >= minimum)
    }
}

/// The readers of a patch's streams. Opened before the old file is read, those that read ahead are
/// decoding while it is read and checked.
struct PatchStreams {
    let control: DecompressingReader
    /// phx: the diff-runs stream; BSDIFF40: the diff stream.
    let diff: DecompressingReader
    let literals: DecompressingReader?
    /// phx in old-context order: a second reader of the control stream, for the look-ahead.
    let lookahead: DecompressingReader?
    let extra: DecompressingReader

    init(header: PatchHeader, input: any PatchInput, readAhead: Bool = StreamReading.readAhead,
         minimum: UInt64 = StreamReading.minimumLength) throws {
        func open(_ name: String, _ codec: CodecID, _ offset: UInt64, _ length: UInt64) throws -> DecompressingReader {
            try StreamReading.open(name, codec: codec, in: input, offset: offset, length: length,
                                   readAhead: readAhead, minimum: minimum)
        }
        switch header {
        case .phx(let h):
            diff = try open("diff-runs", h.codec, h.runsOffset, h.runsLength)
            literals = try open("diff-literals", h.codec, h.literalsOffset, h.literalsLength)
            lookahead = h.diffOrder == .oldContext ? try open("control", h.codec, h.controlOffset, h.controlLength) : nil
            control = try open("control", h.codec, h.controlOffset, h.controlLength)
            extra = try open("extra", h.codec, h.extraOffset, h.extraLength)
        case .bsdiff(let h):
            control = try open("control", .bzip2, h.controlOffset, h.controlLength)
            diff = try open("diff", .bzip2, h.diffOffset, h.diffLength)
            extra = try open("extra", .bzip2, h.extraOffset, input.length - h.extraOffset)
            literals = nil
            lookahead = nil
        }
    }
}

/// The streaming apply of one file patch, either format. Memory: the old file (the caller's buffer),
/// each stream's decompression state and window (64 KiB, or 17 x 64 KiB when reading ahead), and one
/// 256 KiB work buffer; never the patch or the new file.
struct ApplyEngine {
    /// BSDIFF40 allows tuples that write nothing; this many in a row is treated as a hostile loop.
    static let maxConsecutiveEmptyTuples = 1 << 16

    let header: PatchHeader
    /// The old file (read ahead on another thread, or whole; `OldInput.need` before each use).
    let old: OldInput
    /// The patch's stream readers (`PatchStreams`; the caller opens them, ahead of the old file when
    /// it can, and decides which read ahead).
    let streams: PatchStreams
    let sink: any OutputSink
    var progress: ((UInt64) -> Void)?

    init(header: PatchHeader, old: OldInput, streams: PatchStreams, sink: any OutputSink) {
        (self.header, self.old, self.streams, self.sink) = (header, old, streams, sink)
    }

    func run() throws {
        switch header {
        case .phx(let h):
            let diff: any DiffSource = switch h.diffOrder {
            case .natural: DiffRunReader(runs: streams.diff, literals: streams.literals!, total: h.diffRawLength)
            case .oldContext: ContextDiffSource(runs: streams.diff, literals: streams.literals!,
                                                lookahead: PhxControlReader(reader: streams.lookahead!, count: h.controlCount,
                                                                            split: h.splitControl),
                                                old: old, header: h)
            }
            let tuples = TupleStreams(control: streams.control, diff: diff, extra: streams.extra)
            try tuples.applyPhx(count: h.controlCount, newSize: h.newSize, old: old, splitControl: h.splitControl,
                                to: sink, progress: progress)
            try tuples.finish()
            // The header's literal count must be what the runs used (the old-context reader checks it as
            // it goes; the natural one would otherwise accept any number there).
            if let literals = streams.literals, literals.delivered != h.literalsRawLength {
                throw PatchFormatError.corruptStream(stream: "diff-literals",
                    detail: "the header declares \(h.literalsRawLength) literal bytes but the runs used \(literals.delivered)")
            }
        case .bsdiff(let h):
            let tuples = TupleStreams(control: streams.control, diff: PlainDiffSource(reader: streams.diff), extra: streams.extra)
            try runBsdiff(newSize: h.newSize, streams: tuples)
            try tuples.finish()
        }
    }

    /// BSDIFF40 semantics: tuples until the declared size is written; lengths checked for sign and
    /// for the space left; cursor arithmetic checked for overflow; old bytes outside the file read as 0.
    func runBsdiff(newSize: UInt64, streams: TupleStreams) throws {
        var newPos: UInt64 = 0
        var oldPos: Int64 = 0
        var index: UInt64 = 0
        var emptyRun = 0
        var nextReport: UInt64 = 1 << 22
        var raw = [UInt8](repeating: 0, count: 24)
        while newPos < newSize {
            func fail(_ reason: String) -> PatcherError { .format(.invalidControl(index: index, reason: reason)) }
            do {
                try raw.withUnsafeMutableBytes { try streams.control.readExactly(into: $0) }
            } catch PatchFormatError.truncatedStream {
                throw fail("is cut short: the control stream ends after \(streams.control.delivered) bytes while \(newSize - newPos) bytes of the new file are still to be written")
            }
            let (a, c, s) = raw.withUnsafeBytes { r in
                (SignMagnitude64.decode(UnsafeRawBufferPointer(rebasing: r[0..<8])),
                 SignMagnitude64.decode(UnsafeRawBufferPointer(rebasing: r[8..<16])),
                 SignMagnitude64.decode(UnsafeRawBufferPointer(rebasing: r[16..<24])))
            }
            if a < 0 { throw fail("has a negative add length \(a)") }
            if c < 0 { throw fail("has a negative copy length \(c)") }
            if UInt64(a) > newSize - newPos {
                throw fail("adds \(a) bytes at new offset \(newPos), past the declared new size \(newSize)")
            }
            if UInt64(c) > newSize - newPos - UInt64(a) {
                throw fail("copies \(c) extra bytes at new offset \(newPos + UInt64(a)), past the declared new size \(newSize)")
            }
            if a == 0 && c == 0 {
                emptyRun += 1
                if emptyRun > Self.maxConsecutiveEmptyTuples {
                    throw fail("is the \(emptyRun)th tuple in a row that writes nothing")
                }
            } else {
                emptyRun = 0
            }
            try streams.add(UInt64(a), from: oldPos, old: old, to: sink)
            try streams.copy(UInt64(c), to: sink)
            newPos += UInt64(a) + UInt64(c)
            let (afterAdd, o1) = oldPos.addingReportingOverflow(a)
            let (moved, o2) = afterAdd.addingReportingOverflow(s)
            if o1 || o2 { throw fail("moves the old cursor from \(oldPos) by \(a) + \(s), overflowing 64 bits") }
            oldPos = moved
            index += 1
            if newPos >= nextReport {
                progress?(newPos)
                nextReport = newPos + (1 << 22)
            }
        }
        progress?(newPos)
    }
}

/// Where the add bytes' differences come from.
protocol DiffSource: AnyObject {
    /// Fills a prefix of `buffer`; says whether those bytes are all zero (without writing them then).
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> (count: Int, allZero: Bool)
    func finish() throws
}

extension DiffRunReader: DiffSource {}

/// BSDIFF40's diff block: raw difference bytes.
final class PlainDiffSource: DiffSource {
    let reader: DecompressingReader
    init(reader: DecompressingReader) { self.reader = reader }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> (count: Int, allZero: Bool) {
        try reader.readExactly(into: buffer)
        return (buffer.count, false)
    }
    func finish() throws { try reader.finish() }
}
