import DiffEngine
import PatchFormat
@testable import Patcher
import Testing
import TestSupport

/// The apply reads its streams ahead on other threads when it has a second core (`StreamReading`):
/// every patch, damaged ones included, must give the same result, or the same error, either way.
@Suite struct ReadAheadApplyTests {
    static func outcome(_ old: [UInt8], _ patch: [UInt8], readAhead: Bool) -> String {
        do {
            let new = try PatchApplier.apply(old: old, patch: patch, readAhead: readAhead)
            return "ok \(SHA256Hasher.hash(new).prefix(8))"
        } catch {
            return "\(error)"
        }
    }

    @Test(arguments: [
        DiffOptions(), DiffOptions(codec: .zstd), DiffOptions(codec: .bzip2), DiffOptions(format: .bsdiff),
    ])
    func damagedPatchesFailTheSameWayReadAheadOrNot(options: DiffOptions) throws {
        var rng = SeededGenerator(seed: 611)
        let old = TestData.structured(400_000, rng: &rng)
        let new = TestData.mutate(old, edits: 300, rng: &rng)
        let patch = try DiffEngine.makePatch(old: old, new: new, options: options)
        #expect(Self.outcome(old, patch, readAhead: true) == "ok \(SHA256Hasher.hash(new).prefix(8))")
        var failures = 0
        for trial in 0..<120 {
            var bad = patch
            switch trial % 3 {
            case 0: bad = Array(bad.prefix(Int(rng.next() % UInt64(bad.count))))
            default:
                for _ in 0..<(1 + trial % 4) {
                    // Past the header's checksums, into the streams, where the decoders find the damage.
                    let at = 100 + Int(rng.next() % UInt64(bad.count - 100))
                    bad[at] ^= UInt8(1 + rng.next() % 255)
                }
            }
            let inline = Self.outcome(old, bad, readAhead: false)
            let ahead = Self.outcome(old, bad, readAhead: true)
            #expect(ahead == inline, "trial \(trial)")
            if !inline.hasPrefix("ok") { failures += 1 }
        }
        #expect(failures > 60, "only \(failures) of 120 damaged patches failed")
    }
}

/// File applies open the streams (decoding ahead on their threads) before the old file is read and
/// checked: a wrong old file must still be refused cleanly, with nothing written and no thread left.
@Suite struct EarlyStreamTests {
    @Test(.timeLimit(.minutes(1)))
    func aWrongOldFileIsRefusedWhileStreamsDecodeAhead() throws {
        var rng = SeededGenerator(seed: 650)
        let old = TestData.structured(2_000_000, rng: &rng)
        // A megabyte of new random bytes: an extra stream far over the read-ahead threshold.
        let new = TestData.mutate(old, edits: 50, rng: &rng) + rng.bytes(1 << 20)
        let dir = try TemporaryDirectory()
        let patch = try DiffEngine.makePatch(old: old, new: new)
        let info = try PatchApplier.inspect(patch: patch)
        #expect(info.extraStreamSize >= StreamReading.minimumLength, "extra stream of \(info.extraStreamSize) bytes")
        try dir.write("patch", patch)
        var wrong = old
        wrong[1_234_567] ^= 1
        try dir.write("wrong", wrong)
        for _ in 0..<20 {
            #expect(throws: PatcherError.self) {
                try PatchApplier.apply(oldPath: dir.file("wrong"), patchPath: dir.file("patch"), outputPath: dir.file("out"))
            }
            #expect(try dir.listing() == ["patch", "wrong"])
        }
        try dir.write("old", old)
        try PatchApplier.apply(oldPath: dir.file("old"), patchPath: dir.file("patch"), outputPath: dir.file("out"))
        #expect(try dir.read("out") == new)
    }
}
