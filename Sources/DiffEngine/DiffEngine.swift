import Dispatch
import Synchronization
import PatchFormat
import TreeIO

/// Makes binary patches between two byte strings.
public enum DiffEngine {
    /// Makes a patch that turns `old` into `new`.
    ///
    /// Cost: old is indexed (`options.index`; by default hash chains below 4 GiB of old, its suffix
    /// array from there), then new is matched in 1 MiB chunks (at most 32) on `options.threads` cores,
    /// then the streams are made and compressed (xz: side by side; the extra stream, known once
    /// matching is done, on a core of its own from then on). Hash chains (`ChainIndex`): a counting
    /// sort of old's positions by hash (both cores), then at most 256 candidates per position scanned
    /// outside matches. Suffix array: a suffix sort (libdivsufsort, near-linear in practice) in parts
    /// side by side (`SuffixArrayParts`: two halves from 16 MiB of old, on two cores), then a binary
    /// search per position in each part (O(n log m)).
    ///
    /// Peak memory is the largest of three phases. Indexing: `old` + 4·|old| (libdivsufsort's arrays,
    /// at any size, or the chains' positions before packing) + |old|/2 for the
    /// filter (the chains: instead of the filter, which they fill once packed, two 4-byte cursors per
    /// bucket, |old|/16 to |old|/8 buckets). Matching: `old` + `new` (`makePatchFile` maps new and
    /// holds only its pages around each pass) + the index packed to
    /// ceil(log2) of its size (a suffix array part's, from 16 MiB half of old) bits an entry (3.1 bytes
    /// a byte of a 24 MB file, 3.0 in halves; the chains add their bucket
    /// starts at the same width) + |old|/2 + 32 bytes a tuple. Compressing: the index is freed
    /// first, and compressors finishing side by side stay within what it held. The chains index only
    /// what the block matches (`BlockMatches`, from 1 MiB of old) leave of old, and one position in 4
    /// of the rest, less the positions no search could use (`IndexedPositions`: their 12 bytes occur
    /// nowhere in new outside the blocks; a bit a byte of old while the index is built), so their
    /// terms in |old| shrink with the share of new found in long blocks and of old new lacks. About
    /// 5.6n for equal sizes with nothing in blocks or left out, against bsdiff 4.3's 17n+; the peak is
    /// the chains' build (4 bytes a position placed, only the positions a search reads) or matching
    /// (old, the packed index, the tuples). Measured peak RSS of `phoenix-diff make` (`makePatchFile`;
    /// the peer benchmark, GNU time, 2026-12-01 01:12 UTC; polars 2026-11-30 21:59), default index,
    /// against HDiffPatch's `hdiffz -m` (v5.1.3, which block-matches first and streams the files):
    /// 45.0 MB on the 10.5 MB numpy pair (hdiffz 35.3), 124.3 MB on ruff, 24.5 MB (149.3), 183.7 MB on
    /// pyarrow, 55 MB (193.2), 60.3 MB on the 27 MB Django tar (7.3), 753.5 MB on polars, 221 MB
    /// (1.21 GB); the suffix array: 72.2, 151.1, 319.8, 166.3 MB and 1.21 GB. About 12 MB of each is the process
    /// itself (`phoenix-diff --help` peaks at 12.3 MB). Called with both buffers in
    /// memory, indexing also holds `new`. For a hard cap, use `makePatchFile` with
    /// `DiffOptions.memoryLimit`.
    ///
    /// - Parameter progress: called with a fraction in 0...1 as the work advances (from this thread).
    public static func makePatch(old: UnsafeRawBufferPointer, new: UnsafeRawBufferPointer,
                                 options: DiffOptions = DiffOptions(),
                                 progress: ((Double) -> Void)? = nil) throws -> [UInt8] {
        try options.validate()
        progress?(0)
        let oldBytes = old.bindMemory(to: UInt8.self)
        return try smallest(of: options.index.tried(oldCount: oldBytes.count), progress: progress, size: \.count) { kind, part in
            if kind == .hashChains {
                let index = try ChainIndex(oldBytes, threads: options.threads, hashing: .sha256,
                                           positions: IndexedPositions.find(old: oldBytes, new: new.bindMemory(to: UInt8.self),
                                                                            threads: options.threads))
                return try makePatch(index: index, old: old, new: new, options: options, progress: part)
            }
            let index = try OldIndex(oldBytes, threads: options.threads, hashing: .sha256)
            return try makePatch(index: index, old: old, new: new, options: options, progress: part)
        }
    }

