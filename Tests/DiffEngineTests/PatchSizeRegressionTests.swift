@testable import DiffEngine
import PatchFormat
import Testing
import TestSupport

/// Catches regressions in patch size: exact byte counts on small fixed inputs. When the engine gets
/// better, lower the numbers in the same commit (and say so in its message); a larger patch fails.
@Suite struct PatchSizeRegressionTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let options: DiffOptions
        let expected: Int
        var testDescription: String { name }
    }

    static let inputs: (old: [UInt8], new: [UInt8]) = {
        var rng = SeededGenerator(seed: 424242)
        let old = TestData.structured(300_000, rng: &rng)
        return (old, TestData.mutate(old, edits: 60, rng: &rng))
    }()

    static let cases: [Case] = [
        Case(name: "phx xz (default: hash chains)", options: DiffOptions(), expected: 2401),
        Case(name: "phx zstd, hash chains", options: DiffOptions(codec: .zstd), expected: 2417),
        Case(name: "bsdiff, hash chains", options: DiffOptions(format: .bsdiff), expected: 2861),
        Case(name: "phx xz, suffix array", options: suffixArray(DiffOptions()), expected: 2402),
        Case(name: "phx zstd, suffix array", options: suffixArray(DiffOptions(codec: .zstd)), expected: 2416),
        Case(name: "phx bzip2, suffix array", options: suffixArray(DiffOptions(codec: .bzip2)), expected: 2994),
        Case(name: "bsdiff, suffix array", options: suffixArray(DiffOptions(format: .bsdiff)), expected: 2847),
        Case(name: "phx zstd, context order, suffix array", options: suffixArray(ordered(.oldContext)), expected: 3283),
    ]

    static func suffixArray(_ options: DiffOptions) -> DiffOptions {
        var o = options
        o.index = .suffixArray
        return o
    }

    @Test(arguments: cases)
    func patchSizeDoesNotGrow(_ c: Case) throws {
        let size = try DiffEngine.makePatch(old: Self.inputs.old, new: Self.inputs.new, options: c.options).count
        Self.check(c.name, size, c.expected)
    }

    /// The hash chains with block matches (`BlockMatches`, used from 1 MiB of old; here from 64 KiB).
    @Test func patchSizeWithBlockMatchesDoesNotGrow() throws {
        let size = try BlockMatches.$minimumOld.withValue(1 << 16) {
            try DiffEngine.makePatch(old: Self.inputs.old, new: Self.inputs.new).count
        }
        Self.check("phx xz, hash chains after block matches", size, 2401)
    }

    static func check(_ name: String, _ size: Int, _ expected: Int) {
        print("PatchSizeRegressionTests \(name): \(size) bytes (pinned \(expected))")
        #expect(size <= expected, "\(name): the patch grew from \(expected) to \(size) bytes")
        #expect(size >= expected, "\(name): the patch shrank from \(expected) to \(size) bytes: lower the pinned number")
    }
}
