import DiffEngine
import PatchFormat
import Patcher
import Testing
import TestSupport

/// Every option combination a patch can be made with.
let allOptions: [DiffOptions] = [
    DiffOptions(format: .phx, codec: .zstd),
    DiffOptions(format: .phx, codec: .bzip2),
    DiffOptions(format: .phx, codec: .zlib),
    DiffOptions(format: .phx, codec: .xz),
    DiffOptions(format: .phx, codec: .xz, level: 1),
    DiffOptions(format: .phx, codec: .uncompressed),
    DiffOptions(format: .phx, codec: .zstd, level: 1),
    DiffOptions(format: .bsdiff),
    ordered(.oldContext),
    ordered(.oldContext, codec: .uncompressed),
    ordered(.natural),
    split(.natural),
    split(.oldContext),
    split(.oldContext, codec: .uncompressed),
]

/// phx with the control stream forced into the split layout.
func split(_ order: DiffOrder, codec: CodecID = .zstd) -> DiffOptions {
    var o = ordered(order, codec: codec)
    o.splitControl = true
    return o
}

func ordered(_ order: DiffOrder, codec: CodecID = .zstd, level: Int? = nil) -> DiffOptions {
    var o = DiffOptions(format: .phx, codec: codec, level: level)
    o.diffOrder = order
    return o
}

func roundTrip(_ old: [UInt8], _ new: [UInt8], _ options: DiffOptions,
               sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
    let patch = try DiffEngine.makePatch(old: old, new: new, options: options)
    let result = try PatchApplier.apply(old: old, patch: patch)
    #expect(result == new, "round trip \(options.format)/\(options.codec) of \(old.count) -> \(new.count) bytes",
            sourceLocation: sourceLocation)
    return patch
}

struct EdgeCase: CustomTestStringConvertible, Sendable {
    let name: String
    let old: [UInt8]
    let new: [UInt8]
    var testDescription: String { name }
}

let edgeCases: [EdgeCase] = {
    var rng = SeededGenerator(seed: 2024)
    let random = rng.bytes(100_000)
    let other = rng.bytes(80_000)
    let text = Array(String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 2000).utf8)
    var shifted = text
    shifted.insert(contentsOf: Array("INSERTED".utf8), at: 5000)
    let period3 = (0..<300_000).map { UInt8($0 % 3) }
    let period7 = (0..<310_000).map { UInt8(($0 * 5) % 7) }
    return [
        EdgeCase(name: "both empty", old: [], new: []),
        EdgeCase(name: "empty old", old: [], new: random),
        EdgeCase(name: "empty new", old: random, new: []),
        EdgeCase(name: "one byte to one byte", old: [1], new: [2]),
        EdgeCase(name: "one byte to the same", old: [7], new: [7]),
        EdgeCase(name: "identical", old: random, new: random),
        EdgeCase(name: "unrelated", old: random, new: other),
        EdgeCase(name: "all zero, same size", old: [UInt8](repeating: 0, count: 200_000), new: [UInt8](repeating: 0, count: 200_000)),
        EdgeCase(name: "all zero, grows", old: [UInt8](repeating: 0, count: 100_000), new: [UInt8](repeating: 0, count: 250_000)),
        EdgeCase(name: "all zero to random", old: [UInt8](repeating: 0, count: 50_000), new: random),
        EdgeCase(name: "repetitive text with an insertion", old: text, new: shifted),
        EdgeCase(name: "period 3 to period 7", old: period3, new: period7),
        EdgeCase(name: "period 3 shifted by one", old: period3, new: Array(period3.dropFirst())),
        EdgeCase(name: "truncated", old: random, new: Array(random.prefix(12_345))),
        EdgeCase(name: "appended", old: random, new: random + other),
        EdgeCase(name: "prepended", old: random, new: other + random),
        EdgeCase(name: "reversed halves", old: random, new: Array(random[50_000...] + random[..<50_000])),
        EdgeCase(name: "every byte incremented", old: random, new: random.map { $0 &+ 1 }),
    ]
}()

@Suite struct EdgeCaseTests {
    @Test(arguments: edgeCases)
    func roundTripsInEveryFormatAndCodec(_ c: EdgeCase) throws {
        for options in allOptions {
            _ = try roundTrip(c.old, c.new, options)
        }
    }