    /// Makes a patch with each index in `tried`, one after the other (each index is freed before the
    /// next is built), and returns the smallest by `size`, the first on a tie. `make` gets the index
    /// and its share of `progress`.
    static func smallest<Made>(of tried: [MatchIndexKind], progress: ((Double) -> Void)?, size: (Made) -> Int,
                               _ make: (MatchIndexKind, ((Double) -> Void)?) throws -> Made) throws -> Made {
        var best: Made? = nil
        for (k, kind) in tried.enumerated() {
            let part = progress.map { p in { (f: Double) in p((Double(k) + f) / Double(tried.count)) } }
            let made = try make(kind, part)
            if best == nil || size(made) < size(best!) { best = made }
        }
        return best!
    }

    /// `makePatch` with `old` indexed already (`makePatchFile` maps new only after that for the suffix
    /// array; the chains' block scan reads it first and drops its pages). With
    /// `newPages`, `new` is that mapping: its pages are dropped behind each pass (`match`), and new is
    /// checked again at the end (`InputDigest.matches`: an XXH64 of each 4 MiB part), so that a file
    /// changed meanwhile is an error, not a patch whose digest does not match what it makes. With
    /// `oldPages`, `old` is mapped and checked at the end the same way (against the index's digest).
    static func makePatch<Index: MatchIndex & ~Copyable>(index: consuming Index, old: UnsafeRawBufferPointer, new: UnsafeRawBufferPointer,
                          options: DiffOptions, progress: ((Double) -> Void)?, newPages: MappedFile? = nil,
                          oldPages: MappedFile? = nil) throws -> [UInt8] {
        let oldBytes = old.bindMemory(to: UInt8.self)
        let newBytes = new.bindMemory(to: UInt8.self)
        // New is hashed on a core that matching leaves free for a moment (the tuples are fed to the
        // compressors on one thread), old while it was sorted.
        let newDigest = BackgroundDigest(threads: options.threads) {
            newPages.map { pages in InputDigest(hashing: new) { pages.release($0) } } ?? InputDigest(sha256: new)
        }
        defer { newDigest.wait() }
        let oldDigest = index.digest ?? (oldPages == nil ? InputDigest(sha256: old) : InputDigest(hashing: old))
        precondition(oldPages == nil || oldDigest.partHashes.count == InputDigest.parts(of: old.count).count,
                     "a mapped old is checked against its parts: index it with hashing: .withParts")
        let level = options.level ?? options.codec.defaultLevel
        // phx: control, diff-runs, diff-literals, extra. BSDIFF40: control, diff, extra.
        let streamCount = options.format == .phx ? 4 : 3
        let encoders = try (0..<streamCount).map { _ in
            try options.codec.makeEncoder(level: level, threads: options.threads)
        }
        let choices = StreamChoices(options: options)
        let contextEncoder = choices.context ? try options.codec.makeEncoder(level: level, threads: options.threads) : nil
        let splitEncoder = choices.split ? try options.codec.makeEncoder(level: level, threads: options.threads) : nil
        // With more than one core, the extra stream (new's bytes stored verbatim, known once matching is
        // done) is compressed on a core of its own while the others are made and compressed: on ruff,
        // xz of its 3 MB of new code took longer than all the other streams.
        let extraIndex = streamCount - 1
        let aside = options.threads > 1
            ? AsideStream(encoders[extraIndex], memory: options.codec.encoderMemory(level: level)) : nil
        defer { aside?.join() }
        // The same for the diff runs in old-context order, once the tuples are known: coded from them
        // on the other core while this one emits the rest; with one thread, here once the emission is
        // done (from the tuples kept until then), so that a sparse diff skips it (`isSparse`).
        let asideContext = contextEncoder.map(AsideContextRuns.init)
        defer { asideContext?.join() }
        let contextAfterEmitting = options.threads == 1
        var keptTuples: [[RecordedTuple]] = []
        var assembler = StreamAssembler(old: oldBytes, new: newBytes, format: options.format,
                                        control: encoders[0], diff: encoders[1],
                                        literals: streamCount == 4 ? encoders[2] : nil,
                                        extra: aside == nil ? encoders[extraIndex] : nil,
                                        contextRuns: nil, naturalRuns: choices.natural,
                                        contextAside: asideContext != nil,
                                        splitControl: splitEncoder, interleavedControl: choices.interleaved)
        // Suffix sorting is about a third of the work, matching and compressing the rest.
        let report: ((Int) -> Void)? = progress == nil ? nil : { scanned in
            progress?(0.3 + 0.6 * Double(scanned) / Double(max(newBytes.count, 1)))
        }
        // What the index holds while matching (less than its estimate for old's size where block
        // matches left part of old unindexed): the compressors' budget once it is freed.
        let indexBytes = index.heldBytes
        do {
            // A mapped new is hashed before any of the bytes the patch makes are read (the tuples are
            // emitted and the extra stream taken only once all are found), and checked again once all
            // are read (below): the same parts mean the patch makes the bytes hashed (short of a
            // change made and undone between the two).
            let beforeEmitting: (([[RecordedTuple]]) throws -> Void)?
                = newPages == nil && aside == nil && asideContext == nil ? nil : { tuples in
                if newPages != nil { newDigest.wait() }
                try aside?.start(extraOf: tuples, new: newBytes)
                if contextAfterEmitting {
                    keptTuples = tuples
                } else {
                    asideContext?.start(tuples, old: oldBytes, new: newBytes, newPages: newPages)
                }
            }
            try match(index: index, old: oldBytes, new: newBytes, threads: options.threads, chunkSize: options.matchChunkSize,
                      into: &assembler, progress: report, matched: beforeEmitting, newPages: newPages)
            try assembler.finish()
        } catch {
            asideContext?.cancel()
            throw (error as? PatchFormatError).map(DiffEngineError.format) ?? error
        }
        // A sparse diff keeps the natural order, and the coding in the other (aside) stops where it
        // is: a stream dropped, whose failure (a write) is then no error of the patch's.
        let sparse = choices.dropsContext(assembler)
        if sparse {
            asideContext?.cancel()
            asideContext?.join()
        } else {
            if contextAfterEmitting {
                asideContext?.start(keptTuples, old: oldBytes, new: newBytes, newPages: newPages, onThisThread: true)
            }
            do {
                try asideContext?.finish()
            } catch let e as PatchFormatError {
                throw DiffEngineError.format(e)
            }
        }
        keptTuples = []
        let coded = sparse ? choices.withoutContext : choices
        // Where one alternative is clearly smaller, the other is not compressed at all.
        let both = (runs: coded.natural && coded.context, control: coded.interleaved && coded.split)
        let kept = coded.pruned(runs: both.runs ? (encoders[1].sizeEstimate(), contextEncoder?.sizeEstimate()) : (nil, nil),
                                  control: both.control ? (encoders[0].sizeEstimate(), splitEncoder?.sizeEstimate()) : (nil, nil))
        // Main streams not made (or dropped) are placeholders that `keepSmaller` replaces.
        let made = encoders.indices.map { i in
            options.format == .bsdiff || (i == 0 ? kept.interleaved : i == 1 ? kept.natural : true)
        }
        let alternatives = [kept.context ? contextEncoder : nil, kept.split ? splitEncoder : nil]
        let here = encoders.indices.filter { made[$0] && !(aside != nil && $0 == extraIndex) }
        let jobs = here.map { encoders[$0] } + alternatives.compactMap { $0 }
        // The suffix array and the filter are gone by now: compressors finishing side by side may use
        // what they took, less the raw streams held since and the extra stream's compressor (so the
        // peak stays that of matching).
        let budget = indexBytes - jobs.reduce(0) { $0 + $1.heldBytes }
        var finished: [[UInt8]], extra: [UInt8]? = nil
        if let aside {
            (finished, extra) = try finishAll(jobs, beside: aside, threads: options.threads, memoryBudget: budget)
        } else {
            finished = try finishAll(jobs, threads: options.threads, memoryBudget: budget)
        }
        // Every read of the inputs is over (the aside streams' too).
        for (pages, digest) in [(newPages, newDigest.wait()), (oldPages, oldDigest)] {
            guard let pages else { continue }
            guard digest.matches(UnsafeRawBufferPointer(pages.bytes), threads: options.threads, checked: { pages.release($0) }) else {
                throw TreeIOError.io(operation: "file changed while the patch was being made:", path: pages.path, errno: 0,
                                     message: "its content no longer matches what was read first")
            }
        }
        let split = alternatives[1] == nil ? nil : finished.removeLast()
        let context = alternatives[0] == nil ? nil : finished.removeLast()
        var next = finished.makeIterator()
        var streams = made.indices.map { i in
            i == extraIndex && extra != nil ? extra! : made[i] ? next.next()! : []
        }
        let flags = kept.keepSmaller(&streams, context: context, split: split) { UInt64($0.count) }
        var out = header(options: options, level: level, oldSize: oldBytes.count, newSize: newBytes.count,
                         oldSHA256: oldDigest.sha256, newSHA256: newDigest.wait().sha256, assembler: assembler,
                         lengths: streams.map { UInt64($0.count) }, flags: flags)
        out.reserveCapacity(out.count + streams.reduce(0) { $0 + $1.count })
        for s in streams { out.append(contentsOf: s) }
        progress?(1)
        return out
    }

