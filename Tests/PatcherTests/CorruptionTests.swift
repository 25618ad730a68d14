import DiffEngine
import PatchFormat
import Patcher
import Testing
import TestSupport

/// Every truncated or bit-flipped patch must be rejected with an error, never crash, and never yield a
/// wrong file. A flip inside a compressed stream may leave its output unchanged (an unused bit of a
/// frame header); then the right file is the right answer. Every flip of a phx header byte is rejected
/// (its CRC), and a phx result is only accepted when its SHA-256 matches.
@Suite struct CorruptionTests {
    static let old: [UInt8] = {
        var rng = SeededGenerator(seed: 9001)
        return TestData.structured(40_000, rng: &rng)
    }()
    static let new: [UInt8] = {
        var rng = SeededGenerator(seed: 9002)
        return TestData.mutate(old, edits: 30, rng: &rng)
    }()

    static let variants: [DiffOptions] = [
        DiffOptions(format: .phx, codec: .zstd), DiffOptions(format: .phx, codec: .bzip2),
        DiffOptions(format: .phx, codec: .zlib), DiffOptions(format: .phx, codec: .uncompressed),
        DiffOptions(format: .bsdiff),
        { var o = DiffOptions(format: .phx, codec: .uncompressed); o.diffOrder = .oldContext; return o }(),
        { var o = DiffOptions(format: .phx, codec: .zstd); o.diffOrder = .oldContext; return o }(),
    ]

    @Test(arguments: variants)
    func everyTruncationIsRejected(options: DiffOptions) throws {
        let patch = try DiffEngine.makePatch(old: Self.old, new: Self.new, options: options)
        // Every length for the first 300 bytes, then a spread up to the last byte.
        var lengths = Set(0..<min(300, patch.count))
        var l = 300
        while l < patch.count { lengths.insert(l); l += max(1, patch.count / 400) }
        lengths.insert(patch.count - 1)
        for n in lengths.sorted() {
            #expect(throws: PatcherError.self, "\(options.format)/\(options.codec) cut to \(n) of \(patch.count) bytes") {
                _ = try PatchApplier.apply(old: Self.old, patch: Array(patch.prefix(n)))
            }
        }
    }

    @Test(arguments: variants)
    func bitFlipsAreRejectedOrHarmless(options: DiffOptions) throws {
        let patch = try DiffEngine.makePatch(old: Self.old, new: Self.new, options: options)
        var rng = SeededGenerator(seed: 77 &+ UInt64(options.codec.rawValue))
        var offsets = Array(0..<min(160, patch.count))  // every header byte
        for _ in 0..<400 { offsets.append(Int(rng.next() % UInt64(patch.count))) }
        for offset in offsets {
            var bad = patch
            bad[offset] ^= UInt8(1) << UInt8(rng.next() % 8)
            do {
                let result = try PatchApplier.apply(old: Self.old, patch: bad)
                #expect(result == Self.new, "\(options.format)/\(options.codec): flip at \(offset) produced a wrong file")
                if options.format == .phx && offset < PhxHeader.size {
                    Issue.record("\(options.codec): flip in header byte \(offset) went unnoticed")
                }
            } catch is PatcherError {
                // Rejected: what we want for any flip that changes the meaning.
            }
        }
    }

    @Test func trailingGarbageIsRejected() throws {
        for options in Self.variants {
            let patch = try DiffEngine.makePatch(old: Self.old, new: Self.new, options: options)
            #expect(throws: PatcherError.self, "\(options.format)/\(options.codec)") {
                _ = try PatchApplier.apply(old: Self.old, patch: patch + [0])
            }
            #expect(throws: PatcherError.self) { _ = try PatchApplier.apply(old: Self.old, patch: patch + Array("garbage".utf8)) }
        }
    }

    /// The header's count of literal bytes (offset 144, `Rl`) must be what the runs use, in natural
    /// order too (only the old-context reader used to compare it).
    @Test func aWrongLiteralCountIsRejectedInEitherOrder() throws {
        for order in [DiffOrder.natural, .oldContext] {
            var options = DiffOptions(format: .phx, codec: .zstd)
            options.diffOrder = order
            let patch = try DiffEngine.makePatch(old: Self.old, new: Self.new, options: options)
            let rl = HandMadePatch.field(patch, at: 144)
            #expect(rl > 0, "the test data has literal bytes")
            for wrong in [UInt64(0), rl &- 1, rl + 1] where wrong != rl {
                var bad = patch
                HandMadePatch.setField(&bad, at: 144, to: wrong, crcAt: HandMadePatch.phxCRCOffset)
                #expect(throws: PatcherError.self, "\(order): Rl \(wrong) instead of \(rl)") {
                    _ = try PatchApplier.apply(old: Self.old, patch: bad)
                }
            }
        }
    }

    @Test func wrongMagicIsRejected() {
        #expect(throws: PatcherError.format(.badMagic(found: Array("GIF89a\u{0}\u{0}".utf8)))) {
            _ = try PatchApplier.apply(old: Self.old, patch: Array("GIF89a\u{0}\u{0}".utf8) + [UInt8](repeating: 0, count: 200))
        }
    }

    @Test func wrongOldFileIsAChecksumMismatch() throws {
        let patch = try DiffEngine.makePatch(old: Self.old, new: Self.new)
        var other = Self.old
        other[100] ^= 1
        #expect {
            _ = try PatchApplier.apply(old: other, patch: patch)
        } throws: { error in
            guard case PatcherError.oldChecksumMismatch = error else { return false }
            return true
        }
        #expect {
            _ = try PatchApplier.apply(old: Array(Self.old.dropLast()), patch: patch)
        } throws: { error in
            guard case PatcherError.oldSizeMismatch(_, let expected, let actual) = error else { return false }
            return expected == UInt64(Self.old.count) && actual == expected - 1
        }
    }
}
