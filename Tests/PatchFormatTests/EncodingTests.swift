import PatchFormat
import Testing
import TestSupport

@Suite struct VarintTests {
    @Test(arguments: [UInt64(0), 1, 127, 128, 300, 16383, 16384, UInt64(UInt32.max), UInt64.max - 1, UInt64.max])
    func unsignedRoundTrip(_ value: UInt64) throws {
        var bytes = [UInt8]()
        Varint.appendUnsigned(value, to: &bytes)
        #expect(bytes.count <= Varint.maxLength)
        var i = 0
        let back = try Varint.readUnsigned(index: 0, field: "x") { i < bytes.count ? bytes[postIncrement(&i)] : nil }
        #expect(back == value)
        #expect(i == bytes.count)
    }

    @Test func knownEncodings() {
        var b = [UInt8]()
        Varint.appendUnsigned(300, to: &b)
        #expect(b == [0xAC, 0x02])
        b = []
        Varint.appendSigned(-1, to: &b)
        #expect(b == [0x01])
        b = []
        Varint.appendSigned(1, to: &b)
        #expect(b == [0x02])
        #expect(Varint.zigzag(Int64.min) == UInt64.max)
        #expect(Varint.unzigzag(UInt64.max) == Int64.min)
    }

    @Test(arguments: [Int64.min, -1_000_000, -1, 0, 1, 63, 64, Int64.max])
    func signedRoundTrip(_ value: Int64) {
        #expect(Varint.unzigzag(Varint.zigzag(value)) == value)
    }

    @Test func rejectsCutShortOverlongAndOverflowingVarints() {
        func read(_ bytes: [UInt8]) throws -> UInt64 {
            var i = 0
            return try Varint.readUnsigned(index: 7, field: "add") { i < bytes.count ? bytes[postIncrement(&i)] : nil }
        }
        #expect(throws: PatchFormatError.invalidControl(index: 7, reason: "is cut short: the control stream ends inside its add field")) {
            try read([0x80, 0x80])
        }
        #expect(throws: PatchFormatError.self) { try read(Array(repeating: 0x80, count: 10) + [0x01]) }
        // Ten bytes whose last carries more than the 64th bit.
        #expect(throws: PatchFormatError.invalidControl(index: 7, reason: "has a add varint above 2^64-1")) {
            try read(Array(repeating: 0xFF, count: 9) + [0x02])
        }
    }
}

@Suite struct SignMagnitudeTests {
    @Test(arguments: [Int64(0), 1, -1, 255, -256, 1 << 40, -(1 << 40), Int64.max, -Int64.max])
    func roundTrip(_ value: Int64) {
        var b = [UInt8]()
        SignMagnitude64.encode(value, into: &b)
        #expect(b.count == 8)
        #expect(b.withUnsafeBytes { SignMagnitude64.decode($0) } == value)
    }

    @Test func layoutIsLittleEndianMagnitudeWithSignInTopBit() {
        var b = [UInt8]()
        SignMagnitude64.encode(-2, into: &b)
        #expect(b == [2, 0, 0, 0, 0, 0, 0, 0x80])
        // "-0" decodes as 0.
        #expect([0, 0, 0, 0, 0, 0, 0, 0x80].withUnsafeBytes { SignMagnitude64.decode($0) } == 0)
    }
}

@Suite struct ChecksumTests {
    @Test func sha256KnownVectors() {
        #expect(Hex.encode(SHA256Hasher.hash(Array("abc".utf8))) ==
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.encode(SHA256Hasher.hash([])) ==
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // Incremental equals one-shot.
        let h = SHA256Hasher()
        h.update(Array("a".utf8))
        h.update(Array("bc".utf8))
        #expect(h.finalize() == SHA256Hasher.hash(Array("abc".utf8)))
    }