    /// Which alternative encodings of a phx patch are made: the diff runs in natural and/or old-context
    /// order, the control stream interleaved and/or split. Where the options leave a choice open both
    /// are made, and `keepSmaller` puts the smaller in place.
    struct StreamChoices {
        let natural: Bool
        let context: Bool
        let interleaved: Bool
        let split: Bool

        /// - Parameter context: overrides whether the context order is made (the low-memory mode
        ///   makes it only when the limit leaves room).
        init(options: DiffOptions, context: Bool? = nil) {
            natural = options.format == .bsdiff || options.diffOrder != .oldContext
            self.context = context ?? (options.format == .phx && options.diffOrder != .natural)
            interleaved = options.format == .bsdiff || options.splitControl != true
            split = options.format == .phx && options.splitControl != false
        }

        private init(natural: Bool, context: Bool, interleaved: Bool, split: Bool) {
            (self.natural, self.context, self.interleaved, self.split) = (natural, context, interleaved, split)
        }

        /// These choices without the old-context order (the natural one then made alone).
        var withoutContext: StreamChoices {
            StreamChoices(natural: true, context: false, interleaved: interleaved, split: split)
        }

        /// Of the diff bytes, fewer than one in this many changed: a sparse diff, where a file's `make`
        /// keeps the natural order (when both are made; a bundle still keeps the smaller). The context
        /// order wins by grouping the many bytes that change in the same context (relocated addresses:
        /// 1.4-6.8% of the diff bytes of numpy, pyarrow and ruff); a change here and there is left
        /// scattered by the sort, and the natural order, where it stays in its place, was smaller on
        /// the Django tar (0.011% changed: 6,295 bytes against 7,925). The usual engine codes the
        /// context order from the tuples on another core while it emits, then stops it, or (one
        /// thread) after the emission, then not at all: its passes over all 27 MB of the Django tar's
        /// diff bytes were a seventh of its `make`. (The low-memory mode codes it with the emission,
        /// then drops it.)
        static let sparseDiff: UInt64 = 2048

