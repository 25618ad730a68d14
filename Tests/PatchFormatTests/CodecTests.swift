import PatchFormat
import Testing
import TestSupport

@Suite struct CodecTests {
    static let sizes = [0, 1, 1000, 70_000, 300_000]

    func decodeAll(_ compressed: [UInt8], codec: CodecID, expect count: Int, bufferSize: Int,
                   readAhead: Bool = false) throws -> [UInt8] {
        let reader = try DecompressingReader(streamName: "test", codec: codec, source: MemorySource(compressed),
                                             bufferSize: bufferSize, readAhead: readAhead)
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try reader.readExactly(into: $0) }
        try reader.finish()
        return out
    }

    @Test(arguments: CodecID.allCases, sizes)
    func roundTripThroughSmallWindows(codec: CodecID, size: Int) throws {
        var rng = SeededGenerator(seed: UInt64(size) &* 31 &+ UInt64(codec.rawValue))
        let data = TestData.structured(size, rng: &rng)
        let encoder = try codec.makeEncoder()
        // Feed in uneven pieces.
        var offset = 0
        while offset < data.count {
            let n = min(Int(rng.next() % 5000) + 1, data.count - offset)
            try encoder.write(Array(data[offset..<offset + n]))
            offset += n
        }
        let compressed = try encoder.finish()
        for window in [1, 7, 4096, 1 << 16] {
            #expect(try decodeAll(compressed, codec: codec, expect: data.count, bufferSize: window) == data)
            #expect(try decodeAll(compressed, codec: codec, expect: data.count, bufferSize: window, readAhead: true) == data,
                    "read ahead in \(window)-byte blocks")
        }
    }

    @Test(arguments: [CodecID.zstd, .bzip2, .zlib, .xz])
    func truncatedStreamIsAnError(codec: CodecID) throws {
        var rng = SeededGenerator(seed: 99)
        let data = TestData.structured(50_000, rng: &rng)
        let compressed = try HandMadePatch.compress(data, codec: codec)
        for cut in [0, 1, compressed.count / 2, compressed.count - 1] {
            for readAhead in [false, true] {
                #expect(throws: PatchFormatError.self, "cut at \(cut)") {
                    _ = try decodeAll(Array(compressed.prefix(cut)), codec: codec, expect: data.count, bufferSize: 1 << 16,
                                      readAhead: readAhead)
                }
            }
        }
    }

    @Test(arguments: CodecID.allCases, [false, true])
    func trailingBytesAfterTheStreamAreAnError(codec: CodecID, readAhead: Bool) throws {
        let data = Array("hello hello hello".utf8)
        let compressed = try HandMadePatch.compress(data, codec: codec)
        let reader = try DecompressingReader(streamName: "extra", codec: codec, source: MemorySource(compressed + [0x42]),
                                             readAhead: readAhead)
        var out = [UInt8](repeating: 0, count: data.count)
        try out.withUnsafeMutableBytes { try reader.readExactly(into: $0) }
        #expect(out == data)
        #expect(throws: PatchFormatError.self) { try reader.finish() }
    }

    @Test(arguments: [CodecID.zstd, .bzip2, .zlib, .xz], [false, true])
    func unreadDecompressedDataIsAnError(codec: CodecID, readAhead: Bool) throws {
        let data = Array("0123456789".utf8)
        let reader = try DecompressingReader(streamName: "diff", codec: codec,
                                             source: MemorySource(try HandMadePatch.compress(data, codec: codec)),
                                             readAhead: readAhead)
        var out = [UInt8](repeating: 0, count: 4)
        try out.withUnsafeMutableBytes { try reader.readExactly(into: $0) }
        #expect(throws: PatchFormatError.trailingData(location: "in the diff stream",
                                                      detail: "6 decompressed bytes after the 4 the control tuples use")) {
            try reader.finish()
        }
    }

    @Test func anXzDictionaryOutsideTheBoundsIsRefused() throws {
        var compressed = try HandMadePatch.compress(Array("hello hello hello".utf8), codec: .xz)
        #expect((12...26).contains(Int(compressed[0])), "the dictionary byte comes first")
        for bad: UInt8 in [0, 11, 27, 255] {
            compressed[0] = bad
            #expect(throws: PatchFormatError.self, "dictionary byte \(bad)") {
                _ = try decodeAll(compressed, codec: .xz, expect: 17, bufferSize: 1 << 16)
            }
        }
    }

    @Test(arguments: [false, true])
    func readingPastTheEndNamesTheStream(readAhead: Bool) throws {
        let reader = try DecompressingReader(streamName: "extra", codec: .zstd,
                                             source: MemorySource(try HandMadePatch.compress([1, 2, 3], codec: .zstd)),
                                             readAhead: readAhead)
        var out = [UInt8](repeating: 0, count: 5)
        #expect(throws: PatchFormatError.truncatedStream(stream: "extra", producedBytes: 3, neededMore: 2)) {
            try out.withUnsafeMutableBytes { try reader.readExactly(into: $0) }
        }
    }

    @Test(arguments: [CodecID.zstd, .bzip2, .zlib, .xz])
    func garbageIsACorruptStream(codec: CodecID) throws {
        var rng = SeededGenerator(seed: 5)
        let garbage = rng.bytes(4096)
        for readAhead in [false, true] {
            #expect(throws: PatchFormatError.self) {
                _ = try decodeAll(garbage, codec: codec, expect: 4096, bufferSize: 1 << 16, readAhead: readAhead)
            }
        }
    }

    @Test func zstdOutputDoesNotDependOnThreads() throws {
        var rng = SeededGenerator(seed: 11)
        let data = TestData.structured(9 << 20, rng: &rng)
        var outputs: [[UInt8]] = []
        for threads in [1, 2, 4] {
            let e = try CodecID.zstd.makeEncoder(level: 3, threads: threads)
            try e.write(data)
            outputs.append(try e.finish())
        }
        #expect(outputs[0] == outputs[1])
        #expect(outputs[0] == outputs[2])
    }
}

