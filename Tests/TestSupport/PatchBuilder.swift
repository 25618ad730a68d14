import PatchFormat

/// Builds patches by hand from explicit control tuples and stream contents, so that tests can craft
/// exactly the hostile or malformed input they mean to test.
public enum HandMadePatch {
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