        /// Whether both orders are made and the assembler's diff is sparse: the context order is then
        /// dropped (`withoutContext`).
        func dropsContext(_ assembler: StreamAssembler) -> Bool {
            natural && context
                && Self.isSparse(changed: assembler.literalsRawLength, diffBytes: assembler.diffRawLength)
        }

        /// Whether `changed` non-zero diff bytes out of `diffBytes` make a sparse diff (`sparseDiff`).
        static func isSparse(changed: UInt64, diffBytes: UInt64) -> Bool {
            let (scaled, overflow) = changed.multipliedReportingOverflow(by: sparseDiff)
            return !overflow && scaled < diffBytes
        }

        /// An alternative whose estimate (`StreamEncoder.sizeEstimate`) is under this fraction of the
        /// other's wins without both being compressed; closer calls compress both. On the corpus the
        /// estimate (zstd level 1) picked what xz picked in every clear case, and dropping the loser
        /// saves a quarter of ruff's LZMA time.
        static let clearWin = 0.95

        /// These choices, less the alternatives that `estimates` (natural, context) and (interleaved,
        /// split) show to lose clearly.
        func pruned(runs: (Int?, Int?), control: (Int?, Int?)) -> StreamChoices {
            func loser(_ pair: (Int?, Int?), bothMade: Bool) -> (first: Bool, second: Bool) {
                guard bothMade, let a = pair.0, let b = pair.1 else { return (false, false) }
                return (Double(b) < Self.clearWin * Double(a), Double(a) < Self.clearWin * Double(b))
            }
            let r = loser(runs, bothMade: natural && context), c = loser(control, bothMade: interleaved && split)
            return StreamChoices(natural: natural && !r.first, context: context && !r.second,
                                 interleaved: interleaved && !c.first, split: split && !c.second)
        }

