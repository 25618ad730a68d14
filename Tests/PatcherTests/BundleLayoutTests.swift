import DiffEngine
import Foundation
import PatchFormat
import Patcher
import Testing
import TestSupport
import TreeIO

/// A bundle's two alternative codings (FORMAT.md, bundle flag bits 1 and 2): every data file's diff
/// pattern in old-context order, every data file's control tuples in the split layout. Each is made
/// both ways and the smaller kept, as for a `phx` file.
@Suite struct BundleLayoutTests {
    /// An "executable": random code with a 4-byte address after every call opcode (E8 00); the new
    /// version relocates every address. Its diff bytes are non-zero exactly after that key, so the
    /// old-context order codes them in a few runs where the natural order needs two per address.
    static func executable(rng: inout SeededGenerator, count: Int) -> (old: [UInt8], new: [UInt8]) {
        var old = rng.bytes(count)
        var new = old
        var i = 0
        while i + 6 <= count {
            old[i] = 0xE8
            old[i + 1] = 0
            new[i] = 0xE8
            new[i + 1] = 0
            new[i + 2] = old[i + 2]
            new[i + 3] = old[i + 3] &+ 0x10
            i += 48 + Int(rng.next() % 32)
        }
        return (old, new)
    }

    /// The trees of `BundleTests` (every kind of entry, added and copied files between the diffed ones,
    /// so a look-ahead reader must keep in step across files that add nothing), plus the executable.
    static func trees(_ dir: TemporaryDirectory) throws -> (old: String, new: String) {
        let (old, new) = try BundleTests.trees(dir)
        var rng = SeededGenerator(seed: 404)
        let exe = executable(rng: &rng, count: 400_000)
        try TreeSpec.build(old, [.file("bin/app", exe.old, mode: 0o755)])
        try TreeSpec.build(new, [.file("bin/app", exe.new, mode: 0o755)])
        return (old, new)
    }

    static let layouts: [(DiffOrder, Bool)] = [(.natural, false), (.natural, true), (.oldContext, false), (.oldContext, true)]

