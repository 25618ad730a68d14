@testable import DiffEngine
import PatchFormat
import Patcher
import Glibc
import Synchronization
import Testing
import TestSupport

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
            // Where each key's suffixes were found in the suffix array.
            var found = [Int: (first: Int, last: Int, count: Int)]()
            for (i, s) in sa.enumerated() where Int(s) + 1 < text.count {
                let key = Int(text[Int(s)]) << 8 | Int(text[Int(s) + 1])
                let f = found[key]
                found[key] = (f?.first ?? i, i, (f?.count ?? 0) + 1)
            }
            let table = PrefixRanges(t)
            for key in 0..<65_536 {
                let pair: [UInt8] = [UInt8(key >> 8), UInt8(key & 255)]
                let range = pair.withUnsafeBufferPointer { table.range($0.baseAddress!) }
                if let f = found[key] {
                    #expect(range == f.first..<(f.last + 1), "key \(key) of a \(text.count)-byte text")
                    #expect(range.count == f.count, "key \(key): its suffixes are not contiguous")
                } else {
                    #expect(range.isEmpty, "key \(key) does not occur, got \(range)")
                }
            }
        }
    }

    /// An encoder that takes a while to finish and counts how many finish at once.
    final class SlowEncoder: StreamEncoder, @unchecked Sendable {
        static let running = Atomic<Int>(0)
        static let most = Atomic<Int>(0)
        let memory: Int
        let tag: UInt8
        init(memory: Int, tag: UInt8) {
            self.memory = memory
            self.tag = tag
        }
        var finishMemory: Int { memory }
        func write(_ input: UnsafeRawBufferPointer) throws {}
        func takeOutput() -> [UInt8] { [] }
        func finish() throws -> [UInt8] {
            let now = Self.running.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
            _ = Self.most.max(now, ordering: .sequentiallyConsistent)
            usleep(20_000)  // long enough for the others to start
            Self.running.subtract(1, ordering: .sequentiallyConsistent)
            return [tag]
        }
    }

    /// Outputs come back in the encoders' order whatever the schedule, and no more encoders finish at
    /// once than the memory budget allows (the largest two here, 30 + 20 MB, fit 50 MB; three do not).
    /// (Were finishAll to let more run at once, the first check would fail whenever they overlap.)
    @Test(.serialized, arguments: [(50, 2), (49, 1), (1000, 3)])
    func finishingSideBySideKeepsOrderAndBudget(budgetMB: Int, expectedMost: Int) throws {
        SlowEncoder.running.store(0, ordering: .sequentiallyConsistent)
        SlowEncoder.most.store(0, ordering: .sequentiallyConsistent)
        let sizes = [10, 30, 5, 20, 10, 1]
        let encoders = sizes.enumerated().map { SlowEncoder(memory: $0.element << 20, tag: UInt8($0.offset)) }
        let out = try DiffEngine.finishAll(encoders, threads: 3, memoryBudget: budgetMB << 20)
        #expect(out.map { $0[0] } == Array(0..<UInt8(sizes.count)))
        #expect(SlowEncoder.most.load(ordering: .sequentiallyConsistent) <= expectedMost)
        // How many may run at once is decided up front; whether they then overlap is up to the
        // scheduler (under ThreadSanitizer and a parallel test run they sometimes did not).
        #expect(DiffEngine.finishWorkers(sizes.sorted(by: >).map { $0 << 20 }, threads: 3, memoryBudget: budgetMB << 20)
                == expectedMost)
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
            let index = try OldIndex(o.bindMemory(to: UInt8.self), threads: 2, hashing: true)
            #expect(index.sha256 == SHA256Hasher.hash(old))
            let plain = try OldIndex(o.bindMemory(to: UInt8.self), threads: 1)
            #expect(plain.sha256 == nil)
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

    /// Packing in place from 8-byte entries (how arrays of 2 GiB and more are sorted) keeps every value,
    /// up to the widest entry the packer takes.
    @Test(arguments: [1, 7, 31, 33, 40, 57])
    func packingWideEntriesInPlaceKeepsEveryValue(bits: Int) {
        var rng = SeededGenerator(seed: 630 + UInt64(bits))
        let count = 10_001
        let values = (0..<count).map { i in i < 3 ? [0, 1, (1 << bits) - 1][i] : Int(rng.next() >> UInt64(64 - bits)) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: count * 8 + 16, alignment: 8)
        defer { buffer.deallocate() }
        for (i, v) in values.enumerated() { buffer.storeBytes(of: Int64(v), toByteOffset: i * 8, as: Int64.self) }
        let written = PackedSuffixArray.pack(buffer, count: count, entryBytes: 8, bits: bits)
        #expect(written == (count * bits + 63) / 64 * 8)
        let mask = bits == 64 ? UInt64.max : (UInt64(1) << UInt64(bits)) - 1
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