    @Test func crc32KnownVector() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test func hexRoundTripAndRejects() {
        #expect(Hex.decode("00ff10Ab") == [0, 255, 16, 171])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}

func postIncrement(_ i: inout Int) -> Int {
    defer { i += 1 }
    return i
}

/// The old-context run coder against the definition (FORMAT.md): per block, the pattern bits stably
/// sorted by `ContextOrder.key` of each diff byte's old position, then coded as (zero run, non-zero
/// run) varints. Segments start at 0 and 1 (keys partly outside old), run to old's end and past it,
/// blocks split segments, and the patterns have long runs across 64-bit words.
@Suite struct ContextRunCoderTests {
    static func reference(old: [UInt8], segments: [(start: Int, diff: [UInt8])], blockSize: Int) -> [UInt8] {
        var items: [(key: Int, nonZero: Bool)] = []
        old.withUnsafeBufferPointer { o in
            for (start, diff) in segments {
                for (t, d) in diff.enumerated() {
                    items.append((ContextOrder.key(o.baseAddress!, count: o.count, at: start + t), d != 0))
                }
            }
        }
        var runs: [UInt8] = []
        for blockStart in stride(from: 0, to: items.count, by: blockSize) {
            let block = items[blockStart..<min(blockStart + blockSize, items.count)]
            let bits = block.enumerated().sorted { ($0.element.key, $0.offset) < ($1.element.key, $1.offset) }.map(\.element.nonZero)
            var i = 0
            while i < bits.count {
                var z = i
                while z < bits.count && !bits[z] { z += 1 }
                var l = z
                while l < bits.count && bits[l] { l += 1 }
                Varint.appendUnsigned(UInt64(z - i), to: &runs)
                Varint.appendUnsigned(UInt64(l - z), to: &runs)
                i = l
            }
        }
        return runs
    }

    /// The runs a `ContextRunCoder` makes of the segments.
    static func coded(old: [UInt8], segments: [(start: Int, diff: [UInt8])], blockSize: Int) -> [UInt8] {
        let coder = ContextRunCoder(blockSize: blockSize)
        old.withUnsafeBufferPointer { o in
            for (start, d) in segments {
                d.withUnsafeBufferPointer { coder.add(old: o, oldStart: start, diff: $0) }
            }
        }
        coder.finish()
        return coder.takeRuns()
    }

    @Test(arguments: [1, 64, 1000, 1 << 24])
    func runsAreTheSortedPatternCoded(blockSize: Int) {
        var rng = SeededGenerator(seed: 4711)
        // Old with long stretches of one key (zeros) and varied bytes.
        var old = rng.bytes(6000)
        for i in 1000..<3000 { old[i] = 0 }
        func diff(_ n: Int, density: Int) -> [UInt8] {
            (0..<n).map { i in (i / 97) % 3 == 0 || Int.random(in: 0..<100, using: &rng) < density ? UInt8.random(in: 1...255, using: &rng) : 0 }
        }
        let segments: [(start: Int, diff: [UInt8])] = [
            (0, diff(300, density: 10)), (1, diff(200, density: 50)), (900, diff(2500, density: 2)),
            (5800, diff(200, density: 30)), (5990, diff(40, density: 60)), (6000, diff(10, density: 90)),
        ]
        #expect(Self.coded(old: old, segments: segments, blockSize: blockSize)
                == Self.reference(old: old, segments: segments, blockSize: blockSize))
    }

    /// Segments longer than the 64 Ki bytes the passes take at a time: from old's first positions, to
    /// old's end, and past it.
    @Test(arguments: [100_000, 1 << 24])
    func longSegmentsAreCodedInPieces(blockSize: Int) {
        var rng = SeededGenerator(seed: 4713)
        var old = rng.bytes(300_000)
        for i in 120_000..<190_000 { old[i] = 0 }
        let density = [1, 3, 40]
        var k = 0
        func diff(_ n: Int) -> [UInt8] {
            k += 1
            let d = density[k % density.count]
            return (0..<n).map { _ in Int(rng.next() % 100) < d ? UInt8(truncatingIfNeeded: rng.next() | 1) : 0 }
        }
        let segments: [(start: Int, diff: [UInt8])] = [(0, diff(150_000)), (1, diff(70_000)), (100_000, diff(200_000)),
                                                       (250_000, diff(80_000))]
        #expect(Self.coded(old: old, segments: segments, blockSize: blockSize)
                == Self.reference(old: old, segments: segments, blockSize: blockSize))
    }

    /// `shouldStop` is asked before each 64 Ki bytes of a block's passes: a coder told to stop in its
    /// first block's count writes no runs and takes no more bytes; one never told to, the runs of a
    /// coder not asked.
    @Test(.timeLimit(.minutes(1))) func aCoderToldToStopDoesNothingMore() {
        var rng = SeededGenerator(seed: 4712)
        let old = rng.bytes(300_000)
        let diff = (0..<250_000).map { _ in rng.next() % 50 == 0 ? UInt8(truncatingIfNeeded: rng.next() | 1) : 0 }
        func code(_ coder: ContextRunCoder) -> [UInt8] {
            old.withUnsafeBufferPointer { o in
                diff.withUnsafeBufferPointer { d in
                    coder.add(old: o, oldStart: 10, diff: UnsafeBufferPointer(rebasing: d[0..<200_000]))
                    coder.add(old: o, oldStart: 250_000, diff: UnsafeBufferPointer(rebasing: d[200_000...]))
                }
            }
            coder.finish()
            return coder.takeRuns()
        }
        let expected = code(ContextRunCoder(blockSize: 150_000))
        let asked = ContextRunCoder(blockSize: 150_000)
        var questions = 0
        asked.shouldStop = { questions += 1; return false }
        #expect(code(asked) == expected && !asked.isStopped)
        #expect(questions >= 4, "\(questions) questions for 250,000 bytes in two blocks")
        let stopped = ContextRunCoder(blockSize: 150_000)
        var told = 0
        stopped.shouldStop = { told += 1; return told == 2 }
        #expect(code(stopped).isEmpty && stopped.isStopped)
        #expect(told == 2, "asked \(told) times")
    }
}
