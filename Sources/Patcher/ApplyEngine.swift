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
        let codec: CodecID
        let ranges: [(name: String, offset: UInt64, length: UInt64)]
        switch header {
        case .phx(let h):
            codec = h.codec
            ranges = [("control", h.controlOffset, h.controlLength), ("diff", h.diffOffset, h.diffLength),
                      ("extra", h.extraOffset, h.extraLength)]
        case .bsdiff(let h):
            codec = .bzip2
            ranges = [("control", h.controlOffset, h.controlLength), ("diff", h.diffOffset, h.diffLength),
                      ("extra", h.extraOffset, input.length - h.extraOffset)]
        }
        let readers = try ranges.map {
            try DecompressingReader(streamName: $0.name, codec: codec, source: input.source(offset: $0.offset, length: $0.length))
        }
        let control = readers[0], diff = readers[1], extra = readers[2]
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
                let next = { try control.readByte() }
                let a = try Varint.readUnsigned(index: index, field: "add", next)
                let c = try Varint.readUnsigned(index: index, field: "copy", next)
                let s = Varint.unzigzag(try Varint.readUnsigned(index: index, field: "seek", next))
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
            // rule; a phx patch never gets here with such a range).
            var remaining = add
            var cursor = oldPos
            while remaining > 0 {
                let m = Int(min(UInt64(buffer.count), remaining))
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<m])
                try diff.readExactly(into: part)
                let lo = max(cursor, 0)
                let (end, overflow) = cursor.addingReportingOverflow(Int64(m))
                let hi = overflow ? oldSize : min(end, oldSize)
                if lo < hi {
                    let dst = part.baseAddress!.assumingMemoryBound(to: UInt8.self) + Int(lo - cursor)
                    let src = old.baseAddress!.assumingMemoryBound(to: UInt8.self) + Int(lo)
                    for i in 0..<Int(hi - lo) { dst[i] &+= src[i] }
                }
                try sink.write(UnsafeRawBufferPointer(part))
                if overflow { cursor = Int64.max } else { cursor = end }
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
        for r in readers { try r.finish() }
        progress?(newPos)
    }
}
