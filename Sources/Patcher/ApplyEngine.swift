import PatchFormat

/// Where patched bytes go: a file being written atomically, or memory.
protocol OutputSink: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws
}

extension AtomicFileWriter: OutputSink {}

final class MemorySink: OutputSink {
    var bytes: [UInt8] = []
    func write(_ b: UnsafeRawBufferPointer) throws { bytes.append(contentsOf: b) }
}

/// The streaming apply loop shared by both formats. Memory: the old file (the caller's buffer), three
/// decompressors with 64 KiB windows, and one 256 KiB work buffer; never the patch or the new file.
///
/// Every control tuple is checked before it is used: lengths for sign and for the space left in the
/// declared new size, old-file reads for bounds (`phx`), and the cursor arithmetic for overflow.
struct ApplyEngine {
    static let chunk = 1 << 18
    /// BSDIFF40 allows tuples that write nothing; this many in a row is treated as a hostile loop.
    static let maxConsecutiveEmptyTuples = 1 << 16

    let header: PatchHeader
    let old: UnsafeRawBufferPointer
    let input: any PatchInput
    let sink: any OutputSink
    var progress: ((UInt64) -> Void)?

    func run() throws {
        // Open the streams: phx has control, diff-runs, diff-literals and extra; BSDIFF40 has control,
        // diff and extra (which runs to the end of the file), all bzip2.
        let control: DecompressingReader, extra: DecompressingReader, diff: any DiffSource
        switch header {
        case .phx(let h):
            func open(_ name: String, _ offset: UInt64, _ length: UInt64) throws -> DecompressingReader {
                try DecompressingReader(streamName: name, codec: h.codec, source: input.source(offset: offset, length: length))
            }
            control = try open("control", h.controlOffset, h.controlLength)
            diff = DiffRunReader(runs: try open("diff-runs", h.runsOffset, h.runsLength),
                                 literals: try open("diff-literals", h.literalsOffset, h.literalsLength),
                                 total: h.diffRawLength)
            extra = try open("extra", h.extraOffset, h.extraLength)
        case .bsdiff(let h):
            func open(_ name: String, _ offset: UInt64, _ length: UInt64) throws -> DecompressingReader {
                try DecompressingReader(streamName: name, codec: .bzip2, source: input.source(offset: offset, length: length))
            }
            control = try open("control", h.controlOffset, h.controlLength)
            diff = PlainDiffSource(reader: try open("diff", h.diffOffset, h.diffLength))
            extra = try open("extra", h.extraOffset, input.length - h.extraOffset)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunk, alignment: 16)
        defer { buffer.deallocate() }

        let oldSize = Int64(old.count)
        let newSize = header.newSize
        var newPos: UInt64 = 0
        var oldPos: Int64 = 0
        var index: UInt64 = 0
        var emptyRun = 0
        var nextReport: UInt64 = 1 << 22

        func fail(_ reason: String) -> PatcherError {
            .format(.invalidControl(index: index, reason: reason))
        }

        tuples: while true {
            // Read the next tuple.
            let add: UInt64, copy: UInt64, seek: Int64
            switch header {
            case .phx(let h):
                if index == h.controlCount { break tuples }
                let a = try control.readVarint(index: index, field: "add")
                let c = try control.readVarint(index: index, field: "copy")
                let s = Varint.unzigzag(try control.readVarint(index: index, field: "seek"))
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
                add = a; copy = c; seek = s
            case .bsdiff:
                if newPos == newSize { break tuples }
                var raw = [UInt8](repeating: 0, count: 24)
                do {
                    try raw.withUnsafeMutableBytes { try control.readExactly(into: $0) }
                } catch PatchFormatError.truncatedStream {
                    throw fail("is cut short: the control stream ends after \(control.delivered) bytes while \(newSize - newPos) bytes of the new file are still to be written")
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
                add = UInt64(a); copy = UInt64(c); seek = s
            }

            // Add: diff bytes plus old bytes. Old bytes outside the old file count as zero (bspatch's
            // rule; a phx patch never gets here with such a range). A run of zero diff bytes is a plain
            // copy of old bytes, written straight from the old file's buffer.
            var remaining = add
            var cursor = oldPos
            while remaining > 0 {
                let want = Int(min(UInt64(buffer.count), remaining))
                let (m, allZero) = try diff.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]))
                let lo = max(cursor, 0)
                let (end, overflow) = cursor.addingReportingOverflow(Int64(m))
                let hi = overflow ? oldSize : min(end, oldSize)
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
            // Copy: bytes from the extra stream.
            remaining = copy
            while remaining > 0 {
                let m = Int(min(UInt64(buffer.count), remaining))
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<m])
                try extra.readExactly(into: part)
                try sink.write(UnsafeRawBufferPointer(part))
                remaining -= UInt64(m)
            }
            newPos += add + copy

            // Seek, with overflow checked.
            let (afterAdd, o1) = oldPos.addingReportingOverflow(Int64(add))
            let (moved, o2) = afterAdd.addingReportingOverflow(seek)
            if o1 || o2 { throw fail("moves the old cursor from \(oldPos) by \(add) + \(seek), overflowing 64 bits") }
            if case .phx = header, moved < 0 || moved > oldSize {
                throw fail("seeks the old cursor to \(moved), outside 0...\(oldSize)")
            }
            oldPos = moved
            index += 1
            if newPos >= nextReport {
                progress?(newPos)
                nextReport = newPos + (1 << 22)
            }
        }

        if newPos != newSize {
            throw PatcherError.format(.invalidControl(
                index: index, reason: "is missing: the \(index) tuples write \(newPos) bytes but the declared new size is \(newSize)"))
        }
        try control.finish()
        try diff.finish()
        try extra.finish()
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
