import DiffEngine
import Foundation
import PatchFormat
import Patcher
import Testing
import TestSupport

/// Interop with the reference implementations: Debian's bsdiff/bspatch 4.3 and Python's bsdiff4.
/// `.ci/run` installs both; a missing tool fails these tests rather than skipping them silently.
@Suite struct InteropTests {
    static func tool(_ name: String) throws -> String {
        guard let path = Run.which(name) else {
            Issue.record("\(name) is not installed (apt-get install bsdiff); .ci/run installs it")
            throw CancellationError()
        }
        return path
    }

    static let inputs: [(String, [UInt8], [UInt8])] = {
        var rng = SeededGenerator(seed: 31337)
        let a = TestData.structured(250_000, rng: &rng)
        let b = rng.bytes(70_000)
        return [
            ("edited", a, TestData.mutate(a, edits: 40, rng: &rng)),
            ("unrelated", b, rng.bytes(50_000)),
            ("empty old", [], b),
            ("empty new", b, []),
            ("zeros", [UInt8](repeating: 0, count: 100_000), [UInt8](repeating: 0, count: 120_000)),
        ]
    }()

    @Test func debianBspatchAppliesOurPatches() throws {
        let bspatch = try Self.tool("bspatch")
        for (name, old, new) in Self.inputs {
            let dir = try TemporaryDirectory()
            try dir.write("old", old)
            let patch = try DiffEngine.makePatch(old: old, new: new, options: DiffOptions(format: .bsdiff))
            try dir.write("patch", patch)
            let r = try Run.process(bspatch, [dir.file("old"), dir.file("new"), dir.file("patch")])
            #expect(r.status == 0, "\(name): bspatch failed: \(r.stderr)")
            #expect(try dir.read("new") == new, "\(name): bspatch produced a different file")
        }
    }

    @Test func weApplyDebianBsdiffPatches() throws {
        let bsdiff = try Self.tool("bsdiff")
        // Debian's bsdiff cannot read an empty file (it mmaps its inputs), so those pairs are ours only.
        for (name, old, new) in Self.inputs where !old.isEmpty && !new.isEmpty {
            let dir = try TemporaryDirectory()
            try dir.write("old", old)
            try dir.write("new", new)
            let r = try Run.process(bsdiff, [dir.file("old"), dir.file("new"), dir.file("patch")])
            #expect(r.status == 0, "\(name): bsdiff failed: \(r.stderr)")
            let patch = try dir.read("patch")
            #expect(try PatchApplier.apply(old: old, patch: patch) == new, "\(name)")
            // And through the file path, streaming.
            try PatchApplier.apply(oldPath: dir.file("old"), patchPath: dir.file("patch"), outputPath: dir.file("out"))
            #expect(try dir.read("out") == new, "\(name)")
        }
    }

    @Test func weApplyPythonBsdiff4Patches() throws {
        let python = try Self.tool("python3")
        let probe = try Run.process(python, ["-c", "import bsdiff4"])
        guard probe.status == 0 else {
            Issue.record("Python's bsdiff4 is not installed (pip install bsdiff4); .ci/run installs it")
            return
        }
        for (name, old, new) in Self.inputs {
            let dir = try TemporaryDirectory()
            try dir.write("old", old)
            try dir.write("new", new)
            let r = try Run.process(python, ["-c", "import bsdiff4, sys; bsdiff4.file_diff(sys.argv[1], sys.argv[2], sys.argv[3])",
                                             dir.file("old"), dir.file("new"), dir.file("patch")])
            #expect(r.status == 0, "\(name): bsdiff4 failed: \(r.stderr)")
            #expect(try PatchApplier.apply(old: old, patch: try dir.read("patch")) == new, "\(name)")
        }
    }

    @Test func ourBsdiffFormatMatchesDebianBsdiffInSize() throws {
        // Same algorithm, same container: our BSDIFF40 patches should not be larger than bsdiff 4.3's by
        // more than a few percent (the 9-gram filter changes a few match decisions).
        let bsdiff = try Self.tool("bsdiff")
        let (_, old, new) = Self.inputs[0]
        let dir = try TemporaryDirectory()
        try dir.write("old", old)
        try dir.write("new", new)
        _ = try Run.process(bsdiff, [dir.file("old"), dir.file("new"), dir.file("patch")])
        let theirs = try dir.read("patch").count
        let ours = try DiffEngine.makePatch(old: old, new: new, options: DiffOptions(format: .bsdiff)).count
        #expect(Double(ours) <= Double(theirs) * 1.05, "ours \(ours) bytes, bsdiff \(theirs)")
    }
}
