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
    DiffOptions(format: .phx, codec: .uncompressed),
    DiffOptions(format: .phx, codec: .zstd, level: 1),
    DiffOptions(format: .bsdiff),
]

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
    }
}
