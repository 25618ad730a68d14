#if canImport(Glibc)
import Glibc
#endif
import DiffEngine
import PatchFormat
@testable import Patcher
import Testing
import TestSupport
import TreeIO
import Foundation

/// With a second core, file applies from 4 MiB read and hash old on one thread while the apply uses
/// what is read (`OldInput`), and hash and write new on another (`WriteBehind`). The tests lower that
/// size to 0 so that small files take the same path: the same results and errors as the inline apply.
@Suite struct ConcurrentApplyTests {
    /// Old and new of a few MiB (several of `OldInput`'s 1 MiB chunks), with edits all along.
    static func pair(seed: UInt64) -> ([UInt8], [UInt8]) {
        var rng = SeededGenerator(seed: seed)
        let old = TestData.structured(3_500_000, rng: &rng)
        return (old, TestData.mutate(old, edits: 400, rng: &rng))
    }

    static func apply(_ dir: TemporaryDirectory, old: String = "old", threaded: Bool) throws -> ApplyResult {
        try OldInput.$besideFrom.withValue(threaded ? 0 : .max) {
            try PatchApplier.apply(oldPath: dir.file(old), patchPath: dir.file("patch"), outputPath: dir.file("new"))
        }
    }

    static var orders: [DiffOptions] {
        var natural = DiffOptions()
        natural.diffOrder = .natural
        var context = DiffOptions(codec: .zstd)
        context.diffOrder = .oldContext
        return [natural, context, DiffOptions(format: .bsdiff)]
    }

    @Test(arguments: orders)
    func threadedAndInlineAppliesWriteTheSameFile(options: DiffOptions) throws {
        guard StreamReading.readAhead else { return }
        let dir = try TemporaryDirectory()
        let (old, new) = Self.pair(seed: 71)
        try dir.write("old", old)
        try dir.write("patch", try DiffEngine.makePatch(old: old, new: new, options: options))
        let threaded = try Self.apply(dir, threaded: true)
        #expect(try dir.read("new") == new)
        let inline = try Self.apply(dir, threaded: false)
        #expect(try dir.read("new") == new)
        #expect(threaded == inline)
        #expect(threaded.newSHA256 == Hex.encode(SHA256Hasher.hash(new)))
        #expect(try dir.listing() == ["new", "old", "patch"])
    }

