import Dispatch
import PatchFormat
import TreeIO

/// How `makePatchFile` made a patch.
public struct PatchFileSummary: Sendable {
    /// Size of the patch written.
    public var patchBytes: UInt64
    /// Size of the new file.
    public var newBytes: UInt64
    /// True when the memory limit required the anchor-index mode.
    public var lowMemory: Bool
    /// Low-memory mode: the average spacing of old's anchors (matches much shorter are mostly missed).
    public var anchorSpacing: Int?
}

extension DiffEngine {
    /// What the process needs besides the index in the low-memory mode: the runtime and libraries, the
    /// mapped windows of both files, four capped zstd contexts (or bzip2's blocks), and the spool
    /// buffers. Measured on x86-64 Linux, with headroom.
    static let lowMemoryOverhead = 80 << 20
    /// The smallest `--memory-limit` the low-memory mode accepts (leaves the index at least 16 MiB).
    public static let minimumMemoryLimit = lowMemoryOverhead + (16 << 20)
    /// What the old-context diff order adds in the low-memory mode: the bits of a 16 Mi block, their
    /// sorted copy and up to 256 Ki records of non-zero bytes (`ContextRunCoder`, 6.3 MiB), a fifth
    /// compressor and its spool.
    static let contextOrderCost = 16 << 20

    /// Peak memory of `makePatchFile`'s in-memory engine for files of these sizes, as a conservative
    /// planning estimate: the largest of its three phases (`makePatch` states them), plus the process
    /// (~21 MB measured), the context-order block and 10% for the allocator.
    /// - Sorting: old and libdivsufsort's arrays (4 bytes a byte of old and of each part's overlap), the 9-gram filter
    ///   (new is read only afterwards). With hash chains: old, the positions unpacked (4 bytes a byte)
    ///   and two cursors per bucket (the filter comes once they are packed).
    /// - Matching: both files, the packed index (`OldIndex.matchingBytes` or `ChainIndex.matchingBytes`), the tuples (32 bytes each,
    ///   allowing one per 128 bytes of new; real files have one per 150-2,000).
    /// - Compressing: both files and the compressors. zstd and the others: every stream's context at
    ///   once (~48 MiB each at most). xz: the raw streams it holds (up to about 1.5x new with array
    ///   growth) and one encoder, or several side by side within what the freed index held.
    /// Measured peaks are 40-90% of it on the corpus (numpy 77 of 199 MB, ruff 164 of 253, polars 1.32
    /// of 1.52 GB). `best` runs both indexes one after the other: the larger of the two estimates, plus
    /// new's size for what the first run freed but the allocator kept (measured: up to 29 MB on ruff).
    public static func estimatedPeakMemory(oldSize: Int, newSize: Int, options: DiffOptions) -> Int {
        let tried = options.index.tried(oldCount: oldSize)
        let retained = tried.count > 1 ? newSize : 0
        return tried.map { estimatedPeakMemory(oldSize: oldSize, newSize: newSize, options: options, chains: $0 == .hashChains) }
            .max()! + retained
    }

    private static func estimatedPeakMemory(oldSize: Int, newSize: Int, options: DiffOptions, chains: Bool) -> Int {
        let (building, index) = indexMemory(oldSize: oldSize, chains: chains)
        let sorting = oldSize + building
        let matching = oldSize + newSize + index + newSize / 4
        let level = options.level ?? options.codec.defaultLevel
        let (encoder, holds) = options.codec.encoderMemory(level: level)
        let streams = options.format == .phx ? 7 : 3
        let compressors = holds ? max(newSize + newSize / 2 + encoder, index) : streams * encoder
        let compressing = oldSize + newSize + compressors
        return (max(sorting, matching, compressing) + contextOrderCost + (32 << 20)) / 10 * 11
    }

    /// What the index of an old file of `oldSize` bytes takes besides old itself: while it is built
    /// (libdivsufsort's arrays, 4 bytes a byte of old and of each part's overlap, and the gram filter; or
    /// the chains' unpacked positions and bucket cursors) and while it is searched (packed).
    static func indexMemory(oldSize: Int, chains: Bool) -> (building: Int, searching: Int) {
        let overlaps = chains ? 0 : SuffixArrayParts.layout(count: oldSize).reduce(0) { $0 + $1.end - $1.start - $1.count }
        let building = 4 * (oldSize + overlaps) + (chains ? 8 << ChainIndex.headBits(for: oldSize) : oldSize / 2)
        return (building, chains ? ChainIndex.matchingBytes(count: oldSize) : OldIndex.matchingBytes(count: oldSize))
    }