@Suite struct DiffRunTests {
    func split(_ pieces: [[UInt8]]) -> (runs: [UInt8], literals: [UInt8]) {
        var s = DiffRunSplitter()
        var lits = [UInt8]()
        for p in pieces { p.withUnsafeBufferPointer { s.add($0) { lits.append(contentsOf: $0) } } }
        s.finish()
        return (s.runs, lits)
    }

    @Test func knownSplit() {
        // 3 zeros, 2 literals, 1 zero, 1 literal, 2 trailing zeros.
        let (runs, lits) = split([[0, 0, 0, 5, 6, 0, 7, 0, 0]])
        #expect(runs == [3, 2, 1, 1, 2, 0])
        #expect(lits == [5, 6, 7])
        #expect(split([[9]]).runs == [0, 1])
        #expect(split([]).runs == [])
    }

    /// The runs of `data` counted a byte at a time.
    static func referenceRuns(_ data: [UInt8]) -> [UInt8] {
        var runs: [UInt8] = []
        var i = 0
        while i < data.count {
            var z = i
            while z < data.count && data[z] == 0 { z += 1 }
            var l = z
            while l < data.count && data[l] != 0 { l += 1 }
            Varint.appendUnsigned(UInt64(z - i), to: &runs)
            Varint.appendUnsigned(UInt64(l - z), to: &runs)
            i = l
        }
        return runs
    }

    /// Zero runs (counted eight bytes at a time) of every length around a word's and longer, at each
    /// alignment of the buffer: the runs and literals of a byte-by-byte count.
    @Test func longZeroRunsAreCountedExactly() {
        var rng = SeededGenerator(seed: 14)
        var data: [UInt8] = []
        for length in 0..<40 {
            data += [UInt8](repeating: 0, count: length + Int(rng.next() % 3) * 61)
            data += (0..<(1 + Int(rng.next() % 3))).map { _ in UInt8(truncatingIfNeeded: rng.next() | 1) }
        }
        data += [UInt8](repeating: 0, count: 77)
        for offset in 0..<8 {
            let input = [UInt8](repeating: 9, count: offset) + data
            let (runs, lits) = split([input])
            #expect(runs == Self.referenceRuns(input), "offset \(offset)")
            #expect(lits == input.filter { $0 != 0 }, "offset \(offset)")
        }
    }