    @Test func identicalInputsGiveATinyPatch() throws {
        var rng = SeededGenerator(seed: 1)
        let data = rng.bytes(1 << 20)
        let patch = try roundTrip(data, data, DiffOptions())
        #expect(patch.count < PhxHeader.size + 200, "identical 1 MiB files gave a \(patch.count)-byte patch")
    }

    @Test func smallEditGivesASmallPatch() throws {
        var rng = SeededGenerator(seed: 3)
        let old = TestData.structured(1 << 20, rng: &rng)
        var new = old
        new[500_000] ^= 0xFF
        new.insert(contentsOf: Array("a new string".utf8), at: 700_000)
        for options in [DiffOptions(), DiffOptions(format: .bsdiff)] {
            let patch = try roundTrip(old, new, options)
            #expect(patch.count < 1000, "\(options.format): a 2-edit patch of 1 MiB is \(patch.count) bytes")
        }
    }

    @Test func makePatchRejectsBadCombinations() {
        #expect(throws: DiffEngineError.self) {
            try DiffEngine.makePatch(old: [1], new: [2], options: DiffOptions(format: .bsdiff, codec: .zstd))
        }
        #expect(throws: DiffEngineError.self) {
            try DiffEngine.makePatch(old: [1], new: [2], options: DiffOptions(codec: .zstd, level: 40))
        }
    }
}

/// Old-context order of the diff pattern (`DiffOrder.oldContext`).
@Suite struct DiffOrderTests {
    /// A "binary" whose new version moves every address by a constant, as relinking does: the changed
    /// bytes follow the same opcode bytes, which context order groups together.
    static func relocated(records: Int, seed: UInt64) -> (old: [UInt8], new: [UInt8]) {
        var rng = SeededGenerator(seed: seed)
        var old = [UInt8](), new = [UInt8]()
        for _ in 0..<records {
            let opcode: [UInt8] = [[0xE8], [0x48, 0x8D, 0x05], [0xFF, 0x15]][Int(rng.next() % 3)]
            let address = UInt32(truncatingIfNeeded: rng.next() % 0x40_0000 + 0x1000)
            let filler = rng.bytes(Int(rng.next() % 12))
            for (out, a) in [(0, address), (1, address &+ 0x2340)] {
                var bytes = opcode
                withUnsafeBytes(of: a.littleEndian) { bytes += $0 }
                bytes += filler
                if out == 0 { old += bytes } else { new += bytes }
            }
        }
        return (old, new)
    }

    @Test func autoKeepsTheSmallerOrderAndBothRoundTrip() throws {
        let (old, new) = Self.relocated(records: 40_000, seed: 77)
        let natural = try roundTrip(old, new, ordered(.natural))
        let context = try roundTrip(old, new, ordered(.oldContext))
        let auto = try roundTrip(old, new, DiffOptions(codec: .zstd))
        #expect(context.count < natural.count, "context order \(context.count) bytes, natural \(natural.count)")
        #expect(auto.elementsEqual(context), "auto must keep the smaller patch (\(auto.count) bytes, context \(context.count))")
        #expect(try PatchApplier.inspect(patch: auto).diffOrder == "context")
        #expect(try PatchApplier.inspect(patch: natural).diffOrder == "natural")
        // A file where context order does not pay: auto keeps natural order.
        var rng = SeededGenerator(seed: 5)
        let text = TestData.structured(200_000, rng: &rng)
        let edited = TestData.mutate(text, edits: 3, rng: &rng)
        let small = try roundTrip(text, edited, DiffOptions(codec: .zstd))
        let forced = try roundTrip(text, edited, ordered(.oldContext))
        #expect(small.count <= forced.count)
    }

    /// More than one 16 Mi block of diff bytes, so that runs, cursors and literals cross blocks.
    @Test func patternsSpanningSeveralBlocks() throws {
        var rng = SeededGenerator(seed: 31)
        let old = TestData.structured(20 << 20, rng: &rng)
        var new = old
        for _ in 0..<200_000 { new[Int(rng.next() % UInt64(new.count))] &+= UInt8(truncatingIfNeeded: rng.next() % 7 + 1) }
        let patch = try roundTrip(old, new, ordered(.oldContext, level: 1))
        let info = try PatchApplier.inspect(patch: patch)
        #expect(info.diffOrder == "context" && (info.diffBytes ?? 0) > UInt64(ContextOrder.blockSize))
    }

