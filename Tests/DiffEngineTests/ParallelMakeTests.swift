@testable import DiffEngine
import PatchFormat
import Patcher
import Glibc
import Synchronization
import Testing
import TestSupport

/// The keys whose range in the two-byte table `table` is not exactly where `positions` (the starts of
/// suffixes of `text`, in the order the table describes) holds the suffixes that start with them,
/// each described; empty when every key agrees. The one-byte suffix at the text's end has no key.
func keyRangeErrors(_ table: PrefixRanges.View, positions: [Int], text: [UInt8]) -> [String] {
    var found = [Int: (first: Int, last: Int, count: Int)]()
    for (i, s) in positions.enumerated() where s + 1 < text.count {
        let key = Int(text[s]) << 8 | Int(text[s + 1])
        let f = found[key]
        found[key] = (f?.first ?? i, i, (f?.count ?? 0) + 1)
    }
    var errors: [String] = []
    for key in 0..<65_536 {
        let pair: [UInt8] = [UInt8(key >> 8), UInt8(key & 255)]
        let range = pair.withUnsafeBufferPointer { table.range($0.baseAddress!) }
        if let f = found[key] {
            if range != f.first..<(f.last + 1) { errors.append("key \(key): range \(range), suffixes at \(f.first)...\(f.last)") }
            if range.count != f.count { errors.append("key \(key): its \(f.count) suffixes are not contiguous") }
        } else if !range.isEmpty {
            errors.append("key \(key) does not occur, got \(range)")
        }
    }
    return errors
}

/// The pieces that make `make` faster without changing what it finds: the two-byte prefix table of the
/// suffix-array search and the side-by-side finishing of the compressors.
@Suite struct ParallelMakeTests {
    /// Every two-byte key's range is exactly where the suffix array holds the suffixes that start with it,
    /// including the one-byte suffix at the end of old that sorts just before its byte's buckets.
    @Test(arguments: [
        [], [7], [1, 1], [0, 255, 0], [255, 0, 255],
        Array(repeating: 0, count: 1000),
        { var r = SeededGenerator(seed: 501); return (0..<3000).map { _ in UInt8(r.next() % 2) } }(),
        { var r = SeededGenerator(seed: 502); return r.bytes(20_000) + [0] }(),
        { var r = SeededGenerator(seed: 503); return r.bytes(20_000) + [255] }(),
    ] as [[UInt8]])
    func prefixRangesMatchTheSuffixArray(text: [UInt8]) throws {
        try text.withUnsafeBufferPointer { t in
            let sa = try SuffixSorting.build32(t)
            defer { sa.deallocate() }
            let table = PrefixRanges(t)
            let errors = table.withView { keyRangeErrors($0, positions: sa.map { Int($0) }, text: text) }
            #expect(errors.isEmpty, "\(text.count)-byte text: \(errors.prefix(5))")
        }
    }

    /// How many encoders are finishing at once, and the most there were.
    final class Tally: Sendable {
        let running = Atomic<Int>(0)
        let most = Atomic<Int>(0)
        func enter() { _ = most.max(running.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue, ordering: .sequentiallyConsistent) }
        func leave() { running.subtract(1, ordering: .sequentiallyConsistent) }
    }

    /// An encoder that takes a while to finish and counts in `tally` while it does.
    final class SlowEncoder: StreamEncoder, @unchecked Sendable {
        let memory: Int
        let tag: UInt8
        let tally: Tally
        init(memory: Int, tag: UInt8, tally: Tally) {
            self.memory = memory
            self.tag = tag
            self.tally = tally
        }
        var finishMemory: Int { memory }
        func write(_ input: UnsafeRawBufferPointer) throws {}
        func takeOutput() -> [UInt8] { [] }
        func finish() throws -> [UInt8] {
            tally.enter()
            usleep(20_000)  // long enough for the others to start
            tally.leave()
            return [tag]
        }
    }

