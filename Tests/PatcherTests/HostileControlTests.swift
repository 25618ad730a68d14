import PatchFormat
import Patcher
import Testing
import TestSupport

/// Hand-made patches whose control tuples try to read or write out of bounds, overflow the cursor
/// arithmetic, or spin. Each must be refused with an error naming the tuple (bspatch CVE-2014-9862 is
/// the classic: a negative or oversized length that bspatch trusted).
@Suite struct HostileBsdiffTests {
    let old = [UInt8](repeating: 1, count: 64)

    func apply(_ patch: [UInt8], limits: PatchLimits = PatchLimits()) throws -> [UInt8] {
        try PatchApplier.apply(old: old, patch: patch, limits: limits)
    }

    func expectControlError(_ patch: [UInt8], index: UInt64, containing text: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) { _ = try apply(patch) } throws: { error in
            guard case PatcherError.format(.invalidControl(let i, let reason)) = error else { return false }
            return i == index && reason.contains(text)
        }
    }

    @Test func aValidHandMadePatchApplies() throws {
        // 4 bytes from old (+1 each), 2 from extra, seek back 4, 4 more from old.
        let patch = try HandMadePatch.bsdiff(
            tuples: [ControlTuple(add: 4, copy: 2, seek: -4), ControlTuple(add: 4, copy: 0, seek: 0)],
            diff: [1, 1, 1, 1, 0, 0, 0, 0], extra: [9, 9], newSize: 10)
        #expect(try apply(patch) == [2, 2, 2, 2, 9, 9, 1, 1, 1, 1])
    }

    @Test func negativeAddLength() throws {
        let p = try HandMadePatch.bsdiff(tuples: [ControlTuple(add: -8, copy: 0, seek: 0)], diff: [], extra: [], newSize: 8)
        expectControlError(p, index: 0, containing: "negative add length -8")
    }

    @Test func negativeCopyLength() throws {
        let p = try HandMadePatch.bsdiff(tuples: [ControlTuple(add: 0, copy: -1, seek: 0)], diff: [], extra: [], newSize: 8)
        expectControlError(p, index: 0, containing: "negative copy length -1")
    }

    @Test func addPastTheDeclaredNewSize() throws {
        let p = try HandMadePatch.bsdiff(tuples: [ControlTuple(add: 4, copy: 0, seek: 0), ControlTuple(add: 4096, copy: 0, seek: 0)],
                                         diff: [UInt8](repeating: 0, count: 5000), extra: [], newSize: 64)
        expectControlError(p, index: 1, containing: "adds 4096 bytes at new offset 4, past the declared new size 64")
    }

    @Test func copyPastTheDeclaredNewSize() throws {
        let p = try HandMadePatch.bsdiff(tuples: [ControlTuple(add: 0, copy: 65, seek: 0)], diff: [],
                                         extra: [UInt8](repeating: 0, count: 65), newSize: 64)
        expectControlError(p, index: 0, containing: "copies 65 extra bytes at new offset 0, past the declared new size 64")
    }

    @Test func hugeLengthsNearInt64Max() throws {
        let p = try HandMadePatch.bsdiff(tuples: [ControlTuple(add: Int64.max, copy: Int64.max, seek: 0)], diff: [], extra: [], newSize: 8)
        expectControlError(p, index: 0, containing: "past the declared new size 8")
    }

    @Test func seekOverflowingInt64() throws {
        let p = try HandMadePatch.bsdiff(
            tuples: [ControlTuple(add: 1, copy: 0, seek: Int64.max), ControlTuple(add: 1, copy: 0, seek: Int64.max)],
            diff: [0, 0], extra: [], newSize: 2)
        expectControlError(p, index: 0, containing: "overflowing 64 bits")
    }

    @Test func addReadingFarOutsideOldCountsOldBytesAsZero() throws {
        // bspatch's rule for BSDIFF40: old bytes outside the file read as 0 (no out-of-bounds access).
        let p = try HandMadePatch.bsdiff(tuples: [ControlTuple(add: 0, copy: 0, seek: -(1 << 40)), ControlTuple(add: 3, copy: 0, seek: 0)],
                                         diff: [5, 6, 7], extra: [], newSize: 3)
        #expect(try apply(p) == [5, 6, 7])
    }

    @Test func endlessEmptyTuplesAreRefused() throws {
        let tuples = [ControlTuple](repeating: ControlTuple(add: 0, copy: 0, seek: 0), count: 70_000)
        let p = try HandMadePatch.bsdiff(tuples: tuples + [ControlTuple(add: 0, copy: 1, seek: 0)], diff: [], extra: [1], newSize: 1)
        expectControlError(p, index: 65_536, containing: "in a row that writes nothing")
    }

    @Test func controlStreamEndingEarly() throws {
        let p = try HandMadePatch.bsdiff(tuples: [ControlTuple(add: 0, copy: 4, seek: 0)], diff: [], extra: [1, 2, 3, 4], newSize: 8)
        expectControlError(p, index: 1, containing: "control stream ends")
    }

    @Test func partialTupleInControlStream() throws {
        var raw = [UInt8]()
        SignMagnitude64.encode(0, into: &raw)
        let p = try HandMadePatch.bsdiff(tuples: [], diff: [], extra: [], newSize: 8, rawControl: raw)
        expectControlError(p, index: 0, containing: "cut short")
    }

    @Test func diffStreamShorterThanTheTuplesNeed() throws {
        let p = try HandMadePatch.bsdiff(tuples: [ControlTuple(add: 10, copy: 0, seek: 0)], diff: [0, 0, 0], extra: [], newSize: 10)
        #expect(throws: PatcherError.format(.truncatedStream(stream: "diff", producedBytes: 3, neededMore: 7))) { _ = try apply(p) }
    }

    @Test func hugeDeclaredSizeIsRefusedBeforeAllocating() throws {
        let p = try HandMadePatch.bsdiff(tuples: [], diff: [], extra: [], newSize: 1 << 60)
        #expect(throws: PatcherError.format(.limitExceeded(field: "declared new size", value: 1 << 60, limit: 1 << 20))) {
            _ = try apply(p, limits: PatchLimits(maxOutputSize: 1 << 20))
        }
    }

    @Test func negativeHeaderFields() {
        for (c, d, n) in [(Int64(-1), Int64(0), Int64(0)), (0, -1, 0), (0, 0, -1)] {
            let p = HandMadePatch.bsdiffHeader(controlLength: c, diffLength: d, newSize: n) + [UInt8](repeating: 0, count: 64)
            #expect(throws: PatcherError.self) { _ = try apply(p) }
        }
    }

    @Test func blockLengthsPointingPastTheFile() {
        let p = HandMadePatch.bsdiffHeader(controlLength: 1 << 40, diffLength: 10, newSize: 10)
        #expect(throws: PatcherError.format(.truncated(part: "control and diff blocks", needed: 32 + (1 << 40) + 10, available: 32))) {
            _ = try apply(p)
        }
    }

    @Test func leftoverTuplesOrBytesAreTrailingData() throws {
        let extraTuple = try HandMadePatch.bsdiff(
            tuples: [ControlTuple(add: 0, copy: 1, seek: 0), ControlTuple(add: 0, copy: 1, seek: 0)], diff: [], extra: [1, 2], newSize: 1)
        #expect(throws: PatcherError.self) { _ = try apply(extraTuple) }
        let extraBytes = try HandMadePatch.bsdiff(tuples: [ControlTuple(add: 0, copy: 1, seek: 0)], diff: [], extra: [1, 2], newSize: 1)
        #expect(throws: PatcherError.format(.trailingData(location: "in the extra stream",
                                                          detail: "1 decompressed bytes after the 1 the control tuples use"))) {
            _ = try apply(extraBytes)
        }
    }
}

