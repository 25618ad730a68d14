@testable import DiffEngine
import Foundation
import PatchFormat
import Patcher
import Testing
import TestSupport
import TreeIO

/// `makePatchFile`'s in-memory engine, which maps new (its pages dropped behind each pass) rather
/// than reading it: the same patch as `makePatch` on the bytes, and an error, not a wrong patch, when
/// new changes while the patch is made.
@Suite struct PatchFileTests {
    static func pair(seed: UInt64, size: Int) -> (old: [UInt8], new: [UInt8]) {
        var rng = SeededGenerator(seed: seed)
        let old = TestData.structured(size, rng: &rng)
        return (old, TestData.mutate(old, edits: 12, rng: &rng))
    }

    /// Over several 1 MiB matching chunks and with the block matches on (from 64 KiB of old, scanned
    /// in 512 KiB parts, whose pages of new are dropped behind the scan), for both indexes, one and two
    /// threads: byte for byte `makePatch`'s patch.
    @Test(arguments: [MatchIndexKind.hashChains, .suffixArray], [1, 2])
    func theSamePatchAsFromMemory(_ index: MatchIndexKind, threads: Int) throws {
        let (old, new) = Self.pair(seed: 21, size: 2_600_000)
        var options = DiffOptions(threads: threads)
        options.index = index
        try BlockMatches.$minimumOld.withValue(1 << 16) { try BlockMatches.$part.withValue(1 << 19) {
            let dir = try TemporaryDirectory()
            let summary = try DiffEngine.makePatchFile(oldPath: try dir.write("old", old), newPath: try dir.write("new", new),
                                                       to: dir.file("patch"), options: options)
            let patch = try dir.read("patch")
            #expect(!summary.lowMemory && summary.newBytes == UInt64(new.count) && summary.patchBytes == UInt64(patch.count))
            #expect(patch == (try DiffEngine.makePatch(old: old, new: new, options: options)))
            #expect(try PatchApplier.apply(old: old, patch: patch) == new)
        } }
    }

    /// An empty new file (nothing to map) and an empty old one.
    @Test func emptyFiles() throws {
        let dir = try TemporaryDirectory()
        let some: [UInt8] = Array("phoenix".utf8)
        for (old, new) in [(some, [UInt8]()), ([UInt8](), some), ([UInt8](), [UInt8]())] {
            try DiffEngine.makePatchFile(oldPath: try dir.write("old", old), newPath: try dir.write("new", new), to: dir.file("patch"))
            #expect(try PatchApplier.apply(old: old, patch: dir.read("patch")) == new, "\(old.count) -> \(new.count)")
        }
    }

    /// The check of a mapped file against its first reading (`unchanged`): the same bytes pass on one
    /// core or several; a byte changed in any of its 4 MiB parts (the last one short) fails, as does
    /// a digest of another length; an empty file passes.
    @Test func aMappedFileIsCheckedPartByPart() throws {
        var rng = SeededGenerator(seed: 23)
        let bytes = rng.bytes(2 * DiffEngine.MappedDigest.partSize + 12_345)
        let dir = try TemporaryDirectory()
        let path = try dir.write("file", bytes)
        let digest = DiffEngine.digestWithParts(try MappedFile(path: path))
        #expect(digest.sha256 == SHA256Hasher.hash(bytes) && digest.partCRCs.count == 3)
        for threads in [1, 2, 3] {
            #expect(DiffEngine.unchanged(try MappedFile(path: path), since: digest, threads: threads), "\(threads) threads")
        }
        for at in [5, DiffEngine.MappedDigest.partSize + 7, bytes.count - 1] {
            var changed = bytes
            changed[at] ^= 0x40
            try dir.write("file", changed)
            for threads in [1, 2] {
                #expect(!DiffEngine.unchanged(try MappedFile(path: path), since: digest, threads: threads), "byte \(at), \(threads) threads")
            }
        }
        try dir.write("file", Array(bytes[0..<DiffEngine.MappedDigest.partSize]))
        #expect(!DiffEngine.unchanged(try MappedFile(path: path), since: digest, threads: 2))
        let empty = try dir.write("empty", [])
        #expect(DiffEngine.unchanged(try MappedFile(path: empty), since: DiffEngine.digestWithParts(try MappedFile(path: empty)), threads: 2))
    }

    /// New rewritten in place once matching is done, before the tuples are emitted (the progress
    /// callback runs there): the patch would make neither version, so `make` fails, naming the file,
    /// and the patch already at the destination is left as it was.
    @Test(arguments: [MatchIndexKind.hashChains, .suffixArray])
    func aNewFileChangedMeanwhileIsAnError(_ index: MatchIndexKind) throws {
        let (old, new) = Self.pair(seed: 22, size: 300_000)
        let dir = try TemporaryDirectory()
        let oldPath = try dir.write("old", old), newPath = try dir.write("new", new)
        try dir.write("patch", [1, 2, 3])
        var options = DiffOptions(threads: 1)
        options.index = index
        var changed = false
        let error = #expect(throws: TreeIOError.self) {
            try DiffEngine.makePatchFile(oldPath: oldPath, newPath: newPath, to: dir.file("patch"), options: options) { fraction in
                guard !changed, fraction > 0.25, fraction < 1 else { return }
                changed = true
                let fd = open(newPath, O_WRONLY)
                defer { close(fd) }
                var byte = ~new[150_000]
                #expect(pwrite(fd, &byte, 1, 150_000) == 1)
            }
        }
        #expect(changed, "the progress callback never ran between indexing and the end")
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("changed while the patch was being made") && text.contains(newPath), "\(text)")
        #expect(try dir.read("patch") == [1, 2, 3])
        #expect(try dir.listing() == ["new", "old", "patch"])
    }
}
