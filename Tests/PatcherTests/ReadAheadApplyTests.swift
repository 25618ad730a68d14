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
