import DiffEngine
import Foundation
import PatchFormat
import Patcher
import Testing
import TestSupport

/// Apply on real files: atomic replacement, permissions, and nothing left behind on failure.
@Suite struct FileApplyTests {
    static func pair(seed: UInt64) -> ([UInt8], [UInt8]) {
        var rng = SeededGenerator(seed: seed)
        let old = TestData.structured(300_000, rng: &rng)
        return (old, TestData.mutate(old, edits: 25, rng: &rng))
    }

    @Test(arguments: [PatchKind.phx, .bsdiff])
    func applyWritesTheNewFile(kind: PatchKind) throws {
        let dir = try TemporaryDirectory()
        let (old, new) = Self.pair(seed: 1)
        try dir.write("old", old)
        try dir.write("patch", try DiffEngine.makePatch(old: old, new: new, options: DiffOptions(format: kind)))
        let result = try PatchApplier.apply(oldPath: dir.file("old"), patchPath: dir.file("patch"), outputPath: dir.file("new"))
        #expect(try dir.read("new") == new)
        #expect(result.newSize == UInt64(new.count))
        #expect(result.newSHA256 == Hex.encode(SHA256Hasher.hash(new)))
        #expect(result.verified == (kind == .phx))
        #expect(try dir.listing() == ["new", "old", "patch"])
    }

    @Test func inPlaceKeepsPermissions() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = Self.pair(seed: 2)
        let target = try dir.write("app", old)
        chmod(target, 0o751)
        try dir.write("patch", try DiffEngine.makePatch(old: old, new: new))
        try PatchApplier.applyInPlace(path: target, patchPath: dir.file("patch"))
        #expect(try dir.read("app") == new)
        var st = stat()
        stat(target, &st)
        #expect(st.st_mode & 0o7777 == 0o751)
        #expect(try dir.listing() == ["app", "patch"])
    }

    /// A NEW that exists keeps its own mode, as with cp (a private 0600 file stays private); a NEW
    /// that does not takes OLD's.
    @Test func aReplacedOutputKeepsItsMode() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = Self.pair(seed: 3)
        let source = try dir.write("old", old)
        chmod(source, 0o755)
        try dir.write("patch", try DiffEngine.makePatch(old: old, new: new))
        let existing = try dir.write("private", [1, 2, 3])
        chmod(existing, 0o600)
        _ = try PatchApplier.apply(oldPath: source, patchPath: dir.file("patch"), outputPath: existing)
        _ = try PatchApplier.apply(oldPath: source, patchPath: dir.file("patch"), outputPath: dir.file("fresh"))
        #expect(try dir.read("private") == new && dir.read("fresh") == new)
        var st = stat()
        stat(existing, &st)
        #expect(st.st_mode & 0o7777 == 0o600)
        stat(dir.file("fresh"), &st)
        #expect(st.st_mode & 0o7777 == 0o755)
    }

    @Test func failedInPlaceApplyLeavesTheTargetUntouched() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = Self.pair(seed: 3)
        var patch = try DiffEngine.makePatch(old: old, new: new)
        patch[patch.count - 5] ^= 0x10  // corrupt the extra stream
        let target = try dir.write("app", old)
        try dir.write("patch", patch)
        #expect(throws: PatcherError.self) { try PatchApplier.applyInPlace(path: target, patchPath: dir.file("patch")) }
        #expect(try dir.read("app") == old)
        #expect(try dir.listing() == ["app", "patch"], "a temporary file was left behind")
    }

    @Test func failedApplyDoesNotReplaceAnExistingOutput() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = Self.pair(seed: 4)
        try dir.write("old", old)
        try dir.write("new", Array("previous contents".utf8))
        // A BSDIFF40 patch has no result checksum; cut its extra stream so that apply fails late.
        let patch = try DiffEngine.makePatch(old: old, new: new, options: DiffOptions(format: .bsdiff))
        try dir.write("patch", Array(patch.dropLast(3)))
        #expect(throws: PatcherError.self) {
            try PatchApplier.apply(oldPath: dir.file("old"), patchPath: dir.file("patch"), outputPath: dir.file("new"))
        }
        #expect(try dir.read("new") == Array("previous contents".utf8))
        #expect(try dir.listing() == ["new", "old", "patch"])
    }

    @Test func wrongSourceFileIsRefusedBeforeWriting() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = Self.pair(seed: 5)
        try dir.write("patch", try DiffEngine.makePatch(old: old, new: new))
        var other = old
        other[10] &+= 1
        try dir.write("other", other)
        #expect {
            try PatchApplier.apply(oldPath: dir.file("other"), patchPath: dir.file("patch"), outputPath: dir.file("out"))
        } throws: { error in
            guard case PatcherError.oldChecksumMismatch(let path, _, _) = error else { return false }
            return path.hasSuffix("/other")
        }
        #expect(try dir.listing() == ["other", "patch"])
    }

    @Test func missingFilesAreIOErrorsNamingThePath() throws {
        let dir = try TemporaryDirectory()
        #expect {
            try PatchApplier.apply(oldPath: dir.file("old"), patchPath: dir.file("nope"), outputPath: dir.file("out"))
        } throws: { error in
            guard case PatcherError.io(_, let path, let code, _) = error else { return false }
            return path.hasSuffix("/nope") && code == ENOENT
        }
    }

    @Test func progressIsReportedUpToTheTotal() throws {
        let dir = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 6)
        let old = rng.bytes(9 << 20)
        let new = TestData.mutate(old, edits: 10, rng: &rng)
        try dir.write("old", old)
        try dir.write("patch", try DiffEngine.makePatch(old: old, new: new))
        let seen = LockedBox<[UInt64]>([])
        let options = ApplyOptions { written, total in
            #expect(total == UInt64(new.count))
            seen.mutate { $0.append(written) }
        }
        try PatchApplier.apply(oldPath: dir.file("old"), patchPath: dir.file("patch"), outputPath: dir.file("new"), options: options)
        let values = seen.value
        #expect(values.count >= 2)
        #expect(values == values.sorted())
        #expect(values.last == UInt64(new.count))
    }
}

final class LockedBox<T>: @unchecked Sendable {
    private var stored: T
    private let lock = NSLock()
    init(_ v: T) { stored = v }
    var value: T { lock.lock(); defer { lock.unlock() }; return stored }
    func mutate(_ f: (inout T) -> Void) { lock.lock(); f(&stored); lock.unlock() }
}