    /// Makes a patch from the file `oldPath` to the file `newPath` and writes it atomically to `patchPath`.
    ///
    /// Without `options.memoryLimit`, or when `estimatedPeakMemory` fits under it, this maps both files
    /// (see below) and calls `makePatch` (best patches; peak memory as stated there). Otherwise it
    /// switches to the low-memory mode: both files are mapped too; old is indexed by
    /// content-defined anchors in a table sized from the limit (`AnchorIndex`), new is matched in one
    /// pass (`AnchorMatcher`), the pages behind the scan are dropped as it goes, and the compressed
    /// streams spool to unnamed temporary files beside the patch. (Mapped input must not be truncated
    /// while the diff runs: that is a SIGBUS.) Peak resident memory stays under the limit for files of
    /// any size (beyond RAM, beyond 4 GiB); time is O(old + new). The cost is patch size: matches shorter than the anchor
    /// spacing are mostly missed. The old-context diff order costs `contextOrderCost` more; with less
    /// room the diff is in natural order.
    public static func makePatchFile(oldPath: String, newPath: String, to patchPath: String,
                                     options: DiffOptions = DiffOptions(),
                                     progress: ((Double) -> Void)? = nil) throws -> PatchFileSummary {
        try options.validate()
        if let limit = options.memoryLimit {
            // Mapped, not read: a mapping costs no memory until its pages are touched.
            let old = try MappedFile(path: oldPath)
            let new = try MappedFile(path: newPath)
            if options.alwaysLowMemory || estimatedPeakMemory(oldSize: old.count, newSize: new.count, options: options) > limit {
                return try makeLowMemory(old: old, new: new, to: patchPath, limit: limit, options: options, progress: progress)
            }
        }
        // Both files are mapped. Matching reads all of old, at random, so its pages stay (mapping it
        // saves the copy a read makes: 16 ms of the Django tar's 27 MB). New's pages are dropped behind
        // the block scan, after the filter of its strings, and behind each later pass (the digest,
        // matching, emitting the tuples), so that it is never all resident beside the index. Both are
        // checked at the end against what was first read, so a change meanwhile is an error (a
        // truncation is a SIGBUS, which `phoenix-diff` reports as an I/O error; a library caller needs
        // a handler such as `phx_install_cleanup_handlers`). For the suffix array new is mapped once
        // old is indexed; the hash chains need it first: they index only what its block matches leave
        // of old.
        let old = try MappedFile(path: oldPath)
        progress?(0)
        let (bytes, newCount) = try smallest(of: options.index.tried(oldCount: old.count), progress: progress,
                                             size: { $0.0.count }) { kind, part in
            kind == .hashChains
                ? try makeChainPatch(old: old, newPath: newPath, options: options, progress: part)
                : try makePatch(index: OldIndex(old.bytes, threads: options.threads, hashing: .withParts), old: old,
                                new: MappedFile(path: newPath), options: options, progress: part)
        }
        let writer = try AtomicFileWriter(destination: patchPath, mode: 0o644)
        try bytes.withUnsafeBytes { try writer.write($0) }
        try writer.commit()
        return PatchFileSummary(patchBytes: UInt64(bytes.count), newBytes: UInt64(newCount), lowMemory: false, anchorSpacing: nil)
    }

    /// Maps new, finds its block matches, indexes the rest of old in hash chains and makes the patch;
    /// returns it and new's size. New's pages are dropped behind the block scan, part by part (with
    /// new resident beside old and the anchors, the scan was the peak on the Django tar), and once the
    /// filter of its strings is made: the chains' build (4 bytes a position and two cursors a bucket)
    /// with new resident beside it would be the peak.
    private static func makeChainPatch(old: MappedFile, newPath: String, options: DiffOptions,
                                       progress: ((Double) -> Void)?) throws -> ([UInt8], Int) {
        let oldBytes = old.bytes
        let new = try MappedFile(path: newPath)
        // Taken out of the optional into the index's build, so that its mask is freed with the build.
        var positions: IndexedPositions? = IndexedPositions.find(old: oldBytes, new: new.bytes, threads: options.threads,
                                                                 scanned: { new.release($0) })
        new.releaseAll()
        return try makePatch(index: ChainIndex(oldBytes, threads: options.threads, hashing: .withParts, positions: positions.take()!), old: old,
                             new: new, options: options, progress: progress)
    }