    @Test func everyLayoutRoundTripsAndAutoKeepsTheSmallerOfEach() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        var sizes: [String: UInt64] = [:]
        for (order, split) in Self.layouts {
            var options = BundleOptions(threads: 2)
            options.diffOrder = order
            options.splitControl = split
            let name = "\(order.rawValue)-\(split ? "split" : "interleaved")"
            let bundle = dir.file(name + ".bundle")
            sizes[name] = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle, options: options).bundleBytes
            let info = try BundleApplier.inspect(bundlePath: bundle)
            #expect(info.diffOrder == order.rawValue && info.controlLayout == (split ? "split" : "interleaved"), "\(name)")
            try expectBundleApplies(bundle, old: old, new: new, in: dir, "\(name)")
        }
        // Auto: the smaller control and the smaller diff-runs, so exactly the smallest of the four.
        let auto = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("auto.bundle"), options: BundleOptions(threads: 2))
        #expect(auto.bundleBytes == sizes.values.min(), "auto \(auto.bundleBytes), forced \(sizes)")
        // The executable's relocations: the old-context order wins, by much.
        let info = try BundleApplier.inspect(bundlePath: dir.file("auto.bundle"))
        #expect(info.diffOrder == "context")
        let natural = min(sizes["natural-split"]!, sizes["natural-interleaved"]!)
        #expect(auto.bundleBytes * 10 < natural * 9, "auto \(auto.bundleBytes) vs natural order \(natural)")
    }

    /// Many small changed files in old-context order, one after another: each file's blocks are small
    /// (the reader visits only their keys, on tables shared by all the files) and must not see the
    /// counts of the file before.
    @Test func manySmallFilesInOldContextOrder() throws {
        let dir = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 515)
        var oldFiles: [TreeSpec] = [], newFiles: [TreeSpec] = []
        for i in 0..<40 {
            let exe = Self.executable(rng: &rng, count: 3_000 + i * 500)
            oldFiles.append(.file("lib/m\(i).so", exe.old))
            newFiles.append(.file("lib/m\(i).so", exe.new))
        }
        // One large file among them: a block that sweeps every key, between small ones.
        let large = Self.executable(rng: &rng, count: 300_000)
        oldFiles.append(.file("lib/m20-large.so", large.old))
        newFiles.append(.file("lib/m20-large.so", large.new))
        let old = dir.file("old"), new = dir.file("new")
        try TreeSpec.build(old, oldFiles)
        try TreeSpec.build(new, newFiles)
        var options = BundleOptions(threads: 2)
        options.diffOrder = .oldContext
        let summary = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"), options: options)
        #expect(summary.changed == 41)
        let info = try BundleApplier.inspect(bundlePath: dir.file("b"))
        #expect(info.operations.filter { $0.op == "patch" }.count == 41, "every file diffed, none stored whole")
        try expectBundleApplies(dir.file("b"), old: old, new: new, in: dir)
    }

    /// The same through the command line: `--diff-order` and `--control` apply to bundles, and
    /// `inspect` shows what was chosen.
    @Test func theCommandLineChoosesAndShowsTheLayout() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        let binary = Run.product("phoenix-diff")
        let forced = try Run.process(binary, ["make", "-q", "--diff-order", "natural", "--control", "split", old, new, dir.file("b")])
        #expect(forced.status == 0, "\(forced.stderr)")
        let shown = try Run.process(binary, ["inspect", dir.file("b")])
        #expect(shown.stdout.contains("diff order     natural") && shown.stdout.contains("control        split"), "\(shown.stdout)")
        let auto = try Run.process(binary, ["make", "-q", old, new, dir.file("a")])
        #expect(auto.status == 0, "\(auto.stderr)")
        #expect(try Run.process(binary, ["inspect", dir.file("a")]).stdout.contains("diff order     context"))
        try TreeSpec.copy(old, dir.file("install"))
        let apply = try Run.process(binary, ["apply", dir.file("install"), dir.file("a")])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try TreeSpec.digest(dir.file("install")) == TreeSpec.digest(new))
    }

    /// The header's old entry count and new tree bytes (offsets 80 and 96) must be the trees': a
    /// bundle that declared 0 bytes (under any limit) and wrote more was applied.
    @Test func headerCountsMustBeTheTrees() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        let bundle = dir.file("b")
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle)
        let good = try POSIX.readFile(bundle)
        for (offset, field) in [(80, "old entry count"), (96, "new tree bytes")] {
            var bytes = good
            let value = HandMadePatch.field(bytes, at: offset)
            for wrong in [UInt64(0), value + 1] where wrong != value {
                HandMadePatch.setField(&bytes, at: offset, to: wrong, crcAt: HandMadePatch.bundleCRCOffset)
                let bad = dir.file("bad-\(offset)-\(wrong)")
                try bytes.withUnsafeBytes { try POSIX.writeNewFile(bad, $0, mode: 0o644) }
                let install = dir.file("install-\(offset)-\(wrong)")
                try TreeSpec.copy(old, install)
                #expect(throws: PatcherError.self, "\(field) \(wrong) instead of \(value)") {
                    _ = try BundleApplier.apply(directory: install, bundlePath: bad)
                }
                #expect(try TreeSpec.digest(install) == TreeSpec.digest(old), "\(field): the installation changed")
            }
        }
    }

    /// A reader from before these flags refuses such a bundle (unknown flag), and this reader refuses a
    /// flag it does not know.
    @Test func unknownFlagsAreRefused() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        let bundle = dir.file("b")
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle)
        var bytes = try POSIX.readFile(bundle)
        bytes[10] |= 0x08
        HandMadePatch.reseal(&bytes, crcAt: HandMadePatch.bundleCRCOffset)
        #expect(throws: PatchFormatError.unknownFlags(UInt16(bytes[10]) | UInt16(bytes[11]) << 8)) {
            _ = try BundleHeader.decode(bytes, fileLength: UInt64(bytes.count), limits: BundleLimits())
        }
    }
}
