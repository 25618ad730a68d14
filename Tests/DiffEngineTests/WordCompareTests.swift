@testable import DiffEngine
import Testing
import TestSupport

/// The matcher's comparisons 8 bytes at a time (`equalByteCount`, the fast paths of `joinAlignments`)
/// against the byte-by-byte rules they replace.
@Suite struct WordCompareTests {
    /// Pairs of equal length that agree in long runs, differ in single bytes, in one bit (the top bit
    /// and the lowest), or everywhere.
    static func pairs(seed: UInt64) -> [([UInt8], [UInt8])] {
        var rng = SeededGenerator(seed: seed)
        var out: [([UInt8], [UInt8])] = []
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200, 1000] {
            for density in [0, 1, 3, 20, 100] {
                let a = rng.bytes(length)
                var b = a
                for i in 0..<length where density > 0 && Int(rng.next() % 100) < density {
                    switch rng.next() % 4 {
                    case 0: b[i] ^= 0x80
                    case 1: b[i] ^= 0x01
                    case 2: b[i] ^= 0xFF
                    default: b[i] = UInt8(truncatingIfNeeded: rng.next())
                    }
                }
                out.append((a, b))
            }
        }
        return out
    }

    @Test func equalByteCountCountsEveryAgreeingByte() {
        for (a, b) in Self.pairs(seed: 71) {
            let expected = zip(a, b).filter { $0 == $1 }.count
            let counted = a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    pa.count == 0 ? 0 : equalByteCount(pa.baseAddress!, pb.baseAddress!, pa.count)
                }
            }
            #expect(counted == expected, "\(a.count) bytes")
        }
    }

    /// bsdiff's join, byte by byte, as `joinAlignments` did it before the word-wise paths.
    static func referenceJoin(old: [UInt8], new: [UInt8], lastScan: Int, lastPos: Int, scan: Int, pos: Int,
                              extendBackward: Bool) -> (tuple: RecordedTuple, next: (Int, Int)) {
        var s = 0, bestF = 0, lenF = 0, i = 0
        while lastScan + i < scan && lastPos + i < old.count {
            if old[lastPos + i] == new[lastScan + i] { s += 1 }
            i += 1
            if s * 2 - i > bestF * 2 - lenF { bestF = s; lenF = i }
        }
        var lenB = 0
        if extendBackward {
            var s = 0, bestB = 0, i = 1
            while scan >= lastScan + i && pos >= i {
                if old[pos - i] == new[scan - i] { s += 1 }
                if s * 2 - i > bestB * 2 - lenB { bestB = s; lenB = i }
                i += 1
            }
        }
        if lastScan + lenF > scan - lenB {
            let overlap = (lastScan + lenF) - (scan - lenB)
            var s = 0, bestS = 0, lenS = 0
            for i in 0..<overlap {
                if new[lastScan + lenF - overlap + i] == old[lastPos + lenF - overlap + i] { s += 1 }
                if new[scan - lenB + i] == old[pos - lenB + i] { s -= 1 }
                if s > bestS { bestS = s; lenS = i + 1 }
            }
            lenF += lenS - overlap
            lenB -= lenS
        }
        return (RecordedTuple(newStart: lastScan, oldStart: lastPos, add: lenF, copy: (scan - lenB) - (lastScan + lenF)),
                (scan - lenB, pos - lenB))
    }

    /// Random joins over versions that share long stretches with sparse edits (where the word-wise paths
    /// run), at random alignments: the same tuple and the same next start as byte by byte.
    @Test func joinAlignmentsAgreesWithTheByteWiseRule() throws {
        var rng = SeededGenerator(seed: 72)
        for round in 0..<400 {
            let old = rng.bytes(Int(rng.next() % 3000) + 1)
            var new = old
            for i in new.indices where rng.next() % 100 < [0, 1, 5, 40][round % 4] { new[i] = UInt8(truncatingIfNeeded: rng.next()) }
            let lastScan = Int(rng.next() % UInt64(new.count))
            let scan = lastScan + Int(rng.next() % UInt64(new.count - lastScan + 1))
            // Previous alignment: often the same as the next (a long shared stretch), else anywhere.
            let lastPos = Int(rng.next() % UInt64(old.count))
            let pos = round % 3 == 0 ? min(old.count, scan) : Int(rng.next() % UInt64(old.count + 1))
            let back = rng.next() % 2 == 0
            let expected = Self.referenceJoin(old: old, new: new, lastScan: lastScan, lastPos: lastPos, scan: scan, pos: pos,
                                              extendBackward: back)
            var sink = TupleRecorder()
            let next = try old.withUnsafeBufferPointer { o in
                try new.withUnsafeBufferPointer { n in
                    try joinAlignments(old: o, new: n, lastScan: lastScan, lastPos: lastPos, scan: scan, pos: pos,
                                       extendBackward: back, &sink)
                }
            }
            let got = sink.tuples.map { [$0.newStart, $0.oldStart, $0.add, $0.copy] }
            let want = [expected.tuple].map { [$0.newStart, $0.oldStart, $0.add, $0.copy] }
            #expect(got == want, "round \(round)")
            #expect(next == expected.next, "round \(round)")
        }
    }
}
