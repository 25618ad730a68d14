import PatchFormat
import Testing

@Suite struct PhxHeaderTests {
    static let sample = PhxHeader(
        codec: .zstd, level: 19, oldSize: 0x0102, newSize: 0x0304,
        oldSHA256: Array(repeating: 0xAA, count: 32), newSHA256: Array(repeating: 0xBB, count: 32),
        controlCount: 5, controlLength: 10, runsLength: 20, literalsLength: 25, extraLength: 30,
        diffRawLength: 0x0300, literalsRawLength: 0x40, extraRawLength: 4)

    /// The byte layout documented in FORMAT.md, field by field.
    @Test func annotatedByteLayout() {
        let b = Self.sample.encode()
        #expect(b.count == 164)
        #expect(Array(b[0..<8]) == Array("PHXPATCH".utf8))           // magic
        #expect(Array(b[8..<10]) == [1, 0])                           // version 1, LE
        #expect(Array(b[10..<12]) == [0, 0])                          // flags
        #expect(b[12] == 1)                                           // codec zstd
        #expect(b[13] == 19)                                          // level
        #expect(Array(b[14..<16]) == [0, 0])                          // reserved
        #expect(Array(b[16..<24]) == [0x02, 0x01, 0, 0, 0, 0, 0, 0])  // old size
        #expect(Array(b[24..<32]) == [0x04, 0x03, 0, 0, 0, 0, 0, 0])  // new size
        #expect(Array(b[32..<64]) == Array(repeating: 0xAA, count: 32))
        #expect(Array(b[64..<96]) == Array(repeating: 0xBB, count: 32))
        #expect(b[96] == 5 && b[104] == 10 && b[112] == 20 && b[120] == 25 && b[128] == 30)  // count, stream lengths
        #expect(Array(b[136..<138]) == [0x00, 0x03] && b[144] == 0x40 && b[152] == 4)      // raw byte counts
        let crc = UInt32(b[160]) | UInt32(b[161]) << 8 | UInt32(b[162]) << 16 | UInt32(b[163]) << 24
        #expect(crc == CRC32.checksum(Array(b[0..<160])))
    }

    @Test func roundTrip() throws {
        let b = Self.sample.encode()
        #expect(try PhxHeader.decode(b, fileLength: 164 + 85, limits: PatchLimits()) == Self.sample)
    }

    /// Re-encodes `bytes` with a correct CRC after a change, so that the field check itself is tested.
    func withCRC(_ bytes: [UInt8]) -> [UInt8] {
        var b = Array(bytes[0..<160])
        let crc = CRC32.checksum(b)
        withUnsafeBytes(of: crc.littleEndian) { b.append(contentsOf: $0) }
        return b
    }

    @Test func rejectsEachBadField() {
        let good = Self.sample.encode()
        let limits = PatchLimits()
        var b = good
        b[20] ^= 1
        #expect(throws: PatchFormatError.self) { try PhxHeader.decode(b, fileLength: nil, limits: limits) }  // CRC
        b = good; b[8] = 2
        #expect(throws: PatchFormatError.unsupportedVersion(2)) { try PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits) }
        b = good; b[10] = 4
        #expect(throws: PatchFormatError.unknownFlags(4)) { try PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits) }
        b = good; b[11] = 1
        #expect(throws: PatchFormatError.unknownFlags(256)) { try PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits) }
        // Bit 0 is old-context order: accepted, and decoded.
        b = good; b[10] = 1
        #expect((try? PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits))?.diffOrder == .oldContext)
        // Bit 1 is the split control layout.
        b = good; b[10] = 2
        #expect((try? PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits))?.splitControl == true)
        b = good; b[12] = 9
        #expect(throws: PatchFormatError.unknownCodec(9)) { try PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits) }
        b = good; b[0] = UInt8(ascii: "X")
        #expect(throws: PatchFormatError.badMagic(found: Array("XHXPATCH".utf8))) {
            try PhxHeader.decode(b, fileLength: nil, limits: limits)
        }
        #expect(throws: PatchFormatError.truncated(part: "phx header", needed: 164, available: 100)) {
            try PhxHeader.decode(Array(good.prefix(100)), fileLength: nil, limits: limits)
        }
        // Raw lengths that do not add up to the new size.
        b = good; b[152] = 5
        #expect(throws: PatchFormatError.self) { try PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits) }
        // More literal bytes than diff bytes.
        b = good; b[144...145] = [0x01, 0x04]
        #expect(throws: PatchFormatError.self) { try PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits) }
        // More tuples than the new size allows.
        b = good; b[96...103] = [0xFF, 0xFF, 0, 0, 0, 0, 0, 0]
        #expect(throws: PatchFormatError.self) { try PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits) }
        // A stream length that overflows.
        b = good; b[104...111] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]
        b[112...119] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]
        b[120...127] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]
        #expect(throws: PatchFormatError.self) { try PhxHeader.decode(withCRC(b), fileLength: nil, limits: limits) }
    }

    @Test func fileLengthMustMatchExactly() {
        let b = Self.sample.encode()
        #expect(throws: PatchFormatError.truncated(part: "patch (header and streams)", needed: 249, available: 248)) {
            try PhxHeader.decode(b, fileLength: 248, limits: PatchLimits())
        }
        #expect(throws: PatchFormatError.trailingData(location: "after the extra stream", detail: "1 bytes past the declared end at offset 249")) {
            try PhxHeader.decode(b, fileLength: 250, limits: PatchLimits())
        }
    }

    @Test func declaredSizeAboveTheLimitIsRefused() {
        #expect(throws: PatchFormatError.limitExceeded(field: "declared new size", value: 0x0304, limit: 100)) {
            try PhxHeader.decode(Self.sample.encode(), fileLength: nil, limits: PatchLimits(maxOutputSize: 100))
        }
    }
}

