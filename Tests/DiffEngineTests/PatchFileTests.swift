@testable import DiffEngine
import Foundation
import PatchFormat
import Patcher
import Synchronization
import Testing
import TestSupport
import TreeIO

/// `makePatchFile`'s in-memory engine, which maps both files (new's pages dropped behind each pass)
/// rather than reading them: the same patch as `makePatch` on the bytes, and an error, not a wrong
/// patch, when either changes while the patch is made.
@Suite struct PatchFileTests {
    static func pair(seed: UInt64, size: Int) -> (old: [UInt8], new: [UInt8]) {
        var rng = SeededGenerator(seed: seed)
        let old = TestData.structured(size, rng: &rng)
        return (old, TestData.mutate(old, edits: 12, rng: &rng))
    }

    /// Over several 1 MiB matching chunks and with the block matches on (from 64 KiB of old, scanned
    /// in 512 KiB parts, whose pages of new are dropped behind the scan), for both indexes, one and two
    /// threads, either diff order (the old-context one coded aside with two): byte for byte
    /// `makePatch`'s patch on one thread.
    @Test(arguments: [MatchIndexKind.hashChains, .suffixArray], [1, 2])
    func theSamePatchAsFromMemory(_ index: MatchIndexKind, threads: Int) throws {
        let (old, new) = Self.pair(seed: 21, size: 2_600_000)
        for order in [nil, DiffOrder.oldContext] { try BlockMatches.$minimumOld.withValue(1 << 16) { try BlockMatches.$part.withValue(1 << 19) {
            var options = DiffOptions(threads: threads)
            options.index = index
            options.diffOrder = order
            var one = options
            one.threads = 1
            let dir = try TemporaryDirectory()
            let summary = try DiffEngine.makePatchFile(oldPath: try dir.write("old", old), newPath: try dir.write("new", new),
                                                       to: dir.file("patch"), options: options)
            let patch = try dir.read("patch")
            #expect(!summary.lowMemory && summary.newBytes == UInt64(new.count) && summary.patchBytes == UInt64(patch.count))
            #expect(patch == (try DiffEngine.makePatch(old: old, new: new, options: one)), "\(order?.rawValue ?? "auto")")
            #expect(try PatchApplier.apply(old: old, patch: patch) == new)
        } } }
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

    /// The check of an input against its first reading (`InputDigest.matches`): the same bytes pass on
    /// one core or several, and every part is passed to `checked`; a byte changed in any of its 4 MiB
    /// parts (the last one short) fails, as do bytes of another length; empty bytes pass. A digest of
    /// bytes in memory has the SHA-256 only.
    @Test func anInputIsCheckedPartByPart() throws {
        var rng = SeededGenerator(seed: 23)
        let size = 2 * InputDigest.partSize + 12_345
        let bytes = rng.bytes(size)
        let digest = bytes.withUnsafeBytes { InputDigest(hashing: $0) }
        #expect(digest.sha256 == SHA256Hasher.hash(bytes) && digest.partHashes.count == 3)
        #expect(bytes.withUnsafeBytes { InputDigest(sha256: $0) }.partHashes.isEmpty)
        for threads in [1, 2, 3] {
            let seen = Seen()
            #expect(bytes.withUnsafeBytes { b in digest.matches(b, threads: threads) { r in seen.ranges.withLock { $0.append(r) } } },
                    "\(threads) threads")
            #expect(seen.ranges.withLock { $0.sorted { $0.lowerBound < $1.lowerBound } }
                    == [0..<InputDigest.partSize, InputDigest.partSize..<2 * InputDigest.partSize, 2 * InputDigest.partSize..<size])
        }
        for at in [5, InputDigest.partSize + 7, size - 1] {
            var changed = bytes
            changed[at] ^= 0x40
            for threads in [1, 2] {
                #expect(!changed.withUnsafeBytes { digest.matches($0, threads: threads) }, "byte \(at), \(threads) threads")
            }
        }
        #expect(!bytes[0..<InputDigest.partSize].withUnsafeBytes { digest.matches($0, threads: 2) })
        let empty = [UInt8]()
        #expect(empty.withUnsafeBytes { b in InputDigest(hashing: b).matches(b, threads: 2) })
    }

    final class Seen: Sendable {
        let ranges = Mutex<[Range<Int>]>([])
    }

    /// New, or old, rewritten in place during matching (at the first progress call past a quarter),
    /// after both digests were taken (on one thread they are taken first) and before the tuples are
    /// emitted: the patch would make neither version, or would not apply to the old it names, so
    /// `make` fails, naming the file, and the patch already at the destination is left as it was.
    /// (With two threads new's digest may be taken after the change, and the patch is then correct.)
    @Test(arguments: [MatchIndexKind.hashChains, .suffixArray], ["new", "old"])
    func anInputChangedMeanwhileIsAnError(_ index: MatchIndexKind, changing name: String) throws {
        let (old, new) = Self.pair(seed: 22, size: 300_000)
        let dir = try TemporaryDirectory()
        let oldPath = try dir.write("old", old), newPath = try dir.write("new", new)
        let (victim, victimBytes) = name == "new" ? (newPath, new) : (oldPath, old)
        try dir.write("patch", [1, 2, 3])
        var options = DiffOptions(threads: 1)
        options.index = index
        var changed = false
        let error = #expect(throws: TreeIOError.self) {
            try DiffEngine.makePatchFile(oldPath: oldPath, newPath: newPath, to: dir.file("patch"), options: options) { fraction in
                guard !changed, fraction > 0.25, fraction < 1 else { return }
                changed = true
                let fd = open(victim, O_WRONLY)
                defer { close(fd) }
                var byte = ~victimBytes[150_000]
                #expect(pwrite(fd, &byte, 1, 150_000) == 1)
            }
        }
        #expect(changed, "the progress callback never ran between indexing and the end")
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("changed while the patch was being made") && text.contains(victim), "\(text)")
        #expect(try dir.read("patch") == [1, 2, 3])
        #expect(try dir.listing() == ["new", "old", "patch"])
    }
}