    /// Whatever else goes wrong with a wrong old file (a wrong result; a damaged stream found while
    /// the old file is still being read), the error is that the old file is not the patch's, and
    /// nothing is written.
    @Test(arguments: [(0, false), (1_000_000, false), (3_499_999, false), (1_000_000, true)])
    func aWrongOldFileIsTheErrorReported(flippedAt: Int, damagedPatch: Bool) throws {
        let dir = try TemporaryDirectory()
        let (old, new) = Self.pair(seed: 72)
        var patch = try DiffEngine.makePatch(old: old, new: new)
        if damagedPatch {
            // The last stream's last bytes: its decoder fails, whichever thread reads it.
            for i in (patch.count - 8)..<patch.count { patch[i] ^= 0xFF }
            try dir.write("old", old)
            try dir.write("patch", patch)
            #expect(throws: PatcherError.self) { _ = try Self.apply(dir, threaded: true) }
            try FileManager.default.removeItem(atPath: dir.file("old"))
        }
        try dir.write("patch", patch)
        var wrong = old
        wrong[flippedAt] ^= 0x5A
        try dir.write("wrong", wrong)
        for threaded in [true, false] {
            #expect(throws: PatcherError.self) {
                do {
                    _ = try Self.apply(dir, old: "wrong", threaded: threaded)
                } catch let e as PatcherError {
                    guard case .oldChecksumMismatch(let path, _, _) = e, path == dir.file("wrong") else {
                        Issue.record("threaded \(threaded): \(e)")
                        throw e
                    }
                    throw e
                }
            }
            #expect(try dir.listing() == ["patch", "wrong"])
        }
    }

    /// `need(end)` returns only once the bytes before `end` are in the buffer: checked right after
    /// each call, from the first megabyte on, while the loader is still reading.
    @Test func oldBytesAreInPlaceOnceNeeded() throws {
        let dir = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 73)
        let bytes = rng.bytes(24 << 20)
        try dir.write("old", bytes)
        let digest = SHA256Hasher.hash(bytes)
        let old = try OldInput(path: dir.file("old"), expectedSize: UInt64(bytes.count), expectedSHA256: digest, background: true)
        var mismatches = 0
        bytes.withUnsafeBytes { expected in
            for end in stride(from: 1 << 16, through: bytes.count, by: 1 << 19) {
                do { try old.need(end) } catch { Issue.record("need(\(end)): \(error)"); return }
                let tail = end - (1 << 16)
                if memcmp(old.bytes.baseAddress! + tail, expected.baseAddress! + tail, 1 << 16) != 0 { mismatches += 1 }
            }
        }
        #expect(mismatches == 0)
        #expect(try old.verify() == digest)
        #expect(old.bytes.elementsEqual(bytes))
    }

    /// A file cut short while the loader reads it: the bytes past the cut are never handed out, the
    /// wait for them ends with the read's error (no hang), and the verdict is that error.
    @Test(.timeLimit(.minutes(1)))
    func anOldFileCutShortWhileLoadingFailsTheWaitAndTheVerdict() throws {
        // On one core the loader could read it all before the cut.
        guard StreamReading.readAhead else { return }
        let dir = try TemporaryDirectory()
        // 64 MiB: the loader needs milliseconds for it; the cut comes microseconds after it starts.
        let size = 64 << 20
        let path = dir.file("old")
        let fd = open(path, O_CREAT | O_WRONLY, 0o644)
        #expect(fd >= 0)
        var rng = SeededGenerator(seed: 77)
        let block = rng.bytes(1 << 20)
        for _ in 0..<(size >> 20) { _ = block.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) } }
        close(fd)
        let old = try OldInput(path: path, expectedSize: UInt64(size), expectedSHA256: [UInt8](repeating: 0, count: 32),
                               background: true)
        #expect(truncate(path, 1 << 20) == 0)
        func isShrank(_ error: any Error) -> Bool {
            guard case PatcherError.io(let operation, let p, _, _) = error else { return false }
            return operation == "file shrank while reading:" && p == path
        }
        #expect(performing: { try old.need(size) }, throws: isShrank)
        #expect(performing: { try old.verify() }, throws: isShrank)
    }

    @Test(arguments: [true, false])
    func aShortOrChangedOldFileIsRefused(background: Bool) throws {
        let dir = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 74)
        let bytes = rng.bytes(5 << 20)
        try dir.write("old", bytes)
        #expect {
            _ = try OldInput(path: dir.file("old"), expectedSize: UInt64(bytes.count + 1), expectedSHA256: nil, background: background)
        } throws: { error in
            guard case PatcherError.oldSizeMismatch(_, let expected, let actual) = error else { return false }
            return expected == UInt64(bytes.count + 1) && actual == UInt64(bytes.count)
        }
        var other = SHA256Hasher.hash(bytes)
        other[0] ^= 1
        let expectedDigest = other
        #expect {
            let old = try OldInput(path: dir.file("old"), expectedSize: nil, expectedSHA256: expectedDigest, background: background)
            try old.need(bytes.count)
            try old.verify()
        } throws: { error in
            guard case PatcherError.oldChecksumMismatch(_, let expected, let actual) = error else { return false }
            return expected == Hex.encode(expectedDigest) && actual == Hex.encode(SHA256Hasher.hash(bytes))
        }
    }
}

/// Bundles patch their large files the same way (`OldInput` for the installed file, `WriteBehind`).
@Suite struct ConcurrentBundleApplyTests {
    static func trees(_ dir: TemporaryDirectory) throws -> (old: String, new: String) {
        var rng = SeededGenerator(seed: 76)
        let a = TestData.structured(2_500_000, rng: &rng), z = TestData.structured(1_500_000, rng: &rng)
        try TreeSpec.build(dir.file("old"), [.file("a.bin", a), .file("z.bin", z), .text("notes.txt", "v1")])
        try TreeSpec.build(dir.file("new"), [.file("a.bin", TestData.mutate(a, edits: 200, rng: &rng)),
                                             .file("z.bin", TestData.mutate(z, edits: 200, rng: &rng)),
                                             .text("notes.txt", "v2")])
        return (dir.file("old"), dir.file("new"))
    }