@Suite struct BsdiffHeaderTests {
    @Test func annotatedByteLayout() {
        let b = BsdiffHeader(controlLength: 0x10, diffLength: 0x2000, newSize: 0x30_0000).encode()
        #expect(b.count == 32)
        #expect(Array(b[0..<8]) == Array("BSDIFF40".utf8))
        #expect(Array(b[8..<16]) == [0x10, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(b[16..<24]) == [0, 0x20, 0, 0, 0, 0, 0, 0])
        #expect(Array(b[24..<32]) == [0, 0, 0x30, 0, 0, 0, 0, 0])
    }

    @Test func rejectsNegativeFieldsTruncationAndHugeSizes() {
        var b = BsdiffHeader.magic
        SignMagnitude64.encode(-5, into: &b)
        SignMagnitude64.encode(0, into: &b)
        SignMagnitude64.encode(0, into: &b)
        #expect(throws: PatchFormatError.invalidField(field: "control block length (offset 8)", value: "-5", reason: "negative")) {
            try BsdiffHeader.decode(b, fileLength: nil, limits: PatchLimits())
        }
        let ok = BsdiffHeader(controlLength: 100, diffLength: 100, newSize: 10).encode()
        #expect(throws: PatchFormatError.truncated(part: "control and diff blocks", needed: 232, available: 32)) {
            try BsdiffHeader.decode(ok, fileLength: 32, limits: PatchLimits())
        }
        let huge = BsdiffHeader(controlLength: 0, diffLength: 0, newSize: 1 << 62).encode()
        #expect(throws: PatchFormatError.limitExceeded(field: "declared new size", value: 1 << 62, limit: PatchLimits.defaultMaxOutputSize)) {
            try BsdiffHeader.decode(huge, fileLength: nil, limits: PatchLimits())
        }
        #expect(throws: PatchFormatError.self) { try BsdiffHeader.decode(Array(ok.prefix(31)), fileLength: nil, limits: PatchLimits()) }
    }

    @Test func detectsBothMagics() throws {
        #expect(try PatchKind.detect(Array("BSDIFF40".utf8)) == .bsdiff)
        #expect(try PatchKind.detect(Array("PHXPATCH".utf8)) == .phx)
        #expect(throws: PatchFormatError.badMagic(found: Array("BSDIFF41".utf8))) { try PatchKind.detect(Array("BSDIFF41".utf8)) }
        #expect(throws: PatchFormatError.truncated(part: "magic", needed: 8, available: 3)) { try PatchKind.detect([1, 2, 3]) }
    }
}

@Suite struct BundleManifestLimitTests {
    /// Front-coded paths: each shares up to 4 KiB with the one before for a few bytes of manifest.
    /// Decoded path bytes are capped (`BundleLimits.maxPathBytes`), so a small hostile manifest
    /// cannot decode to gigabytes of strings.
    @Test func decodedPathBytesAreCapped() throws {
        let base = Array(repeating: String(repeating: "a", count: 255), count: 15).joined(separator: "/")
        let ops = (0..<2000).map { BundleOperation(path: base + "/" + String(repeating: "0", count: 4 - String($0).count) + String($0),
                                                   op: .directory(mode: 0o755)) }
        let raw = BundleManifest(touched: [], operations: ops).encode()
        let decoded = UInt64(ops.reduce(0) { $0 + $1.path.utf8.count })
        #expect(raw.count < 32 << 10 && decoded > 7 << 20, "\(raw.count) bytes of manifest for \(decoded) bytes of paths")
        #expect(try BundleManifest.decode(raw, limits: BundleLimits()).operations == ops)
        #expect {
            _ = try BundleManifest.decode(raw, limits: BundleLimits(maxPathBytes: 4 << 20))
        } throws: { error in
            guard case PatchFormatError.limitExceeded(let field, let value, let limit) = error else { return false }
            return field.hasPrefix("total path bytes") && value > limit && limit == 4 << 20
        }
    }
}