        /// Replaces the runs (index 1) and control (index 0) of `streams`, in file order, by their
        /// alternatives where those were made and are smaller (or the only ones); returns the flags.
        func keepSmaller<S>(_ streams: inout [S], context: S?, split: S?, size: (S) -> UInt64) -> UInt16 {
            var flags: UInt16 = 0
            if let context, !natural || size(context) < size(streams[1]) {
                streams[1] = context
                flags |= DiffOrder.contextFlag
            }
            if let split, !interleaved || size(split) < size(streams[0]) {
                streams[0] = split
                flags |= ControlLayout.splitFlag
            }
            return flags
        }
    }

    /// The header of a patch whose compressed streams (in file order) have `lengths`.
    static func header(options: DiffOptions, level: Int, oldSize: Int, newSize: Int, oldSHA256: [UInt8], newSHA256: [UInt8],
                       assembler: StreamAssembler, lengths: [UInt64], flags: UInt16) -> [UInt8] {
        switch options.format {
        case .phx:
            var header = PhxHeader(
                codec: options.codec, level: UInt8(clamping: level),
                oldSize: UInt64(oldSize), newSize: UInt64(newSize), oldSHA256: oldSHA256, newSHA256: newSHA256,
                controlCount: assembler.tupleCount,
                controlLength: lengths[0], runsLength: lengths[1], literalsLength: lengths[2], extraLength: lengths[3],
                diffRawLength: assembler.diffRawLength, literalsRawLength: assembler.literalsRawLength,
                extraRawLength: assembler.extraRawLength)
            header.flags = flags
            return header.encode()
        case .bsdiff:
            return BsdiffHeader(controlLength: lengths[0], diffLength: lengths[1], newSize: UInt64(newSize)).encode()
        }
    }