    /// Outputs come back in the encoders' order whatever the schedule, and no more encoders finish at
    /// once than the memory budget allows (the largest two here, 30 + 20 MB, fit 50 MB; three do not).
    /// (Were finishAll to let more run at once, the first check would fail whenever they overlap.)
    @Test(.serialized, arguments: [(50, 2), (49, 1), (1000, 3)])
    func finishingSideBySideKeepsOrderAndBudget(budgetMB: Int, expectedMost: Int) throws {
        let tally = Tally()
        let sizes = [10, 30, 5, 20, 10, 1]
        let encoders = sizes.enumerated().map { SlowEncoder(memory: $0.element << 20, tag: UInt8($0.offset), tally: tally) }
        let out = try DiffEngine.finishAll(encoders, threads: 3, memoryBudget: budgetMB << 20)
        #expect(out.map { $0[0] } == Array(0..<UInt8(sizes.count)))
        #expect(tally.most.load(ordering: .sequentiallyConsistent) <= expectedMost)
        // How many may run at once is decided up front; whether they then overlap is up to the
        // scheduler (under ThreadSanitizer and a parallel test run they sometimes did not).
        #expect(DiffEngine.finishWorkers(sizes.sorted(by: >).map { $0 << 20 }, threads: 3, memoryBudget: budgetMB << 20)
                == expectedMost)
    }

    /// An encoder whose finish takes a while, counts in `tally`, returns what it was given, or fails.
    final class RecordingEncoder: StreamEncoder, @unchecked Sendable {
        var taken: [UInt8] = []
        let fails: Bool
        let failsWriting: Bool
        let tally: Tally
        init(tally: Tally, fails: Bool = false, failsWriting: Bool = false) {
            self.tally = tally
            self.fails = fails
            self.failsWriting = failsWriting
        }
        func write(_ input: UnsafeRawBufferPointer) throws {
            if failsWriting { throw DiffEngineError.unsupportedCombination("the aside encoder failed to write") }
            taken += input
        }
        func takeOutput() -> [UInt8] { [] }
        func finish() throws -> [UInt8] {
            tally.enter()
            usleep(60_000)
            tally.leave()
            if fails { throw DiffEngineError.unsupportedCombination("the aside encoder failed") }
            return taken
        }
    }

    /// The extra stream compressed on a core of its own (`AsideStream`) gets exactly the bytes the
    /// tuples copy, in order; the other streams come back in their order; while the aside stream holds
    /// its 30 MB only one other finish runs beside it (50 MB budget), and once it is done its core helps
    /// with the rest, never more at once than the budget allows (here 2: the aside's 30 MB are freed).
    @Test(.timeLimit(.minutes(1))) func asideStreamTakesTheCopiesAndHelpsWithinTheBudget() throws {
        let tally = Tally()
        var rng = SeededGenerator(seed: 505)
        let new = rng.bytes(1000)
        let chunks = [[RecordedTuple(newStart: 0, oldStart: 0, add: 100, copy: 50),
                       RecordedTuple(newStart: 150, oldStart: 0, add: 0, copy: 0)],
                      [RecordedTuple(newStart: 150, oldStart: 200, add: 800, copy: 50)]]
        let sizes = [10, 5, 20, 10, 5]
        let encoders = sizes.enumerated().map { SlowEncoder(memory: $0.element << 20, tag: UInt8($0.offset), tally: tally) }
        let recorder = RecordingEncoder(tally: tally)
        let aside = AsideStream(recorder, memory: (30 << 20, false))
        try new.withUnsafeBufferPointer { try aside.start(extraOf: chunks, new: $0) }
        let (finished, extra) = try DiffEngine.finishAll(encoders, beside: aside, threads: 3, memoryBudget: 50 << 20)
        #expect(finished.map { $0[0] } == Array(0..<UInt8(sizes.count)))
        #expect(extra == Array(new[100..<150] + new[950..<1000]))
        #expect(tally.most.load(ordering: .sequentiallyConsistent) <= 2)
        #expect(tally.running.load(ordering: .sequentiallyConsistent) == 0, "a finish still running after the return")
    }

    /// A failure of the aside stream is the make's error, reported once everything else is done; an
    /// aside stream that was never started (matching failed) lets its owner go.
    @Test(.timeLimit(.minutes(1))) func asideStreamFailureIsReportedAndAnUnstartedOneDoesNotBlock() throws {
        let tally = Tally()
        let aside = AsideStream(RecordingEncoder(tally: tally, fails: true), memory: (1 << 20, false))
        let new = [UInt8](repeating: 9, count: 10)
        try new.withUnsafeBufferPointer {
            try aside.start(extraOf: [[RecordedTuple(newStart: 0, oldStart: 0, add: 0, copy: 10)]], new: $0)
        }
        let encoders = [SlowEncoder(memory: 1 << 20, tag: 1, tally: tally), SlowEncoder(memory: 1 << 20, tag: 2, tally: tally)]
        #expect(throws: DiffEngineError.self) {
            _ = try DiffEngine.finishAll(encoders, beside: aside, threads: 2, memoryBudget: .max)
        }
        #expect(tally.running.load(ordering: .sequentiallyConsistent) == 0)
        let idle = AsideStream(RecordingEncoder(tally: tally), memory: (0, false))
        idle.join()
        #expect(throws: DiffEngineError.self) { _ = try idle.result() }
    }

    /// With more than one core the extra stream is compressed aside, and the diff runs in old-context
    /// order are coded aside; the patch is the same bytes as on one core (where neither is) for every
    /// codec and both formats, with the old-context order forced too, and applies. (64 KiB matching
    /// chunks: tuples joined where chunks meet, and empty ones dropped.)
    @Test func patchesWithTheExtraStreamAsideAreTheSameBytes() throws {
        var rng = SeededGenerator(seed: 506)
        let old = TestData.structured(400_000, rng: &rng)
        var new = TestData.mutate(old, edits: 30, rng: &rng)
        new.insert(contentsOf: rng.bytes(60_000), at: 200_000)
        let cases: [(PatchKind, CodecID, DiffOrder?)] = [(.phx, .xz, nil), (.phx, .zstd, nil), (.phx, .bzip2, nil),
                                                         (.phx, .zlib, nil), (.bsdiff, .bzip2, nil), (.phx, .zstd, .oldContext)]
        for (format, codec, order) in cases {
            var patches: [[UInt8]] = []
            for threads in [1, 2, 3] {
                var options = DiffOptions(format: format, threads: threads)
                options.codec = codec
                options.diffOrder = order
                options.matchChunkSize = 64 << 10
                let patch = try DiffEngine.makePatch(old: old, new: new, options: options)
                #expect(try PatchApplier.apply(old: old, patch: patch) == new, "\(format), \(codec.name), \(threads) threads")
                patches.append(patch)
            }
            #expect(patches.allSatisfy { $0 == patches[0] },
                    "\(format), \(codec.name), \(order?.rawValue ?? "auto"): the thread count changed the patch")
        }
    }

    /// The old-context runs coded aside are those of a coder given each tuple's diff bytes in order
    /// (empty tuples and copies contribute none); a failing encoder is the error `finish` reports; an
    /// aside coder never started lets its owner go, and finishing it is an error (it has no runs).
    @Test(.timeLimit(.minutes(1))) func asideContextRunsCodeTheTuplesDiffBytesInOrder() throws {
        var rng = SeededGenerator(seed: 507)
        let old = TestData.structured(300_000, rng: &rng)
        var new = TestData.mutate(old, edits: 40, rng: &rng)
        new.removeLast(new.count - 290_000)
        // Two chunks; the second starts with an empty tuple and goes on at another alignment.
        let chunks = [[RecordedTuple(newStart: 0, oldStart: 0, add: 100_000, copy: 20),
                       RecordedTuple(newStart: 100_020, oldStart: 150_000, add: 70_000, copy: 0)],
                      [RecordedTuple(newStart: 170_020, oldStart: 0, add: 0, copy: 0),
                       RecordedTuple(newStart: 170_020, oldStart: 1_000, add: 119_980, copy: 0)]]
        let expected = ContextRunCoder(maxBytes: new.count)
        for t in chunks.joined() {
            let diff = (0..<t.add).map { new[t.newStart + $0] &- old[t.oldStart + $0] }
            old.withUnsafeBufferPointer { o in diff.withUnsafeBufferPointer { expected.add(old: o, oldStart: t.oldStart, diff: $0) } }
        }
        expected.finish()
        let want = expected.takeRuns()
        #expect(want.count > 100, "the test's diff bytes should make a real stream")
        let encoder = try CodecID.uncompressed.makeEncoder(level: 0)
        let aside = AsideContextRuns(encoder)
        try old.withUnsafeBufferPointer { o in
            try new.withUnsafeBufferPointer { n in
                aside.start(chunks, old: o, new: n, newPages: nil)
                try aside.finish()
            }
        }
        #expect(try Self.decode(try encoder.finish(), codec: .uncompressed) == want)

        // Cancelled before it starts, it stops at its first piece: finishing is no error, and it has
        // written no runs.
        let cancelledEncoder = try CodecID.uncompressed.makeEncoder(level: 0)
        let cancelled = AsideContextRuns(cancelledEncoder)
        cancelled.cancel()
        try old.withUnsafeBufferPointer { o in
            try new.withUnsafeBufferPointer { n in
                cancelled.start(chunks, old: o, new: n, newPages: nil)
                try cancelled.finish()
            }
        }
        #expect(try Self.decode(try cancelledEncoder.finish(), codec: .uncompressed).isEmpty)

        let failing = AsideContextRuns(RecordingEncoder(tally: Tally(), failsWriting: true))
        old.withUnsafeBufferPointer { o in
            new.withUnsafeBufferPointer { n in
                failing.start(chunks, old: o, new: n, newPages: nil)
                #expect(throws: DiffEngineError.self) { try failing.finish() }
            }
        }
        let idle = AsideContextRuns(encoder)
        idle.join()
        #expect(throws: DiffEngineError.self) { try idle.finish() }
    }

    /// xz streams finished side by side are the bytes of the same streams finished one by one, and the
    /// memory xz reports for a finish grows with the stream it holds.
    @Test func xzStreamsFinishedSideBySideAreTheSameBytes() throws {
        var rng = SeededGenerator(seed: 504)
        let inputs = [TestData.structured(300_000, rng: &rng), rng.bytes(70_000), TestData.structured(2_000_000, rng: &rng), []]
        func encoders() throws -> [any StreamEncoder] {
            try inputs.map { input in
                let e = try CodecID.xz.makeEncoder(level: 6)
                try e.write(input)
                return e
            }
        }
        let one = try encoders().map { try $0.finish() }
        let memory = try encoders().map(\.finishMemory)
        #expect(memory[2] > memory[0] && memory[0] > memory[1], "\(memory)")
        let both = try DiffEngine.finishAll(try encoders(), threads: 4, memoryBudget: .max)
        #expect(both == one)
        for (bytes, input) in zip(both, inputs) {
            #expect(try Self.decode(bytes, codec: .xz) == input)
        }
    }

    static func decode(_ compressed: [UInt8], codec: CodecID) throws -> [UInt8] {
        let decoder = try codec.makeDecoder()
        var out = [UInt8](), buffer = [UInt8](repeating: 0, count: 1 << 16), at = 0
        while true {
            let step = try compressed[at...].withUnsafeBytes { input in
                try buffer.withUnsafeMutableBytes { try decoder.decode(input: input, output: $0, inputIsLast: true) }
            }
            at += step.consumed
            out += buffer[0..<step.produced]
            if step.ended { return out }
            if step.consumed == 0 && step.produced == 0 { throw DiffEngineError.unsupportedCombination("stuck") }
        }
    }
}