    @Test func splitDoesNotDependOnChunking() {
        var rng = SeededGenerator(seed: 12)
        let data = (0..<20_000).map { _ in rng.next() % 4 == 0 ? UInt8(truncatingIfNeeded: rng.next() | 1) : 0 }
        let whole = split([data])
        var pieces: [[UInt8]] = []
        var i = 0
        while i < data.count {
            let n = min(Int(rng.next() % 50), data.count - i)
            pieces.append(Array(data[i..<i + n]))
            i += n
        }
        #expect(split(pieces) == whole)
    }

    @Test func readerRestoresTheBytes() throws {
        var rng = SeededGenerator(seed: 13)
        let data = (0..<50_000).map { _ in rng.next() % 3 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : 0 }
        let (runs, lits) = split([data])
        let reader = DiffRunReader(
            runs: try DecompressingReader(streamName: "diff-runs", codec: .zstd, source: MemorySource(try HandMadePatch.compress(runs, codec: .zstd))),
            literals: try DecompressingReader(streamName: "diff-literals", codec: .zstd, source: MemorySource(try HandMadePatch.compress(lits, codec: .zstd))),
            total: UInt64(data.count))
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 777)
        while out.count < data.count {
            let want = min(buf.count, data.count - out.count)
            let (n, zero) = try buf.withUnsafeMutableBytes { try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])) }
            out.append(contentsOf: zero ? [UInt8](repeating: 0, count: n) : Array(buf[0..<n]))
        }
        #expect(out == data)
        try reader.finish()
    }

    /// Short runs come back together, filled in, and a long zero run on its own as all zero (which the
    /// apply writes straight from old): 100 runs are 3 reads, not 100.
    @Test func readerFillsShortRunsTogetherAndLeavesLongZeroRunsAlone() throws {
        let long = DiffRunReader.longZeroRun
        var data: [UInt8] = []
        for i in 0..<50 { data += [UInt8](repeating: 0, count: (i + 3) % 7) + [UInt8(i + 1), 0xFF] }
        let mixed = data.count
        data += [UInt8](repeating: 0, count: long) + [9, 9, 0, 0, 9]
        let (runs, lits) = split([data])
        let reader = DiffRunReader(
            runs: try DecompressingReader(streamName: "diff-runs", codec: .uncompressed, source: MemorySource(runs)),
            literals: try DecompressingReader(streamName: "diff-literals", codec: .uncompressed, source: MemorySource(lits)),
            total: UInt64(data.count))
        var buf = [UInt8](repeating: 0xAA, count: 1 << 16)
        var pieces: [(count: Int, allZero: Bool)] = []
        var out = [UInt8]()
        while out.count < data.count {
            let piece = try buf.withUnsafeMutableBytes { try reader.read(into: $0) }
            pieces.append(piece)
            out += piece.allZero ? [UInt8](repeating: 0, count: piece.count) : Array(buf[0..<piece.count])
        }
        #expect(out == data)
        #expect(pieces.map(\.count) == [mixed, long, 5] && pieces.map(\.allZero) == [false, true, false])
        try reader.finish()
    }

    @Test func runsCoveringMoreThanTheDiffBytesAreRejected() throws {
        let reader = DiffRunReader(
            runs: try DecompressingReader(streamName: "diff-runs", codec: .uncompressed, source: MemorySource([10, 0])),
            literals: try DecompressingReader(streamName: "diff-literals", codec: .uncompressed, source: MemorySource([])),
            total: 5)
        var buf = [UInt8](repeating: 0, count: 5)
        #expect(throws: PatchFormatError.corruptStream(stream: "diff-runs", detail: "run pair 0 covers 10 + 0 bytes but only 5 diff bytes remain")) {
            _ = try buf.withUnsafeMutableBytes { try reader.read(into: $0) }
        }
        let empty = DiffRunReader(
            runs: try DecompressingReader(streamName: "diff-runs", codec: .uncompressed, source: MemorySource([0, 0])),
            literals: try DecompressingReader(streamName: "diff-literals", codec: .uncompressed, source: MemorySource([])),
            total: 5)
        #expect(throws: PatchFormatError.corruptStream(stream: "diff-runs", detail: "run pair 0 is empty")) {
            _ = try buf.withUnsafeMutableBytes { try empty.read(into: $0) }
        }
    }
}
