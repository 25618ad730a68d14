import PatchFormat
import Testing
import TestSupport

@Suite struct CodecTests {
    static let sizes = [0, 1, 1000, 70_000, 300_000]

    func decodeAll(_ compressed: [UInt8], codec: CodecID, expect count: Int, bufferSize: Int) throws -> [UInt8] {
        let reader = try DecompressingReader(streamName: "test", codec: codec, source: MemorySource(compressed),
                                             bufferSize: bufferSize)
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
        }
    }

    @Test(arguments: [CodecID.zstd, .bzip2, .zlib])
    func truncatedStreamIsAnError(codec: CodecID) throws {
        var rng = SeededGenerator(seed: 99)
        let data = TestData.structured(50_000, rng: &rng)
        let compressed = try HandMadePatch.compress(data, codec: codec)
        for cut in [0, 1, compressed.count / 2, compressed.count - 1] {
            #expect(throws: PatchFormatError.self, "cut at \(cut)") {
                _ = try decodeAll(Array(compressed.prefix(cut)), codec: codec, expect: data.count, bufferSize: 1 << 16)
            }
        }
    }

    @Test(arguments: CodecID.allCases)
    func trailingBytesAfterTheStreamAreAnError(codec: CodecID) throws {
        let data = Array("hello hello hello".utf8)
        let compressed = try HandMadePatch.compress(data, codec: codec)
        let reader = try DecompressingReader(streamName: "extra", codec: codec, source: MemorySource(compressed + [0x42]))
        var out = [UInt8](repeating: 0, count: data.count)
        try out.withUnsafeMutableBytes { try reader.readExactly(into: $0) }
        #expect(out == data)
        #expect(throws: PatchFormatError.self) { try reader.finish() }
    }

    @Test(arguments: [CodecID.zstd, .bzip2, .zlib])
    func unreadDecompressedDataIsAnError(codec: CodecID) throws {
        let data = Array("0123456789".utf8)
        let reader = try DecompressingReader(streamName: "diff", codec: codec,
                                             source: MemorySource(try HandMadePatch.compress(data, codec: codec)))
        var out = [UInt8](repeating: 0, count: 4)
        try out.withUnsafeMutableBytes { try reader.readExactly(into: $0) }
        #expect(throws: PatchFormatError.trailingData(location: "in the diff stream",
                                                      detail: "6 decompressed bytes after the 4 the control tuples use")) {
            try reader.finish()
        }
    }

    @Test func readingPastTheEndNamesTheStream() throws {
        let reader = try DecompressingReader(streamName: "extra", codec: .zstd,
                                             source: MemorySource(try HandMadePatch.compress([1, 2, 3], codec: .zstd)))
        var out = [UInt8](repeating: 0, count: 5)
        #expect(throws: PatchFormatError.truncatedStream(stream: "extra", producedBytes: 3, neededMore: 2)) {
            try out.withUnsafeMutableBytes { try reader.readExactly(into: $0) }
        }
    }

    @Test(arguments: [CodecID.zstd, .bzip2, .zlib])
    func garbageIsACorruptStream(codec: CodecID) throws {
        var rng = SeededGenerator(seed: 5)
        let garbage = rng.bytes(4096)
        #expect(throws: PatchFormatError.self) {
            _ = try decodeAll(garbage, codec: codec, expect: 4096, bufferSize: 1 << 16)
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