/// The header's digests are made beside other work (old's during the sort, new's during matching);
/// they must be those of the inputs whatever the thread count, and the patch the same bytes.
@Suite struct SideDigestTests {
    /// SHA256Hasher (libcrypto's SHA256_* functions) against coreutils' sha256sum, on a few MB fed in
    /// uneven pieces.
    @Test func digestIsSha256sums() throws {
        var rng = SeededGenerator(seed: 641)
        let bytes = rng.bytes(3_000_017)
        let dir = try TemporaryDirectory()
        let path = try dir.write("data", bytes)
        let run = try Run.process("/usr/bin/sha256sum", [path])
        #expect(run.status == 0)
        let hasher = SHA256Hasher()
        var at = 0
        for piece in [1, 63, 64, 65, 4095, 1 << 20] + [Int](repeating: 700_001, count: 3) {
            let end = min(at + piece, bytes.count)
            bytes[at..<end].withUnsafeBytes { hasher.update($0) }
            at = end
        }
        bytes[at...].withUnsafeBytes { hasher.update($0) }
        #expect(Hex.encode(hasher.finalize()) == String(run.stdout.prefix(64)))
    }

    @Test func headerDigestsAreTheInputsAtAnyThreadCount() throws {
        var rng = SeededGenerator(seed: 640)
        let old = TestData.structured(300_000, rng: &rng)
        let new = TestData.mutate(old, edits: 40, rng: &rng)
        var patches: [[UInt8]] = []
        for threads in [1, 2, 4] {
            var options = DiffOptions()
            options.threads = threads
            let patch = try DiffEngine.makePatch(old: old, new: new, options: options)
            let header = try PhxHeader.decode(patch, fileLength: UInt64(patch.count), limits: PatchLimits())
            #expect(header.oldSHA256 == SHA256Hasher.hash(old), "old's digest at \(threads) threads")
            #expect(header.newSHA256 == SHA256Hasher.hash(new), "new's digest at \(threads) threads")
            patches.append(patch)
        }
        #expect(patches.allSatisfy { $0 == patches[0] })
        try old.withUnsafeBytes { o in
            let index = try OldIndex(o.bindMemory(to: UInt8.self), threads: 2, hashing: .withParts)
            #expect(index.digest?.sha256 == SHA256Hasher.hash(old))
            #expect(index.digest?.matches(o, threads: 2) == true)
            let memory = try OldIndex(o.bindMemory(to: UInt8.self), threads: 2, hashing: .sha256)
            #expect(memory.digest?.sha256 == SHA256Hasher.hash(old) && memory.digest?.partHashes == [])
            let plain = try OldIndex(o.bindMemory(to: UInt8.self), threads: 1)
            #expect(plain.digest == nil)
        }
    }
}

