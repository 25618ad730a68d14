import PatchFormat

/// Builds patches by hand from explicit control tuples and stream contents, so that tests can craft
/// exactly the hostile or malformed input they mean to test.
public enum HandMadePatch {
    /// The CRC-32 that ends a header: of a `phx` patch's first 160 bytes, a bundle's first 152.
    public static let phxCRCOffset = 160, bundleCRCOffset = 152

    /// The little-endian 64-bit header field at `offset`.
    public static func field(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    /// Sets the little-endian 64-bit header field at `offset` and reseals the header's CRC (at
    /// `crcOffset`), so that the field, not the CRC, is what a reader checks.
    public static func setField(_ bytes: inout [UInt8], at offset: Int, to value: UInt64, crcAt crcOffset: Int) {
        for k in 0..<8 { bytes[offset + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
        reseal(&bytes, crcAt: crcOffset)
    }

    /// Recomputes the header's CRC-32 (of the bytes before `crcOffset`) after a test changed them.
    public static func reseal(_ bytes: inout [UInt8], crcAt crcOffset: Int) {
        let crc = CRC32.checksum(Array(bytes[0..<crcOffset]))
        for k in 0..<4 { bytes[crcOffset + k] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(k))) }
    }

    public static func compress(_ bytes: [UInt8], codec: CodecID) throws -> [UInt8] {
        let e = try codec.makeEncoder()
        try e.write(bytes)
        return try e.finish()
    }

    /// A BSDIFF40 patch with these tuples (as 24-byte sign-magnitude records) and raw streams.
    public static func bsdiff(tuples: [ControlTuple], diff: [UInt8], extra: [UInt8], newSize: UInt64,
                              rawControl: [UInt8]? = nil) throws -> [UInt8] {
        var control = [UInt8]()
        for t in tuples {
            SignMagnitude64.encode(t.add, into: &control)
            SignMagnitude64.encode(t.copy, into: &control)
            SignMagnitude64.encode(t.seek, into: &control)
        }
        let c = try compress(rawControl ?? control, codec: .bzip2)
        let d = try compress(diff, codec: .bzip2)
        let x = try compress(extra, codec: .bzip2)
        return BsdiffHeader(controlLength: UInt64(c.count), diffLength: UInt64(d.count), newSize: newSize).encode() + c + d + x
    }

    /// A BSDIFF40 header with arbitrary (possibly negative) raw fields.
    public static func bsdiffHeader(controlLength: Int64, diffLength: Int64, newSize: Int64) -> [UInt8] {
        var out = BsdiffHeader.magic
        SignMagnitude64.encode(controlLength, into: &out)
        SignMagnitude64.encode(diffLength, into: &out)
        SignMagnitude64.encode(newSize, into: &out)
        return out
    }

    /// A phx patch with these tuples and raw streams; the header's hashes are those of `old` and `new`
    /// unless overridden, and its counts are derived from the tuples unless overridden.
    public static func phx(old: [UInt8], new: [UInt8], tuples: [ControlTuple], diff: [UInt8], extra: [UInt8],
                           codec: CodecID = .zstd, rawControl: [UInt8]? = nil, rawRuns: [UInt8]? = nil,
                           adjust: (inout PhxHeader) -> Void = { _ in }) throws -> [UInt8] {
        var control = [UInt8]()
        for t in tuples {
            Varint.appendUnsigned(UInt64(bitPattern: t.add), to: &control)
            Varint.appendUnsigned(UInt64(bitPattern: t.copy), to: &control)
            Varint.appendSigned(t.seek, to: &control)
        }
        var splitter = DiffRunSplitter()
        var literalBytes = [UInt8]()
        diff.withUnsafeBufferPointer { splitter.add($0) { literalBytes.append(contentsOf: $0) } }
        splitter.finish()
        let c = try compress(rawControl ?? control, codec: codec)
        let r = try compress(rawRuns ?? splitter.runs, codec: codec)
        let l = try compress(literalBytes, codec: codec)
        let x = try compress(extra, codec: codec)
        var header = PhxHeader(
            codec: codec, level: 0, oldSize: UInt64(old.count), newSize: UInt64(new.count),
            oldSHA256: SHA256Hasher.hash(old), newSHA256: SHA256Hasher.hash(new),
            controlCount: UInt64(tuples.count), controlLength: UInt64(c.count), runsLength: UInt64(r.count),
            literalsLength: UInt64(l.count), extraLength: UInt64(x.count), diffRawLength: UInt64(diff.count),
            literalsRawLength: UInt64(literalBytes.count), extraRawLength: UInt64(extra.count))
        adjust(&header)
        return header.encode() + c + r + l + x
    }
}