    /// Makes the patch from the mapped old, indexed, to the mapped new; returns it and new's size.
    private static func makePatch<Index: MatchIndex & ~Copyable>(index: consuming Index, old: MappedFile,
                                                                 new: MappedFile, options: DiffOptions,
                                                                 progress: ((Double) -> Void)?) throws -> ([UInt8], Int) {
        (try makePatch(index: index, old: UnsafeRawBufferPointer(old.bytes), new: UnsafeRawBufferPointer(new.bytes),
                       options: options, progress: progress, newPages: new, oldPages: old), new.count)
    }

    static func makeLowMemory(old: MappedFile, new: MappedFile, to patchPath: String, limit: Int,
                              options: DiffOptions, progress: ((Double) -> Void)?) throws -> PatchFileSummary {
        guard limit >= minimumMemoryLimit else {
            throw DiffEngineError.unsupportedCombination(
                "a memory limit of \(limit >> 20) MiB is too small for these files: the in-memory diff needs about "
                + "\(estimatedPeakMemory(oldSize: old.count, newSize: new.count, options: options) >> 20) MiB and the "
                + "low-memory mode at least \(minimumMemoryLimit >> 20) MiB")
        }
        guard old.count <= AnchorIndex.maxPosition else {
            throw DiffEngineError.unsupportedCombination("the old file is over 1 TiB, beyond the low-memory index")
        }
        // phx: the old-context order as well when the limit leaves room for it (auto), or only it.
        let affordsContext = limit >= minimumMemoryLimit + contextOrderCost
        if options.format == .phx && options.diffOrder == .oldContext && !affordsContext {
            throw DiffEngineError.unsupportedCombination(
                "the old-context diff order needs a memory limit of at least \((minimumMemoryLimit + contextOrderCost) >> 20) MiB "
                + "in the low-memory mode (got \(limit >> 20) MiB); use --diff-order natural or a larger limit")
        }
        let budget = limit - lowMemoryOverhead
        let plainPlan = AnchorIndex.plan(oldCount: old.count, budget: budget)
        let contextPlan = AnchorIndex.plan(oldCount: old.count, budget: budget - contextOrderCost)
        // Auto: the context order only when it leaves the anchors as dense (denser anchors gain more).
        let choices = StreamChoices(options: options, context: options.format == .phx && affordsContext
            && (options.diffOrder == .oldContext || (options.diffOrder == nil && contextPlan.rateBits == plainPlan.rateBits)))
        let plan = choices.context ? contextPlan : plainPlan
        let index = AnchorIndex(rateBits: plan.rateBits, tableBits: plan.tableBits)
        progress?(0)

        let (oldSHA256, newSHA256) = anchorIndexAndHash(old: old, new: new, into: index, threads: options.threads) {
            progress?(0.3 * $0)
        }
        let oldBytes = old.bytes, newBytes = new.bytes

        // Match, spooling each compressed stream to a temporary file beside the patch.
        let level = options.level ?? options.codec.defaultLevel
        let streamCount = options.format == .phx ? 4 : 3
        // The streams in file order, then (if made) the diff runs in old-context order, then (phx) the
        // control stream in the split layout.
        let contextIndex = streamCount, splitIndex = streamCount + (choices.context ? 1 : 0)
        let encoders = try (0..<(splitIndex + (choices.split ? 1 : 0))).map { _ in
            try options.codec.makeEncoder(level: level, threads: 1, lowMemory: true)
        }
        let spools = try encoders.indices.map { _ in try AtomicFileWriter(destination: patchPath, spool: true) }
        defer { for s in spools { s.abort() } }
        func drain() throws {
            for (e, s) in zip(encoders, spools) {
                let out = e.takeOutput()
                if !out.isEmpty { try out.withUnsafeBytes { try s.write($0) } }
            }
        }
        var assembler = StreamAssembler(old: oldBytes, new: newBytes, format: options.format,
                                        control: encoders[0], diff: encoders[1],
                                        literals: streamCount == 4 ? encoders[2] : nil, extra: encoders[streamCount - 1],
                                        contextRuns: choices.context ? encoders[contextIndex] : nil, naturalRuns: choices.natural,
                                        splitControl: choices.split ? encoders[splitIndex] : nil,
                                        interleavedControl: choices.interleaved)
        var matcher = AnchorMatcher(old: oldBytes, new: newBytes, index: index)
        matcher.onProbes = { releaseOldIfOver(old) }
        assembler.onOldPages = { releaseOldIfOver(old) }
        do {
            try matcher.run(&assembler) { done in
                new.release(0..<done)
                old.releaseAll()
                try drain()
                progress?(0.3 + 0.65 * Double(done) / Double(max(1, newBytes.count)))
            }
            try assembler.finish()
        } catch let e as PatchFormatError {
            throw DiffEngineError.format(e)
        }
        for (e, s) in zip(encoders, spools) {
            let out = try e.finish()
            try out.withUnsafeBytes { try s.write($0) }
        }
        old.releaseAll()
        new.releaseAll()

        var chosen = Array(spools.prefix(streamCount))
        // A sparse diff keeps the natural order, as in the usual engine (`StreamChoices.sparseDiff`).
        let kept = choices.dropsContext(assembler) ? choices.withoutContext : choices
        let flags = kept.keepSmaller(&chosen, context: kept.context ? spools[contextIndex] : nil,
                                     split: kept.split ? spools[splitIndex] : nil) { $0.bytesWritten }
        let header = header(options: options, level: level, oldSize: old.count, newSize: new.count,
                            oldSHA256: oldSHA256, newSHA256: newSHA256, assembler: assembler,
                            lengths: chosen.map(\.bytesWritten), flags: flags)
        let writer = try AtomicFileWriter(destination: patchPath, mode: 0o644)
        try header.withUnsafeBytes { try writer.write($0) }
        for s in chosen { try s.copyContents(to: writer) }
        try writer.commit()
        progress?(1)
        return PatchFileSummary(patchBytes: writer.bytesWritten, newBytes: UInt64(new.count), lowMemory: true, anchorSpacing: 1 << plan.rateBits)
    }