/// The bit-packed suffix array that matching reads (`PackedSuffixArray`).
@Suite struct PackedSuffixArrayTests {
    /// Entry for entry the array libdivsufsort makes, at sizes around the powers of two where the
    /// width of an entry changes (and empty, one byte).
    @Test(arguments: [0, 1, 2, 3, 255, 256, 257, 1023, 1024, 1025, 65_537, 300_000])
    func packedEntriesAreTheSortedSuffixes(count: Int) throws {
        var rng = SeededGenerator(seed: 620 + UInt64(count))
        let text = (0..<count).map { _ in UInt8(rng.next() % 3) }
        try text.withUnsafeBufferPointer { t in
            let reference = try SuffixSorting.build32(t)
            defer { reference.deallocate() }
            let packed = try PackedSuffixArray(sorting: t)
            packed.withView { view in
                #expect(view.count == count)
                var wrong = 0
                for i in 0..<count where view[i] != Int(reference[i]) { wrong += 1 }
                #expect(wrong == 0, "\(wrong) of \(count) entries differ (\(PackedSuffixArray.bits(for: count)) bits an entry)")
            }
        }
    }

    /// Packing in place from 32-bit entries keeps every value, up to the widest entry.
    @Test(arguments: [1, 7, 16, 25, 31, 32])
    func packingInPlaceKeepsEveryValue(bits: Int) {
        var rng = SeededGenerator(seed: 630 + UInt64(bits))
        let count = 10_001
        let values = (0..<count).map { i in i < 3 ? [0, 1, (1 << bits) - 1][i] : Int(rng.next() >> UInt64(64 - bits)) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: count * 4 + 16, alignment: 8)
        defer { buffer.deallocate() }
        for (i, v) in values.enumerated() { buffer.storeBytes(of: UInt32(v), toByteOffset: i * 4, as: UInt32.self) }
        let written = PackedSuffixArray.pack(buffer, count: count, bits: bits)
        #expect(written == (count * bits + 63) / 64 * 8)
        let mask = (UInt64(1) << UInt64(bits)) - 1
        var wrong = 0
        for i in 0..<count {
            let bit = i * bits
            let word = buffer.loadUnaligned(fromByteOffset: bit >> 3, as: UInt64.self)
            if Int((word >> UInt64(bit & 7)) & mask) != values[i] { wrong += 1 }
        }
        #expect(wrong == 0, "\(wrong) of \(count) values changed at \(bits) bits")
    }
}

