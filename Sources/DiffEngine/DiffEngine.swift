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
        let report: (Int) -> Void = { scanned in
            progress?(0.3 + 0.6 * Double(scanned) / Double(max(newBytes.count, 1)))
        }
        do {
            if oldBytes.count < Int(Int32.max) {
                let sa = try SuffixSorting.build32(oldBytes)
                defer { sa.deallocate() }
                progress?(0.3)
                try Matcher(old: oldBytes, new: newBytes, sa: UnsafeBufferPointer(sa)).run(&assembler, progress: report)
            } else {
                let sa = try SuffixSorting.build64(oldBytes)
                defer { sa.deallocate() }
                progress?(0.3)
                try Matcher(old: oldBytes, new: newBytes, sa: UnsafeBufferPointer(sa)).run(&assembler, progress: report)
            }
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

    public static func makePatch(old: [UInt8], new: [UInt8], options: DiffOptions = DiffOptions()) throws -> [UInt8] {
        try old.withUnsafeBytes { o in
            try new.withUnsafeBytes { n in try makePatch(old: o, new: n, options: options) }
        }
    }
}