    /// Inputs are matched in fixed chunks of new (their size depends only on new's size, so the patch
    /// is the same for any thread count), `threads` chunks at a time: at least 1 MiB, at most 32 chunks.
    /// Small chunks keep every core busy to the end (a slow last chunk leaves the others idle); each
    /// boundary can cost a little patch size, though a match running across one is joined back into
    /// one tuple (`match`). 1 MiB rather than 2 MiB: numpy 4% and pyarrow 3.5% faster, patches the
    /// same on numpy and the Django tar, +19 bytes on ruff, +46 on pyarrow.
    static func chunkSize(for count: Int) -> Int {
        max(1 << 20, (count + 31) / 32)
    }

    /// Matches `new` against `index` (of `old`) chunk by chunk on `threads` cores, frees the index,
    /// then feeds the tuples to `sink` in order (so that the compressors' memory, which grows while
    /// the sink works, never adds to the index's).
    /// `matched`, if given, sees the tuples once they are all found and checked, before any is emitted.
    /// With `newPages` (new's mapping), new's pages are dropped from memory behind each pass over it:
    /// each chunk once matched, all of them once `matched` has read what it needs, and the tuples' once
    /// emitted; a page read again is mapped again from the page cache.
    static func match<Sink: MatchSink, Index: MatchIndex & ~Copyable>(index: consuming Index, old: UnsafeBufferPointer<UInt8>,
                                       new: UnsafeBufferPointer<UInt8>, threads: Int = 1,
                                       chunkSize: Int? = nil, into sink: inout Sink, progress: ((Int) -> Void)?,
                                       matched: (([[RecordedTuple]]) throws -> Void)? = nil,
                                       newPages: MappedFile? = nil) throws {
        let done: ChunkDone? = newPages.map { pages in { @Sendable range in pages.release(range) } }
        var chunks = try findMatches(index: index, old: old, new: new, threads: threads, chunkSize: chunkSize,
                                     progress: progress, done: done)
        // The chunks must tile new exactly; a patch that covered some bytes twice or not at all would
        // be refused by every reader, so check here and fail loudly instead of writing it.
        var covered = 0
        for c in chunks.indices {
            for t in chunks[c] {
                guard t.add >= 0, t.copy >= 0, t.oldStart >= 0, t.oldStart + t.add <= old.count else {
                    throw DiffEngineError.internalInconsistency(
                        "the matcher made an invalid tuple at byte \(t.newStart) of the new file: add \(t.add), copy \(t.copy), old \(t.oldStart)")
                }
                guard t.newStart == covered else {
                    throw DiffEngineError.internalInconsistency(
                        "the matcher's tuples do not tile the new file: one starts at byte \(t.newStart), expected \(covered) (chunk \(c))")
                }
                covered = t.newStart + t.add + t.copy
            }
        }
        guard covered == new.count else {
            throw DiffEngineError.internalInconsistency("the matcher's tuples cover \(covered) of the new file's \(new.count) bytes")
        }
        try matched?(chunks)
        newPages?.releaseAll()
        // Each tuple's seek leads to the next tuple's old start; the last one's is 0. Chunks are freed
        // as they are emitted (unless `matched` kept them: the old-context runs coded aside hold them
        // until they are done, 32 bytes a tuple). Where chunks meet, a tuple that goes on in the same
        // alignment is joined to the one before, and an empty one dropped (the Django tar: 13 tuples
        // and 30 bytes fewer, as in one chunk).
        var previous: RecordedTuple? = nil
        for c in chunks.indices {
            for t in chunks[c] {
                if var p = previous {
                    // An empty tuple (a chunk's start, before its first match) says nothing; the one
                    // before it seeks to the next instead. (Not the first tuple: the only one without
                    // a seek before it.)
                    if t.add == 0 && t.copy == 0 { continue }
                    if p.copy == 0 && t.oldStart == p.oldStart + p.add {
                        // The same alignment goes on (a chunk boundary inside a match): one tuple, as
                        // one chunk would have made it.
                        p.add += t.add
                        p.copy = t.copy
                        previous = p
                        continue
                    }
                    try sink.emit(newStart: p.newStart, oldStart: p.oldStart, add: p.add, copy: p.copy,
                                  seek: t.oldStart - (p.oldStart + p.add))
                }
                previous = t
            }
            chunks[c] = []
            // Emitted so far: every tuple before the one held back.
            if let newPages, let p = previous { newPages.release(0..<p.newStart) }
        }
        if let p = previous { try sink.emit(newStart: p.newStart, oldStart: p.oldStart, add: p.add, copy: p.copy, seek: 0) }
        progress?(new.count)
    }