/// Alternatives that clearly lose on a quick estimate are not compressed (`StreamChoices.pruned`).
@Suite struct StreamPruningTests {
    @Test func onlyClearLosersAreDropped() {
        let all = DiffEngine.StreamChoices(options: DiffOptions())
        #expect(all.natural && all.context && all.interleaved && all.split)
        // Context order clearly smaller: natural is not made; the control layouts are too close to call.
        let a = all.pruned(runs: (1000, 900), control: (500, 480))
        #expect(!a.natural && a.context && a.interleaved && a.split)
        // Natural clearly smaller, and the interleaved control.
        let b = all.pruned(runs: (800, 1000), control: (400, 500))
        #expect(b.natural && !b.context && b.interleaved && !b.split)
        // No estimate (codecs that compress as they go): both made.
        let c = all.pruned(runs: (nil, 10), control: (10, nil))
        #expect(c.natural && c.context && c.interleaved && c.split)
        // A forced choice stays forced.
        var forced = DiffOptions()
        forced.diffOrder = .natural
        let d = DiffEngine.StreamChoices(options: forced).pruned(runs: (1000, 10), control: (nil, nil))
        #expect(d.natural && !d.context)
    }

    /// Sparse: fewer than one diff byte in 2,048 changed (the threshold exactly, and no overflow).
    @Test func sparseDiffThreshold() {
        typealias C = DiffEngine.StreamChoices
        #expect(C.isSparse(changed: 0, diffBytes: 1))
        #expect(!C.isSparse(changed: 0, diffBytes: 0))
        #expect(!C.isSparse(changed: 1, diffBytes: 2048) && C.isSparse(changed: 1, diffBytes: 2049))
        #expect(!C.isSparse(changed: 1000, diffBytes: 2_048_000) && C.isSparse(changed: 999, diffBytes: 2_048_000))
        #expect(!C.isSparse(changed: .max / 1000, diffBytes: .max))
    }