    /// What the low-memory routes let mapped files keep resident (new's window behind the scan, the
    /// pages of old that lookups and extensions read) before old's are released: within the overhead
    /// they reserve beside the index (`lowMemoryOverhead`, the bundle's anchor windows).
    static let mappedResidency = 32 << 20

    /// Releases all of old's pages when the process's mapped files are over `mappedResidency`.
    static func releaseOldIfOver(_ old: MappedFile) {
        if MappedFile.residentFileBytes() > mappedResidency { old.releaseAll() }
    }

    /// Adds old's anchors to `index`, hashing old on the way, while new is hashed on another core (with
    /// `threads` > 1); both files' pages are dropped behind the walk. Returns both SHA-256 digests;
    /// `progress` gets the fraction of both files walked.
    static func anchorIndexAndHash(old: MappedFile, new: MappedFile, into index: AnchorIndex, threads: Int,
                                   progress: ((Double) -> Void)? = nil) -> (old: [UInt8], new: [UInt8]) {
        let oldHasher = SHA256Hasher(), newHasher = SHA256Hasher()
        let oldBytes = old.bytes
        let total = Double(max(1, old.count + new.count))
        let indexOld = {
            walk(old, hashing: oldHasher) { range in
                index.add(oldBytes, range)
                progress?(Double(range.upperBound) / total)
            }
        }
        let hashNew = { walk(new, hashing: newHasher) }
        if threads > 1 {
            nonisolated(unsafe) let hashNew = hashNew
            let group = DispatchGroup()
            DispatchQueue.global().async(group: group) { hashNew() }
            indexOld()
            group.wait()
        } else {
            indexOld()
            hashNew()
        }
        old.releaseAll()
        return (oldHasher.finalize(), newHasher.finalize())
    }

    /// SHA-256 of a mapped file, its pages dropped behind the read (`walk`).
    static func digest(_ file: MappedFile) -> [UInt8] {
        let hasher = SHA256Hasher()
        walk(file, hashing: hasher)
        return hasher.finalize()
    }

    /// Hashes a mapped file 4 MiB at a time, calling `body` on each range before its pages are dropped.
    static func walk(_ file: MappedFile, hashing hasher: SHA256Hasher, _ body: (Range<Int>) -> Void = { _ in }) {
        for part in InputDigest.parts(of: file.count) {
            body(part)
            hasher.update(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: file.bytes[part])))
            file.release(0..<part.upperBound)
        }
    }
}