    /// Indexes `old` by hash chains or its suffix array, as `kind` and old's size decide
    /// (`MatchIndexKind.usesChains`), and matches `new` against it (`match(index:...)`).
    static func match<Sink: MatchSink>(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>, index kind: MatchIndexKind,
                                       threads: Int = 1, chunkSize: Int? = nil, into sink: inout Sink,
                                       progress: ((Int) -> Void)?) throws {
        if kind.usesChains(oldCount: old.count) {
            try match(index: try ChainIndex(old, threads: threads, positions: IndexedPositions.find(old: old, new: new, threads: threads)),
                      old: old, new: new, threads: threads,
                      chunkSize: chunkSize, into: &sink, progress: progress)
        } else {
            try match(index: try OldIndex(old, threads: threads), old: old, new: new, threads: threads, chunkSize: chunkSize,
                      into: &sink, progress: progress)
        }
    }

    /// The tuples of the diff, in order, chunk by chunk. Peak memory: the index (freed on return) and
    /// 32 bytes per tuple.
    static func findMatches<Index: MatchIndex & ~Copyable>(index: consuming Index, old: UnsafeBufferPointer<UInt8>,
                                                           new: UnsafeBufferPointer<UInt8>, threads: Int, chunkSize: Int?,
                                                           progress: ((Int) -> Void)?, done: ChunkDone? = nil) throws -> [[RecordedTuple]] {
        try index.matchChunks(old: old, new: new, threads: threads, chunkSize: chunkSize, progress: progress, done: done)
    }

    /// Told, from the thread that matched it, that a chunk of new is matched (`matchChunks`).
    typealias ChunkDone = @Sendable (Range<Int>) -> Void

    /// Matches `new` in chunks (`chunkSize(for:)`, or `forced`) on `threads` cores; `done` hears of each
    /// chunk once matched, from the thread that matched it.
    static func matchChunks<Finder: MatchFinder>(_ matcher: Matcher<Finder>, threads: Int, chunkSize forced: Int?,
                                                 progress: ((Int) -> Void)?, done: ChunkDone? = nil) throws -> [[RecordedTuple]] {
        let n = matcher.new.count
        let size = max(1, forced ?? chunkSize(for: n))
        if n <= size {
            var recorder = TupleRecorder()
            try matcher.run(0..<n, &recorder, progress: progress)
            done?(0..<n)
            return [recorder.tuples]
        }
        let chunks = stride(from: 0, to: n, by: size).map { $0..<min($0 + size, n) }
        nonisolated(unsafe) var recorded = [Result<[RecordedTuple], Error>?](repeating: nil, count: chunks.count)
        let workers = max(1, min(threads, chunks.count))
        withUnsafePointer(to: matcher) { m in
            nonisolated(unsafe) let m = m
            recorded.withUnsafeMutableBufferPointer { out in
                nonisolated(unsafe) let out = out
                // Each worker takes the next chunk not yet taken, so a slow chunk does not hold up the others.
                let next = Atomic<Int>(0)
                DispatchQueue.concurrentPerform(iterations: workers) { _ in
                    while true {
                        let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                        if i >= chunks.count { break }
                        out[i] = Result {
                            var recorder = TupleRecorder()
                            try m.pointee.run(chunks[i], &recorder)
                            done?(chunks[i])
                            return recorder.tuples
                        }
                    }
                }
            }
        }
        return try recorded.map { try $0!.get() }
    }