@Suite struct HostilePhxTests {
    let old: [UInt8] = Array(0..<64)

    func expectControlError(_ patch: [UInt8], index: UInt64, containing text: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) { _ = try PatchApplier.apply(old: old, patch: patch) } throws: { error in
            guard case PatcherError.format(.invalidControl(let i, let reason)) = error else { return false }
            return i == index && reason.contains(text)
        }
    }

    @Test func aValidHandMadePatchApplies() throws {
        let new: [UInt8] = [10, 11, 12, 13, 99]
        let p = try HandMadePatch.phx(old: old, new: new, tuples: [ControlTuple(add: 0, copy: 0, seek: 10),
                                                                    ControlTuple(add: 4, copy: 1, seek: 0)],
                                      diff: [0, 0, 0, 0], extra: [99])
        #expect(try PatchApplier.apply(old: old, patch: p) == new)
    }

    @Test func readingOldOutOfBounds() throws {
        let new = [UInt8](repeating: 0, count: 8)
        let p = try HandMadePatch.phx(old: old, new: new, tuples: [ControlTuple(add: 0, copy: 0, seek: 60),
                                                                    ControlTuple(add: 8, copy: 0, seek: 0)],
                                      diff: [UInt8](repeating: 0, count: 8), extra: [])
        expectControlError(p, index: 1, containing: "reads old bytes 60..<68 outside the old file of 64 bytes")
    }

    @Test func seekingBeforeTheStart() throws {
        let p = try HandMadePatch.phx(old: old, new: [0], tuples: [ControlTuple(add: 0, copy: 0, seek: -1),
                                                                    ControlTuple(add: 0, copy: 1, seek: 0)],
                                      diff: [], extra: [0])
        expectControlError(p, index: 0, containing: "seeks the old cursor to -1, outside 0...64")
    }

    @Test func emptyTupleAfterTheFirst() throws {
        let p = try HandMadePatch.phx(old: old, new: [7, 7], tuples: [ControlTuple(add: 0, copy: 1, seek: 0),
                                                                       ControlTuple(add: 0, copy: 0, seek: 0),
                                                                       ControlTuple(add: 0, copy: 1, seek: 0)],
                                      diff: [], extra: [7, 7])
        expectControlError(p, index: 1, containing: "writes nothing")
    }

    @Test func tuplesWritingLessThanTheNewSize() throws {
        let p = try HandMadePatch.phx(old: old, new: [7, 7], tuples: [ControlTuple(add: 0, copy: 1, seek: 0)],
                                      diff: [], extra: [7]) { $0.extraRawLength = 2 }
        expectControlError(p, index: 1, containing: "write 1 bytes but the declared new size is 2")
    }

    @Test func addPastTheDeclaredNewSize() throws {
        let p = try HandMadePatch.phx(old: old, new: [1, 2, 3], tuples: [ControlTuple(add: 3, copy: 0, seek: 0),
                                                                          ControlTuple(add: 1 << 62, copy: 0, seek: 0)],
                                      diff: [1, 1, 1], extra: []) { $0.controlCount = 2 }
        expectControlError(p, index: 1, containing: "adds 4611686018427387904 bytes at new offset 3, past the declared new size 3")
    }

    /// Old-context order: the look-ahead that places a block's diff bytes runs out of tuples before
    /// the diff bytes the header declares; the error counts the bytes still missing (30 - 10).
    @Test func contextOrderTuplesShortOfTheDeclaredDiffBytes() throws {
        let new = [UInt8](repeating: 0, count: 30)
        let p = try HandMadePatch.phx(old: old, new: new, tuples: [ControlTuple(add: 10, copy: 0, seek: 0)],
                                      diff: [UInt8](repeating: 0, count: 10), extra: []) {
            $0.flags |= DiffOrder.contextFlag
            $0.diffRawLength = 30
        }
        #expect { _ = try PatchApplier.apply(old: old, patch: p) } throws: { error in
            "\(error)".contains("the 1 control tuples add fewer diff bytes than the 20 still declared")
        }
    }

    @Test func overlongVarintInControlStream() throws {
        let raw = [UInt8](repeating: 0xFF, count: 11)
        let p = try HandMadePatch.phx(old: old, new: [1], tuples: [ControlTuple(add: 0, copy: 1, seek: 0)],
                                      diff: [], extra: [1], rawControl: raw)
        #expect(throws: PatcherError.self) { _ = try PatchApplier.apply(old: old, patch: p) }
    }

    @Test func resultNotMatchingTheDeclaredHashIsRejected() throws {
        let p = try HandMadePatch.phx(old: old, new: [1, 2], tuples: [ControlTuple(add: 0, copy: 2, seek: 0)],
                                      diff: [], extra: [1, 3])
        #expect {
            _ = try PatchApplier.apply(old: old, patch: p)
        } throws: { error in
            guard case PatcherError.newChecksumMismatch = error else { return false }
            return true
        }
    }
}