    @Test func aDecoderWithoutTheFlagRefusesUnknownFlags() throws {
        var patch = try DiffEngine.makePatch(old: [1, 2, 3, 4], new: [1, 2, 9, 4], options: ordered(.oldContext))
        // Bit 2 is not defined: refused (after fixing the CRC so that the flag is what is checked).
        patch[10] |= 4
        HandMadePatch.reseal(&patch, crcAt: HandMadePatch.phxCRCOffset)
        #expect { _ = try PatchApplier.apply(old: [1, 2, 3, 4], patch: patch) } throws: { error in
            "\(error)".contains("flag")
        }
    }
}

@Suite struct RandomRoundTripTests {
    /// Random old files and random edits of them, with a fresh seed each run (printed, and replayable
    /// with PHOENIX_TEST_SEED).
    @Test func seededRandomEdits() throws {
        let seed = TestData.seed()
        print("RandomRoundTripTests.seededRandomEdits seed=\(seed) (replay with PHOENIX_TEST_SEED=\(seed))")
        var rng = SeededGenerator(seed: seed)
        for round in 0..<12 {
            let size = Int(rng.next() % 200_000)
            let old = round % 3 == 0 ? rng.bytes(size) : TestData.structured(size, rng: &rng)
            let new = TestData.mutate(old, edits: Int(rng.next() % 40), rng: &rng)
            let options = allOptions[Int(rng.next() % UInt64(allOptions.count))]
            let patch = try DiffEngine.makePatch(old: old, new: new, options: options)
            let result = try PatchApplier.apply(old: old, patch: patch)
            #expect(result == new, "seed \(seed) round \(round): \(options.format)/\(options.codec) \(old.count) -> \(new.count)")
        }
    }
}

@Suite struct DeterminismTests {
    @Test func sameInputsGiveTheSamePatchBytes() throws {
        var rng = SeededGenerator(seed: 77)
        let old = TestData.structured(600_000, rng: &rng)
        let new = TestData.mutate(old, edits: 50, rng: &rng)
        for options in allOptions {
            let a = try DiffEngine.makePatch(old: old, new: new, options: options)
            let b = try DiffEngine.makePatch(old: old, new: new, options: options)
            #expect(a == b, "\(options.format)/\(options.codec) is not deterministic")
        }
    }

    @Test func chunkedParallelMatchingIsDeterministicAndRoundTrips() throws {
        var rng = SeededGenerator(seed: 79)
        let old = TestData.structured(700_000, rng: &rng)
        let new = TestData.mutate(old, edits: 120, rng: &rng)
        for format in [PatchKind.phx, .bsdiff] {
            var patches: [[UInt8]] = []
            for threads in [1, 2, 3] {
                var o = DiffOptions(format: format, level: format == .phx ? 3 : nil, threads: threads)
                o.matchChunkSize = 100_000
                patches.append(try DiffEngine.makePatch(old: old, new: new, options: o))
            }
            #expect(patches[0] == patches[1] && patches[0] == patches[2], "\(format): chunked matching depends on threads")
            #expect(try PatchApplier.apply(old: old, patch: patches[0]) == new)
            // Chunk boundaries cost little.
            let whole = try DiffEngine.makePatch(old: old, new: new, options: DiffOptions(format: format, level: format == .phx ? 3 : nil))
            #expect(Double(patches[0].count) < Double(whole.count) * 1.1 + 200, "\(format): \(patches[0].count) vs \(whole.count)")
        }
    }

    @Test func threadCountDoesNotChangeThePatch() throws {
        var rng = SeededGenerator(seed: 78)
        let old = TestData.structured(6 << 20, rng: &rng)
        let new = TestData.mutate(old, edits: 200, rng: &rng)
        let patches = try [1, 2, 3].map {
            try DiffEngine.makePatch(old: old, new: new, options: DiffOptions(level: 3, threads: $0))
        }
        #expect(patches[0] == patches[1])
        #expect(patches[0] == patches[2])
        // Three default-size chunks: the patch must also apply (a tiling bug once passed the line above).
        #expect(try PatchApplier.apply(old: old, patch: patches[0]) == new)
    }
}