    /// The uncompressed phx streams of a diff, for bundles (which compress all files' streams
    /// together), with the alternative codings `choices` asks for.
    static func rawPhxStreams(old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>,
                              index: MatchIndexKind, choices: StreamChoices) throws -> RawStreams {
        let e = try (0..<RawStreams.slotCount).map { _ in try CodecID.uncompressed.makeEncoder() }
        var assembler = StreamAssembler(old: old, new: new, format: .phx, control: e[0], diff: e[1], literals: e[2], extra: e[3],
                                        contextRuns: choices.context ? e[4] : nil, naturalRuns: choices.natural,
                                        splitControl: choices.split ? e[5] : nil, interleavedControl: choices.interleaved)
        // One thread: bundle files are diffed in parallel already. (`best` indexes like `auto` here:
        // `MatchIndexKind.usesChains` answers the same for both.)
        try match(old: old, new: new, index: index, into: &assembler, progress: nil)
        try assembler.finish()
        return RawStreams(slots: try e.map { try $0.finish() }, tuples: assembler.tupleCount, diffBytes: assembler.diffRawLength,
                          literalBytes: assembler.literalsRawLength, extraBytes: assembler.extraRawLength)
    }

    public static func makePatch(old: [UInt8], new: [UInt8], options: DiffOptions = DiffOptions()) throws -> [UInt8] {
        try old.withUnsafeBytes { o in
            try new.withUnsafeBytes { n in try makePatch(old: o, new: n, options: options) }
        }
    }
}

/// Uncompressed phx streams of one file's diff, in a bundle's slots: control, diff-runs, literals,
/// extra, then the alternatives (diff-runs in old-context order, control in the split layout), empty
/// where not made.
struct RawStreams {
    static let slotCount = 6
    var slots: [[UInt8]]
    var tuples: UInt64
    var diffBytes: UInt64
    var literalBytes: UInt64
    var extraBytes: UInt64

    /// A file stored whole: one tuple that copies everything from the extra stream.
    static func whole(_ new: UnsafeBufferPointer<UInt8>) -> RawStreams {
        let control = wholeControl(count: UInt64(new.count))
        return RawStreams(slots: [control.interleaved, [], [], Array(new), [], control.split], tuples: new.isEmpty ? 0 : 1,
                          diffBytes: 0, literalBytes: 0, extraBytes: UInt64(new.count))
    }

    /// The control stream of a file stored whole, in both layouts: no tuple for an empty file, else one
    /// that adds nothing and copies `count` bytes from the extra stream (its end diagonal: old cursor 0
    /// minus new position `count`).
    static func wholeControl(count: UInt64) -> (interleaved: [UInt8], split: [UInt8]) {
        var control = [UInt8](), split = [UInt8]()
        if count > 0 {
            Varint.appendUnsigned(0, to: &control)
            Varint.appendUnsigned(count, to: &control)
            Varint.appendSigned(0, to: &control)
            var writer = SplitControlWriter()
            _ = writer.append(add: 0, copy: count, endDiagonal: -Int64(count))
            writer.flush(into: &split)
        }
        return (control, split)
    }
}

/// A tuple as the matcher emits it, before the seeks are joined across chunks.
struct RecordedTuple {
    var newStart: Int
    var oldStart: Int
    var add: Int
    var copy: Int
}

struct TupleRecorder: MatchSink {
    var tuples: [RecordedTuple] = []
    mutating func emit(newStart: Int, oldStart: Int, add: Int, copy: Int, seek: Int) throws {
        tuples.append(RecordedTuple(newStart: newStart, oldStart: oldStart, add: add, copy: copy))
    }
}