/// Inputs the fuzzers found, kept as regression tests (each also sits in Fuzz/corpus/FuzzPatch).
@Suite struct FuzzPatchRegressionTests {
    /// FuzzPatch's old file.
    static let old: [UInt8] = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 5)) }

    static func bytes(_ hex: String) -> [UInt8] {
        var out = [UInt8]()
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    /// A phx patch in old-context order with the split control layout whose second tuple's end diagonal
    /// puts the old cursor near 2^63: the diff source's look-ahead (which reads tuples before the apply
    /// has checked them) added the segment length to that position and trapped on the overflow.
    /// Found by FuzzPatch after 3.4 million executions (session 3).
    @Test func contextLookAheadNearTheTopOfInt64() {
        let patch = Self.bytes(
            "504858504154434801000300011300000010000000000000f40f0000000000009154c8a47e47d6c17e1bceffc114f53d"
            + "3f592174dae55a619263add0dfdb0bd3631d29ef7378da467e60b041ba63f6113bbe088d36bb0bfa17dd8d567da599c5"
            + "03000000000000001c000000000000001a000000000000000e000000000000001100000000000000ec0f000000000000"
            + "05000000000000000800000000000000befe982128b52ffd00009d000068d00fd4171717170000eea7e7ff010034f802"
            + "28b52ffd00008900000501ed0301ed0301b90601e40d01eb030028b52ffd0000290000381afcde4b28b52ffd00004100"
            + "00696e736572746564")
        #expect(patch.count == 249)
        #expect(throws: PatcherError.self) { _ = try PatchApplier.apply(old: Self.old, patch: patch) }
    }
}