    @Test func threadedAndInlineBundleAppliesGiveTheSameTree() throws {
        guard StreamReading.readAhead else { return }
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"))
        for threaded in [true, false] {
            let install = dir.file(threaded ? "threaded" : "inline")
            try TreeSpec.copy(old, install)
            let result = try OldInput.$besideFrom.withValue(threaded ? 0 : .max) {
                try BundleApplier.apply(directory: install, bundlePath: dir.file("b"))
            }
            #expect(result.filesWritten >= 2)
            #expect(try TreeSpec.digest(install) == TreeSpec.digest(new), "threaded \(threaded)")
        }
    }

    /// An installed file that changes after the installation was checked, before it is patched, is
    /// caught by its own digest: the update is refused naming it, and the installation is untouched
    /// but for that change.
    @Test(arguments: [true, false])
    func aSourceFileChangedDuringTheUpdateIsCaught(threaded: Bool) throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"))
        let install = dir.file("app")
        try TreeSpec.copy(old, install)
        let target = install + "/z.bin"
        let changed = Int32(try dir.read("old/z.bin")[1000] ^ 0x20)
        let options = BundleApplyOptions(progress: { phase, _ in
            // Once staging has begun (a.bin comes first), change a byte of z.bin, keeping its size.
            guard phase == "stage", let h = fopen(target, "r+") else { return }
            defer { fclose(h) }
            fseek(h, 1000, SEEK_SET)
            fputc(changed, h)
        })
        #expect {
            try OldInput.$besideFrom.withValue(threaded ? 0 : .max) {
                _ = try BundleApplier.apply(directory: install, bundlePath: dir.file("b"), options: options)
            }
        } throws: { error in
            guard case PatcherError.installationMismatch(_, let detail) = error else { return false }
            return detail == "z.bin changed during the update"
        }
        #expect(try dir.read("app/notes.txt") == Array("v1".utf8))
        #expect(try dir.read("app/a.bin") == dir.read("old/a.bin"))
        #expect(!POSIX.exists(dir.file(".app.phoenix/staging/z.bin")))
    }
}

/// A bundle's apply reports progress inside a large file (every 4 MiB written), not only when a file
/// is done: an update is often one large file, whose progress bar otherwise stood still to the end.
@Suite struct BundleProgressTests {
    @Test func progressMovesInsideALargeFile() throws {
        let dir = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 77)
        let big = rng.bytes(13 << 20)
        try TreeSpec.build(dir.file("old"), [.file("big.bin", big)])
        try TreeSpec.build(dir.file("new"), [.file("big.bin", TestData.mutate(big, edits: 50, rng: &rng))])
        _ = try BundleMaker.make(oldRoot: dir.file("old"), newRoot: dir.file("new"), to: dir.file("b"))
        try TreeSpec.copy(dir.file("old"), dir.file("app"))
        let seen = LockedBox<[Double]>([])
        let options = BundleApplyOptions(progress: { phase, f in
            if phase == "stage" { seen.mutate { $0.append(f) } }
        })
        _ = try BundleApplier.apply(directory: dir.file("app"), bundlePath: dir.file("b"), options: options)
        #expect(try TreeSpec.digest(dir.file("app")) == TreeSpec.digest(dir.file("new")))
        let values = seen.value
        #expect(values.filter { $0 > 0 && $0 < 1 }.count >= 3, "stage progress: \(values)")
        #expect(values == values.sorted() && values.last == 1, "stage progress: \(values)")
    }
}

/// `AtomicFileWriter(behind: true)` hashes and writes on another thread: the same file and digest.
@Suite struct WriteBehindTests {
    @Test func writingBehindGivesTheSameFileAndDigest() throws {
        let dir = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 75)
        // Pieces from 1 byte to 3 MiB: under, at and over the 1 MiB buffers.
        var pieces: [[UInt8]] = []
        for i in 0..<60 {
            let size = [1, 4096, 1 << 20, (1 << 20) + 1, 3 << 20, Int(rng.next() % 300_000)][i % 6]
            pieces.append(rng.bytes(size))
        }
        let all = pieces.flatMap { $0 }
        var digests: [[UInt8]] = []
        for behind in [true, false] {
            let name = behind ? "behind" : "inline"
            let w = try AtomicFileWriter(destination: dir.file(name), behind: behind)
            for p in pieces { try p.withUnsafeBytes { try w.write($0) } }
            digests.append(try w.digest())
            try w.commit()
            #expect(try dir.read(name) == all, "\(name)")
            #expect(w.bytesWritten == UInt64(all.count))
        }
        #expect(digests[0] == SHA256Hasher.hash(all))
        #expect(digests[1] == digests[0])
    }
}
