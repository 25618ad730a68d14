import PatchFormat

/// Makes binary patches between two byte strings.
public enum DiffEngine {
    /// Makes a patch that turns `old` into `new`.
    ///
    /// Cost: a suffix sort of `old` (libdivsufsort, near-linear in practice), then one pass over `new`
    /// with a binary search per position scanned outside matches (O(n log m)), then compression.
    /// Peak memory: `old` + `new` (the caller's buffers) + 4·|old| for the suffix array (8·|old| at
    /// 2 GiB and above) + the compressed patch + the codec's state (zstd level 19 with a large
    /// window: up to a few hundred MB on inputs over 64 MB). That is about 6n for equal sizes, against
    /// bsdiff 4.3's 17n+.
    ///
    /// - Parameter progress: called with a fraction in 0...1 as the work advances (from this thread).
    public static func makePatch(old: UnsafeRawBufferPointer, new: UnsafeRawBufferPointer,
                                 options: DiffOptions = DiffOptions(),
                                 progress: ((Double) -> Void)? = nil) throws -> [UInt8] {
        try options.validate()
        let oldBytes = old.bindMemory(to: UInt8.self)
        let newBytes = new.bindMemory(to: UInt8.self)
        progress?(0)
        let level = options.level ?? options.codec.defaultLevel
        // phx: control, diff-runs, diff-literals, extra. BSDIFF40: control, diff, extra.
        let streamCount = options.format == .phx ? 4 : 3
        let encoders = try (0..<streamCount).map { _ in
            try options.codec.makeEncoder(level: level, threads: options.threads)
        }
        var assembler = StreamAssembler(old: oldBytes, new: newBytes, format: options.format,
                                        control: encoders[0], diff: encoders[1],
                                        literals: streamCount == 4 ? encoders[2] : nil, extra: encoders[streamCount - 1])
        // Suffix sorting is about a third of the work, matching and compressing the rest.
        let report: ((Int) -> Void)? = progress == nil ? nil : { scanned in
            progress?(0.3 + 0.6 * Double(scanned) / Double(max(newBytes.count, 1)))
        }
        do {
            try match(old: oldBytes, new: newBytes, into: &assembler, progress: report)
            try assembler.finish()
        } catch let e as PatchFormatError {
            throw DiffEngineError.format(e)
        }
        let streams = try encoders.map { try $0.finish() }
        var out: [UInt8]
        switch options.format {
        case .phx:
            let header = PhxHeader(
                codec: options.codec, level: UInt8(clamping: level),
                oldSize: UInt64(oldBytes.count), newSize: UInt64(newBytes.count),
                oldSHA256: SHA256Hasher.hash(old), newSHA256: SHA256Hasher.hash(new),
                controlCount: assembler.tupleCount,
                controlLength: UInt64(streams[0].count), runsLength: UInt64(streams[1].count),
                literalsLength: UInt64(streams[2].count), extraLength: UInt64(streams[3].count),
                diffRawLength: assembler.diffRawLength, literalsRawLength: assembler.literalsRawLength,
                extraRawLength: assembler.extraRawLength)
            out = header.encode()
        case .bsdiff:
            out = BsdiffHeader(controlLength: UInt64(streams[0].count), diffLength: UInt64(streams[1].count),
                               newSize: UInt64(newBytes.count)).encode()
        }
        out.reserveCapacity(out.count + streams.reduce(0) { $0 + $1.count })
        for s in streams { out.append(contentsOf: s) }
        progress?(1)
        return out
    }

    /// Suffix-sorts `old` and runs the matcher over `new`, feeding `sink`.
    static func match<Sink: MatchSink>(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>,
                                       into sink: inout Sink, progress: ((Int) -> Void)?) throws {
        if old.count < Int(Int32.max) {
            let sa = try SuffixSorting.build32(old)
            defer { sa.deallocate() }
            try Matcher(old: old, new: new, sa: UnsafeBufferPointer(sa)).run(&sink, progress: progress)
        } else {
            let sa = try SuffixSorting.build64(old)
            defer { sa.deallocate() }
            try Matcher(old: old, new: new, sa: UnsafeBufferPointer(sa)).run(&sink, progress: progress)
        }
    }

    /// The four uncompressed phx streams of a diff, for bundles (which compress all files' streams
    /// together).
    static func rawPhxStreams(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>) throws -> RawStreams {
        let e = try (0..<4).map { _ in try CodecID.uncompressed.makeEncoder() }
        var assembler = StreamAssembler(old: old, new: new, format: .phx, control: e[0], diff: e[1], literals: e[2], extra: e[3])
        try match(old: old, new: new, into: &assembler, progress: nil)
        try assembler.finish()
        return RawStreams(control: try e[0].finish(), runs: try e[1].finish(), literals: try e[2].finish(),
                          extra: try e[3].finish(), tuples: assembler.tupleCount, diffBytes: assembler.diffRawLength,
                          literalBytes: assembler.literalsRawLength, extraBytes: assembler.extraRawLength)
    }

    public static func makePatch(old: [UInt8], new: [UInt8], options: DiffOptions = DiffOptions()) throws -> [UInt8] {
        try old.withUnsafeBytes { o in
            try new.withUnsafeBytes { n in try makePatch(old: o, new: n, options: options) }
        }
    }
}

/// Uncompressed phx streams of one file's diff.
struct RawStreams {
    var control: [UInt8]
    var runs: [UInt8]
    var literals: [UInt8]
    var extra: [UInt8]
    var tuples: UInt64
    var diffBytes: UInt64
    var literalBytes: UInt64
    var extraBytes: UInt64

    /// A file stored whole: one tuple that copies everything from the extra stream.
    static func whole(_ new: UnsafeBufferPointer<UInt8>) -> RawStreams {
        var control = [UInt8]()
        if !new.isEmpty {
            Varint.appendUnsigned(0, to: &control)
            Varint.appendUnsigned(UInt64(new.count), to: &control)
            Varint.appendSigned(0, to: &control)
        }
        return RawStreams(control: control, runs: [], literals: [], extra: Array(new), tuples: new.isEmpty ? 0 : 1,
                          diffBytes: 0, literalBytes: 0, extraBytes: UInt64(new.count))
    }
}