/// The split layout of the phx control stream (`ControlLayout`, flag bit 1).
@Suite struct ControlLayoutTests {
    /// Random data with a short insertion every ~40 bytes: one tuple per insertion, so well over one
    /// block of 65,536 tuples.
    static let manyTuples: (old: [UInt8], new: [UInt8]) = {
        var rng = SeededGenerator(seed: 1234)
        let old = rng.bytes(4 << 20)
        var new = [UInt8]()
        new.reserveCapacity(old.count + old.count / 10)
        var i = 0
        while i < old.count {
            let n = min(old.count - i, 30 + Int(rng.next() % 20))
            new += old[i..<(i + n)]
            new += rng.bytes(1 + Int(rng.next() % 3))
            i += n
        }
        return (old, new)
    }()

    @Test(arguments: [DiffOrder.natural, .oldContext])
    func blocksOfTuplesRoundTrip(_ order: DiffOrder) throws {
        let (old, new) = Self.manyTuples
        let patch = try roundTrip(old, new, split(order, codec: .uncompressed))
        let info = try PatchApplier.inspect(patch: patch)
        #expect(info.controlLayout == "split")
        #expect(info.controlTuples > UInt64(ControlLayout.blockTuples), "only \(info.controlTuples) tuples: one block")
        let interleaved = try roundTrip(old, new, ordered(order, codec: .uncompressed))
        #expect(try PatchApplier.inspect(patch: interleaved).controlLayout == "interleaved")
    }

    @Test func autoKeepsTheSmallerLayout() throws {
        let (old, new) = Self.manyTuples
        var interleavedOnly = ordered(.natural)
        interleavedOnly.splitControl = false
        let a = try roundTrip(old, new, interleavedOnly)
        let b = try roundTrip(old, new, split(.natural))
        let auto = try roundTrip(old, new, ordered(.natural))
        #expect(auto.count == min(a.count, b.count))
        #expect(try PatchApplier.inspect(patch: auto).controlLayout == (b.count < a.count ? "split" : "interleaved"))
    }

    /// Offset of the control stream in a phx patch, and its length.
    static func controlStream(_ patch: [UInt8]) -> Range<Int> {
        let length = patch[104..<112].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        return PhxHeader.size..<(PhxHeader.size + length)
    }

    @Test func aHostileDiagonalIsRejectedNamingTheTuple() throws {
        var rng = SeededGenerator(seed: 8)
        let old = TestData.structured(100_000, rng: &rng)
        let new = TestData.mutate(old, edits: 20, rng: &rng)
        var patch = try DiffEngine.makePatch(old: old, new: new, options: split(.natural, codec: .uncompressed))
        let info = try PatchApplier.inspect(patch: patch)
        let n = Int(info.controlTuples)
        let control = Self.controlStream(patch)
        // The top plane of the first tuple's end diagonal: a huge jump of the old cursor.
        patch[control.upperBound - n] = 0x7F
        #expect { _ = try PatchApplier.apply(old: old, patch: patch) } throws: { error in
            "\(error)".contains("control tuple 0") && "\(error)".contains("seeks the old cursor")
        }
    }

    @Test func aTruncatedSplitBlockIsRejected() throws {
        var rng = SeededGenerator(seed: 9)
        let old = TestData.structured(100_000, rng: &rng)
        let new = TestData.mutate(old, edits: 20, rng: &rng)
        let patch = try DiffEngine.makePatch(old: old, new: new, options: split(.natural, codec: .uncompressed))
        // Claim one tuple more than the block holds: the planes are then read short.
        var bigger = patch
        let count = UInt64(try PatchApplier.inspect(patch: patch).controlTuples) + 1
        HandMadePatch.setField(&bigger, at: 96, to: count, crcAt: HandMadePatch.phxCRCOffset)
        #expect { _ = try PatchApplier.apply(old: old, patch: bigger) } throws: { error in
            "\(error)".contains("control")
        }
    }
}