    /// A sparse diff keeps the natural order even where the old-context one would be smaller (every
    /// byte after twenty two-byte contexts changed: 1,300 or so of 4 MiB, each key's run of changes
    /// one run when sorted), at one thread (the context order coded inline, then dropped) and more
    /// (coded aside, and stopped): the same bytes, the natural order's patch, and it applies.
    @Test func aSparseDiffKeepsTheNaturalOrder() throws {
        let (old, new) = try Self.sparseContextChanges()
        var forced: [DiffOrder: [UInt8]] = [:]
        for order in [DiffOrder.natural, .oldContext] {
            var o = DiffOptions(threads: 2)
            o.diffOrder = order
            forced[order] = try DiffEngine.makePatch(old: old, new: new, options: o)
        }
        let natural = try #require(forced[.natural]), context = try #require(forced[.oldContext])
        #expect(context.count < natural.count, "context order \(context.count) bytes, natural \(natural.count)")
        for threads in [1, 2, 3] {
            let auto = try DiffEngine.makePatch(old: old, new: new, options: DiffOptions(threads: threads))
            let same = auto == natural
            #expect(same, "\(threads) threads: \(auto.count) bytes, natural order \(natural.count)")
            #expect(try PatchApplier.inspect(patch: auto).diffOrder == "natural")
            #expect(try PatchApplier.apply(old: old, patch: auto) == new)
        }
    }

    /// 4 MiB of random bytes, and a copy with each byte after twenty two-byte contexts changed: a
    /// sparse diff that the old-context order codes smaller.
    static func sparseContextChanges() throws -> (old: [UInt8], new: [UInt8]) {
        var rng = SeededGenerator(seed: 641)
        let old = rng.bytes(4 << 20)
        var new = old
        var keys = Set<Int>()
        while keys.count < 20 {
            let j = Int(rng.next() % UInt64(old.count - 2)) + 2
            keys.insert(Int(old[j - 2]) << 8 | Int(old[j - 1]))
        }
        var changed = 0
        for j in 2..<old.count where keys.contains(Int(old[j - 2]) << 8 | Int(old[j - 1])) {
            new[j] &+= UInt8(truncatingIfNeeded: 1 + rng.next() % 200)
            changed += 1
        }
        try #require(changed > 500 && DiffEngine.StreamChoices.isSparse(changed: UInt64(changed), diffBytes: UInt64(new.count)),
                     "\(changed) bytes changed")
        return (old, new)
    }

    /// With xz (estimates available) the default patch is byte for byte the smaller of the forced
    /// alternatives, whether a loser was pruned or both were compressed.
    @Test func xzAutoIsTheSmallerForcedPatch() throws {
        var rng = SeededGenerator(seed: 640)
        // Relocation-like edits (context order wins) and a plain edited text (natural order wins).
        var relocated = rng.bytes(300_000)
        let base = relocated
        for i in stride(from: 0, to: relocated.count - 8, by: 61) { relocated[i] &+= 3 }
        let text = TestData.structured(300_000, rng: &rng)
        for (old, new) in [(base, relocated), (text, TestData.mutate(text, edits: 30, rng: &rng))] {
            var sizes: [[UInt8]] = []
            for order in [DiffOrder.natural, .oldContext] {
                for split in [false, true] {
                    var o = DiffOptions()
                    o.diffOrder = order
                    o.splitControl = split
                    sizes.append(try DiffEngine.makePatch(old: old, new: new, options: o))
                }
            }
            let auto = try DiffEngine.makePatch(old: old, new: new, options: DiffOptions())
            let smallest = sizes.min { $0.count < $1.count }!
            #expect(auto.count == smallest.count, "auto \(auto.count), forced \(sizes.map(\.count))")
            #expect(try PatchApplier.apply(old: old, patch: auto) == new)
        }
    }
}
