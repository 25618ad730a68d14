import Dispatch
import PatchFormat
import TreeIO

/// Options for making a bundle.
public struct BundleOptions: Sendable {
    public var codec: CodecID
    public var level: Int?
    /// Cores used to hash the trees and to diff files concurrently. The bundle's bytes do not depend
    /// on it.
    public var threads: Int
    /// How each changed file's old version is searched (`DiffOptions.index`): by default hash chains
    /// below 4 GiB, the suffix array from there.
    public var index: MatchIndexKind
    /// Most memory making the bundle may use, in bytes (at least `DiffEngine.minimumMemoryLimit`):
    /// files are diffed side by side only as many as fit, and a file whose diff alone would not fit is
    /// diffed in the low-memory mode (`DiffOptions.memoryLimit`: its files mapped, an anchor index
    /// sized to what is left; a somewhat larger delta for that file). When even the compressors at the
    /// level's settings would not leave room, they use capped windows (`lowMemory`). nil: no limit.
    /// What is made depends on the limit, never on `threads`.
    public var memoryLimit: Int?
    /// Whether a limit too small for the trees' lists and the compressors is an error (a limit the
    /// user set) or only a plan that does its best (a default limit: such a tree was made before limits).
    public var strictMemoryLimit = true
    /// How every data file's diff pattern is coded: nil (default) makes both orders and keeps the
    /// smaller (bundle flag bit 1, per file as in `phx`: old-context order halves the diff-runs of
    /// executables), or one of them.
    public var diffOrder: DiffOrder?
    /// The control layout of every data file: nil (default) makes both and keeps the smaller (bundle
    /// flag bit 2), true the split layout, false the interleaved one.
    public var splitControl: Bool?

    /// Which alternative codings are made.
    var streamChoices: DiffEngine.StreamChoices {
        var o = DiffOptions(format: .phx)
        o.diffOrder = diffOrder
        o.splitControl = splitControl
        return DiffEngine.StreamChoices(options: o)
    }

    public init(codec: CodecID = .zstd, level: Int? = nil, threads: Int = 1, index: MatchIndexKind = .auto,
                memoryLimit: Int? = nil) {
        self.codec = codec
        self.level = level
        self.threads = max(1, threads)
        self.index = index
        self.memoryLimit = memoryLimit
    }
}

/// What a bundle contains, for the command line.
public struct BundleSummary: Sendable, Equatable, Codable {
    public var oldEntries: Int
    public var newEntries: Int
    public var unchanged: Int
    public var added: Int
    public var changed: Int
    public var removed: Int
    public var copied: Int
    /// Changed files diffed in the low-memory mode because of `BundleOptions.memoryLimit`.
    public var lowMemory: Int = 0
    public var newBytes: UInt64
    public var bundleBytes: UInt64
}

/// Makes a bundle: one patch between two directory trees (FORMAT.md, "Bundles").
///
/// Only changed paths are described; unchanged entries cost nothing. A new or changed file is
/// diffed against the old file at the same path, or, when there is none, against an old file with the
/// same name elsewhere (a move with edits, such as a renamed `*.dist-info/RECORD`); identical content
/// anywhere in the old tree is stored as a reference. All files' streams are compressed together, so
/// that similar edits in many files cost little.
///
/// Cost: a read and hash of both trees; one diff per changed file, `threads` at a time. Memory: the six
/// compressors (four streams, two alternatives), plus the files being diffed side by side (about 6x each old/new pair's size; with a
/// `memoryLimit`, only as many as fit under it, and a file too large for it in the low-memory mode).
/// A file stored whole from 8 MiB (an added file, or every file of a full bundle) is read a chunk at a
/// time into the compressor, so a full bundle's memory does not grow with its largest file.
public enum BundleMaker {
    /// Files stored whole from this size are streamed into the compressor instead of read whole (a
    /// task-local so that tests can lower it).
    @TaskLocal static var streamWholeFrom = 8 << 20
    /// Tests: called once the trees are scanned and the spill files exist (to change a file under `make`).
    @TaskLocal static var afterPlanning: (@Sendable () -> Void)?

    public static func make(oldRoot: String?, newRoot: String, to output: String, options: BundleOptions = BundleOptions(),
                            progress: ((Double) -> Void)? = nil) throws -> BundleSummary {
        progress?(0)
        let old = try oldRoot.map { try TreeScanner.scan($0, threads: options.threads) } ?? []
        let new = try TreeScanner.scan(newRoot, threads: options.threads)
        try refuseCaseCollisions(new, root: newRoot)
        // The rest of what every apply checks of the new tree (links that stay inside the installation,
        // and resolve no `..` through another link): refused here, not after the bundle is shipped.
        do { try BundleManifest.validateTree(new, list: "new tree") } catch PatchFormatError.invalidField(_, let value, let reason) {
            throw DiffEngineError.unsupportedCombination(
                "the tree \(newRoot) cannot be bundled: \(value) \(reason); every apply refuses such a bundle")
        }
        progress?(0.2)
        let plan = plan(old: old, new: new)

        // Diff the data files, a batch at a time, then feed their streams to the encoders in order.
        let level = options.level ?? options.codec.defaultLevel
        let memory = try MemoryPlan(options: options, level: level, old: old, new: new, jobs: plan.dataJobs)
        let choices = options.streamChoices
        // The four streams and the alternatives of two (`RawStreams` slots); the smaller of each pair is kept.
        let encoders = try (0..<RawStreams.slotCount).map { _ in
            try options.codec.makeEncoder(level: level, threads: memory.encoderThreads, lowMemory: memory.lowMemoryEncoders)
        }
        // Compressed streams go to temporary files beside the output as they are produced, so that a
        // large full bundle does not sit in memory.
        let spills = try (0..<RawStreams.slotCount).map { _ in try AtomicFileWriter(destination: output, mode: 0o600, spool: true) }
        defer { for s in spills { s.abort() } }
        afterPlanning?()
        func spill() throws {
            for (e, f) in zip(encoders, spills) {
                let bytes = e.takeOutput()
                try bytes.withUnsafeBytes { try f.write($0) }
            }
        }
        var operations = plan.operations
        func record(_ job: DataJob, source: Int?, tuples: UInt64, diffBytes: UInt64, literalBytes: UInt64, extraBytes: UInt64) {
            let e = new[job.newIndex]
            operations[job.operationIndex].op = .file(
                mode: e.mode, size: e.size, sha256: e.sha256,
                action: .data(source: source, tuples: tuples, diffBytes: diffBytes, literalBytes: literalBytes, extraBytes: extraBytes))
        }
        let jobs = plan.dataJobs.map { memory.sourceWorthIndexing($0, old: old, new: new) ? $0 : $0.withoutSource }
        var lowMemoryFiles = 0
        var done = 0
        while done < jobs.count {
            let job = jobs[done]
            switch memory.route(job, old: old, new: new, hasOld: oldRoot != nil) {
            case .streamWhole:
                let path = newRoot + "/" + new[job.newIndex].path
                try streamWhole(path: path, expected: new[job.newIndex], encoders: encoders, drain: spill)
                let size = new[job.newIndex].size
                record(job, source: nil, tuples: size == 0 ? 0 : 1, diffBytes: 0, literalBytes: 0, extraBytes: size)
                try spill()
                done += 1
            case .lowMemory:
                let source = job.oldSource!
                let counts = try anchorDiff(old: oldRoot! + "/" + old[source].path, expectedOld: old[source],
                                            new: newRoot + "/" + new[job.newIndex].path, expectedNew: new[job.newIndex],
                                            budget: memory.budget, threads: options.threads, choices: choices, encoders: encoders,
                                            drain: spill)
                record(job, source: job.touchedSource, tuples: counts.tuples, diffBytes: counts.diffBytes,
                       literalBytes: counts.literalBytes, extraBytes: counts.extraBytes)
                try spill()
                lowMemoryFiles += 1
                done += 1
            case .inMemory:
                // Diff a batch of files side by side (as many as fit), then feed their streams to the
                // encoders in order.
                var batch = [Int]()
                var bytes: UInt64 = 0
                var held = 0
                while done + batch.count < jobs.count && batch.count < options.threads * 8 {
                    let next = jobs[done + batch.count]
                    guard case .inMemory(let need) = memory.route(next, old: old, new: new, hasOld: oldRoot != nil) else { break }
                    if !batch.isEmpty && (bytes >= 256 << 20 || need > memory.budget - held) { break }
                    bytes += new[next.newIndex].size
                    held += need
                    batch.append(done + batch.count)
                }
                let results = try diffBatch(batch.map { jobs[$0] }, old: old, new: new, oldRoot: oldRoot, newRoot: newRoot,
                                            threads: options.threads, index: options.index, choices: choices)
                for (k, jobIndex) in batch.enumerated() {
                    let job = jobs[jobIndex]
                    let r = results[k]
                    for (e, bytes) in zip(encoders, r.streams.slots) { try e.write(bytes) }
                    record(job, source: r.usedSource ? job.touchedSource : nil, tuples: r.streams.tuples,
                           diffBytes: r.streams.diffBytes, literalBytes: r.streams.literalBytes, extraBytes: r.streams.extraBytes)
                }
                try spill()
                done += batch.count
            }
            progress?(0.2 + 0.7 * Double(done) / Double(max(jobs.count, 1)))
        }
        for (e, f) in zip(encoders, spills) {
            let tail = try e.finish()
            try tail.withUnsafeBytes { try f.write($0) }
            try f.flushToDisk()
        }
        // Of each pair of codings made, the smaller (or the only one).
        var chosen = Array(spills.prefix(4))
        let flags = choices.keepSmaller(&chosen, context: choices.context ? spills[4] : nil, split: choices.split ? spills[5] : nil) {
            $0.bytesWritten
        }
        let streamLengths = chosen.map { $0.bytesWritten }

        let manifest = BundleManifest(touched: plan.touched, operations: operations)
        let rawManifest = manifest.encode()
        let manifestEncoder = try options.codec.makeEncoder(level: level, threads: 1)
        try manifestEncoder.write(rawManifest)
        let compressedManifest = try manifestEncoder.finish()
        var header = BundleHeader(
            isFull: oldRoot == nil, codec: options.codec, level: UInt8(clamping: level),
            oldDigest: TreeDigest.compute(old), newDigest: TreeDigest.compute(new),
            oldCount: UInt64(old.count), newCount: UInt64(new.count),
            newTotalBytes: new.reduce(0) { $0 + ($1.kind == .file ? $1.size : 0) },
            manifestLength: UInt64(compressedManifest.count), manifestRawLength: UInt64(rawManifest.count),
            controlLength: streamLengths[0], runsLength: streamLengths[1],
            literalsLength: streamLengths[2], extraLength: streamLengths[3])
        header.diffOrder = flags & DiffOrder.contextFlag != 0 ? .oldContext : .natural
        header.splitControl = flags & ControlLayout.splitFlag != 0

        let writer = try AtomicFileWriter(destination: output, mode: 0o644)
        for part in [header.encode(), compressedManifest] {
            try part.withUnsafeBytes { try writer.write($0) }
        }
        for f in chosen { try f.copyContents(to: writer) }
        try writer.commit()
        progress?(1)
        var summary = plan.summary
        summary.oldEntries = old.count
        summary.newEntries = new.count
        summary.newBytes = header.newTotalBytes
        summary.lowMemory = lowMemoryFiles
        summary.bundleBytes = writer.bytesWritten
        return summary
    }

    // MARK: Planning

    struct DataJob {
        var operationIndex: Int
        var newIndex: Int
        /// Index into `old` of the file to diff against, if any.
        var oldSource: Int?
        /// Index of that file in the touched list.
        var touchedSource: Int?

        /// The same file, stored whole.
        var withoutSource: DataJob {
            DataJob(operationIndex: operationIndex, newIndex: newIndex, oldSource: nil, touchedSource: nil)
        }
    }

    struct Plan {
        var touched: [TreeEntry]
        var operations: [BundleOperation]
        var dataJobs: [DataJob]
        var summary: BundleSummary
    }

    /// Refuses a new tree with two paths that are one name on a case-insensitive file system: every
    /// applier refuses its bundle (`BundleManifest.validateTree`, by the same rule), on any system.
    static func refuseCaseCollisions(_ new: [TreeEntry], root: String) throws {
        // NFC and NFD forms print alike: then the names are shown with their non-ASCII characters escaped.
        func escaped(_ path: String) -> String {
            var out = ""
            for scalar in path.unicodeScalars {
                if scalar.isASCII {
                    out.unicodeScalars.append(scalar)
                } else {
                    out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
                }
            }
            return out
        }
        var folded = BundlePath.CaseCollisions()
        for e in new {
            guard let other = folded.insert(e.path) else { continue }
            let how = Array(other.lowercased().utf8) == Array(e.path.lowercased().utf8)
                ? "they differ only in letter case"
                : "they differ in letter case or Unicode normalization: \(escaped(other)) and \(escaped(e.path))"
            throw DiffEngineError.unsupportedCombination(
                "the tree \(root) has both \(root)/\(other) and \(root)/\(e.path) (\(how)), one name on a case-insensitive "
                + "file system (macOS, Windows): a bundle must install there too, and every apply refuses one with "
                + "such paths; rename one of them")
        }
    }

    /// Paths are keyed by their bytes (`PathKey`): as `String`s, NFC `caf\u{E9}` and NFD `cafe\u{301}`
    /// were one path, so a rename between them was "unchanged" and the bundle could not build its
    /// new tree.
    static func plan(old: [TreeEntry], new: [TreeEntry]) -> Plan {
        var oldByPath = [PathKey: Int]()
        var oldBySHA = [[UInt8]: [Int]]()
        var oldByName = [String: [Int]]()
        for (i, e) in old.enumerated() {
            oldByPath[PathKey(e.path)] = i
            if e.kind == .file {
                oldBySHA[e.sha256, default: []].append(i)
                oldByName[POSIX.fileName(of: e.path), default: []].append(i)
            }
        }
        let newPaths = Set(new.map { PathKey($0.path) })
        var touchedPaths = Set<PathKey>()
        var ops: [(String, BundleOp, DataJob?)] = []
        var summary = BundleSummary(oldEntries: old.count, newEntries: new.count, unchanged: 0, added: 0, changed: 0,
                                    removed: 0, copied: 0, newBytes: 0, bundleBytes: 0)
        for (ni, e) in new.enumerated() {
            let same = oldByPath[PathKey(e.path)].map { old[$0] }
            if let same, same.kind == e.kind, same.sameContent(as: e) {
                if same.mode == e.mode {
                    summary.unchanged += 1
                } else {
                    summary.changed += 1
                    ops.append((e.path, .chmod(mode: e.mode), nil))
                }
                continue
            }
            if let same {
                touchedPaths.insert(PathKey(same.path))
                summary.changed += 1
            } else {
                summary.added += 1
            }
            switch e.kind {
            case .directory:
                ops.append((e.path, .directory(mode: e.mode), nil))
            case .symlink:
                ops.append((e.path, .symlink(target: e.linkTarget ?? ""), nil))
            case .file:
                let name = POSIX.fileName(of: e.path)
                if let twins = oldBySHA[e.sha256], let s = twins.first(where: { POSIX.fileName(of: old[$0].path) == name }) ?? twins.first,
                   e.size > 0 {
                    touchedPaths.insert(PathKey(old[s].path))
                    summary.copied += 1
                    ops.append((e.path, .file(mode: e.mode, size: e.size, sha256: e.sha256, action: .copy(source: s)), nil))
                    continue
                }
                var source: Int?
                if let same, same.kind == .file {
                    source = oldByPath[PathKey(same.path)]
                } else if let candidates = oldByName[name] {
                    // A moved file: prefer the candidate closest in size, then the first in path order.
                    source = candidates.min { a, b in
                        let da = old[a].size > e.size ? old[a].size - e.size : e.size - old[a].size
                        let db = old[b].size > e.size ? old[b].size - e.size : e.size - old[b].size
                        return da < db
                    }
                }
                if let source { touchedPaths.insert(PathKey(old[source].path)) }
                ops.append((e.path, .file(mode: e.mode, size: e.size, sha256: e.sha256, action: .data(
                    source: nil, tuples: 0, diffBytes: 0, literalBytes: 0, extraBytes: 0)),
                    DataJob(operationIndex: 0, newIndex: ni, oldSource: source, touchedSource: nil)))
            }
        }
        for e in old where !newPaths.contains(PathKey(e.path)) {
            touchedPaths.insert(PathKey(e.path))
            summary.removed += 1
            ops.append((e.path, .remove, nil))
        }
        let touched = old.filter { touchedPaths.contains(PathKey($0.path)) }
        var touchedIndex = [PathKey: Int]()
        for (i, e) in touched.enumerated() { touchedIndex[PathKey(e.path)] = i }
        ops.sort { pathPrecedes($0.0, $1.0) }
        var operations = [BundleOperation]()
        var jobs = [DataJob]()
        for (k, (path, op, job)) in ops.enumerated() {
            var op = op
            if case .file(let mode, let size, let sha, .copy(let s)) = op {
                op = .file(mode: mode, size: size, sha256: sha, action: .copy(source: touchedIndex[PathKey(old[s].path)]!))
            }
            operations.append(BundleOperation(path: path, op: op))
            if var job {
                job.operationIndex = k
                job.touchedSource = job.oldSource.map { touchedIndex[PathKey(old[$0].path)]! }
                jobs.append(job)
            }
        }
        return Plan(touched: touched, operations: operations, dataJobs: jobs, summary: summary)
    }

    // MARK: Diffing

    struct JobResult {
        var streams: RawStreams
        var usedSource: Bool
    }

    static func diffBatch(_ jobs: [DataJob], old: [TreeEntry], new: [TreeEntry], oldRoot: String?, newRoot: String,
                          threads: Int, index: MatchIndexKind, choices: DiffEngine.StreamChoices) throws -> [JobResult] {
        nonisolated(unsafe) var results = [Result<JobResult, Error>?](repeating: nil, count: jobs.count)
        let workers = max(1, min(threads, jobs.count))
        results.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let out = buffer
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var i = w
                while i < jobs.count {
                    out[i] = Result {
                        try diffOne(jobs[i], old: old, new: new, oldRoot: oldRoot, newRoot: newRoot, index: index, choices: choices)
                    }
                    i += workers
                }
            }
        }
        return try results.map { try $0!.get() }
    }

    static func diffOne(_ job: DataJob, old: [TreeEntry], new: [TreeEntry], oldRoot: String?, newRoot: String,
                        index: MatchIndexKind, choices: DiffEngine.StreamChoices) throws -> JobResult {
        let newBytes = try POSIX.readFile(newRoot + "/" + new[job.newIndex].path)
        guard SHA256Hasher.hash(newBytes) == new[job.newIndex].sha256 else {
            throw changed(newRoot + "/" + new[job.newIndex].path)
        }
        return try newBytes.withUnsafeBufferPointer { n in
            guard let source = job.oldSource, let oldRoot else {
                return JobResult(streams: .whole(n), usedSource: false)
            }
            let oldBytes = try POSIX.readFile(oldRoot + "/" + old[source].path)
            guard SHA256Hasher.hash(oldBytes) == old[source].sha256 else {
                throw changed(oldRoot + "/" + old[source].path)
            }
            let streams = try oldBytes.withUnsafeBufferPointer { o in try DiffEngine.rawPhxStreams(old: o, new: n, index: index, choices: choices) }
            // When almost nothing matched, the file alone compresses at least as well: store it whole.
            if streams.diffBytes < UInt64(n.count) / 16 {
                return JobResult(streams: .whole(n), usedSource: false)
            }
            return JobResult(streams: streams, usedSource: true)
        }
    }

    static func changed(_ path: String) -> TreeIOError {
        TreeIOError.io(operation: "file changed while the bundle was being made:", path: path, errno: 0,
                       message: "its content no longer matches the scan")
    }

    // MARK: Files too large to hold

    /// Stores a file whole, a chunk at a time, into the encoders of `RawStreams`' slots: its one tuple
    /// in both control layouts, its bytes in the extra stream (the same bytes `RawStreams.whole` gives).
    /// Checks them against the scan as they pass.
    static func streamWhole(path: String, expected: TreeEntry, encoders: [any StreamEncoder], drain: () throws -> Void) throws {
        let control = RawStreams.wholeControl(count: expected.size)
        try encoders[0].write(control.interleaved)
        try encoders[5].write(control.split)
        let extra = encoders[3]
        let hasher = SHA256Hasher()
        var seen: UInt64 = 0
        try POSIX.readChunks(path, size: 4 << 20) { chunk in
            seen += UInt64(chunk.count)
            guard seen <= expected.size else { throw changed(path) }
            hasher.update(chunk)
            try extra.write(chunk)
            try drain()
        }
        guard seen == expected.size, hasher.finalize() == expected.sha256 else { throw changed(path) }
    }

    struct EntryCounts {
        var tuples: UInt64
        var diffBytes: UInt64
        var literalBytes: UInt64
        var extraBytes: UInt64
    }

    /// What the low-memory diff of one file holds besides its index: the pages of each file around the
    /// matcher (`AnchorMatcher`: about twice its span), the assembler's buffers, its old-context coder
    /// (the bits of a block, their sorted copy and records of up to a 64th of its bytes, 6.3 MiB at
    /// most) and the split layout's block (~2 MiB).
    static let anchorWindows = 28 << 20

    /// Diffs one file in the low-memory mode (`DiffEngine.makeLowMemory`), straight into the bundle's
    /// encoders: both files mapped and checked against the scan (SHA-256) before matching and again for
    /// what was matched (new as the matcher leaves it behind, old afterwards: only a change undone
    /// before its check goes unseen), old indexed by anchors in a table sized to `budget`. Mapped files
    /// must not be truncated meanwhile (SIGBUS), as in the file mode.
    static func anchorDiff(old oldPath: String, expectedOld: TreeEntry, new newPath: String, expectedNew: TreeEntry,
                           budget: Int, threads: Int, choices: DiffEngine.StreamChoices, encoders: [any StreamEncoder],
                           drain: () throws -> Void) throws -> EntryCounts {
        let old = try MappedFile(path: oldPath, followSymlinks: false)
        let new = try MappedFile(path: newPath, followSymlinks: false)
        guard old.count <= AnchorIndex.maxPosition else {
            throw DiffEngineError.unsupportedCombination("\(oldPath) is over 1 TiB, beyond the low-memory index")
        }
        let plan = AnchorIndex.plan(oldCount: old.count, budget: budget - anchorWindows)
        let index = AnchorIndex(rateBits: plan.rateBits, tableBits: plan.tableBits)
        let digests = DiffEngine.anchorIndexAndHash(old: old, new: new, into: index, threads: threads)
        guard UInt64(old.count) == expectedOld.size, digests.old == expectedOld.sha256 else { throw changed(oldPath) }
        guard UInt64(new.count) == expectedNew.size, digests.new == expectedNew.sha256 else { throw changed(newPath) }
        // New is hashed again as the matcher leaves it behind, old again once matching is done: the
        // bytes diffed are the scan's (a file changed meanwhile fails here, not at the client's apply).
        let newHasher = SHA256Hasher()
        var hashed = 0
        func hashNew(upTo end: Int) {
            guard end > hashed else { return }
            newHasher.update(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: new.bytes[hashed..<end])))
            hashed = end
        }
        var assembler = StreamAssembler(old: old.bytes, new: new.bytes, format: .phx, control: encoders[0], diff: encoders[1],
                                        literals: encoders[2], extra: encoders[3],
                                        contextRuns: choices.context ? encoders[4] : nil, naturalRuns: choices.natural,
                                        splitControl: choices.split ? encoders[5] : nil, interleavedControl: choices.interleaved)
        do {
            var matcher = AnchorMatcher(old: old.bytes, new: new.bytes, index: index)
            matcher.onProbes = { DiffEngine.releaseOldIfOver(old) }
            assembler.onOldPages = { DiffEngine.releaseOldIfOver(old) }
            try matcher.run(&assembler) { done in
                hashNew(upTo: done)
                new.release(0..<done)
                old.releaseAll()
                try drain()
            }
            try assembler.finish()
        } catch let e as PatchFormatError {
            throw DiffEngineError.format(e)
        }
        hashNew(upTo: new.count)
        new.releaseAll()
        guard newHasher.finalize() == expectedNew.sha256 else { throw changed(newPath) }
        guard DiffEngine.digest(old) == expectedOld.sha256 else { throw changed(oldPath) }
        return EntryCounts(tuples: assembler.tupleCount, diffBytes: assembler.diffRawLength,
                           literalBytes: assembler.literalsRawLength, extraBytes: assembler.extraRawLength)
    }

    // MARK: Memory

    /// How making a bundle stays under `BundleOptions.memoryLimit`: what the trees' lists and the
    /// compressors take, what is left for diffing (`budget`), and how each file is diffed in it.
    struct MemoryPlan {
        enum Route: Equatable {
            /// Read and diffed in memory (or stored whole from memory), needing about this much.
            case inMemory(Int)
            /// Stored whole, a chunk at a time.
            case streamWhole
            /// Diffed in the low-memory mode.
            case lowMemory
        }

        /// What the diffs may hold at once (no limit: `Int.max`).
        let budget: Int
        /// Tests: with a limit, this budget instead of the one computed, so that small files take the
        /// low-memory mode.
        @TaskLocal static var budgetOverride: Int?
        /// Capped compressors (`CodecID.makeEncoder(lowMemory:)`): the level's would not fit.
        let lowMemoryEncoders: Bool
        /// Threads each compressor may use (zstd's workers; the bytes do not depend on it).
        let encoderThreads: Int
        let index: MatchIndexKind

        /// Everything here but `encoderThreads` depends on the limit, the codec, the level and the
        /// trees only, never on `options.threads`: the bundle's bytes do not depend on the thread count.
        init(options: BundleOptions, level: Int, old: [TreeEntry], new: [TreeEntry], jobs: [DataJob]) throws {
            index = options.index
            guard let limit = options.memoryLimit else {
                budget = Int.max
                lowMemoryEncoders = false
                encoderThreads = options.threads
                return
            }
            // The process (16 MB measured for a small bundle), both trees' entries and the manifest (well
            // under 1 KiB an entry).
            let lists = (20 << 20) + (old.count + new.count) * 1024
            let room = limit - lists
            let capped = RawStreams.slotCount * Self.lowMemoryEncoderBytes
            // The level's settings when they take at most half of the room: for zstd, with as many
            // workers (up to 16) as fit there, the rest of the threads left idle; for xz, which holds
            // every raw stream to the end, when those fit.
            let (encoder, holds) = options.codec.encoderMemory(level: level)
            var compressors = capped
            var workers = 1
            if holds {
                let rawBytes = jobs.reduce(0) { $0 + Int(new[$1.newIndex].size) }
                let full = rawBytes + rawBytes / 2 + encoder
                if full <= room / 2 { compressors = full }
            } else if options.codec == .zstd {
                let perWorker = RawStreams.slotCount * CodecID.zstdWorkerMemory(level: level)
                workers = min(16, room / 2 / perWorker - 1)
                if workers >= 1 { compressors = (workers + 1) * perWorker }
            } else if RawStreams.slotCount * encoder <= room / 2 {
                compressors = RawStreams.slotCount * encoder
            }
            lowMemoryEncoders = compressors == capped
            encoderThreads = lowMemoryEncoders ? 1 : min(options.threads, max(1, workers))
            let planned = Self.budgetOverride ?? (room - compressors)
            guard planned >= Self.minimumBudget || !options.strictMemoryLimit else {
                throw DiffEngineError.unsupportedCombination(
                    "a memory limit of \(limit >> 20) MiB is too small for this bundle: its \(old.count + new.count) entries "
                    + "and the compressors take about \((limit - planned) >> 20) MiB, and diffing needs at least "
                    + "\(Self.minimumBudget >> 20) MiB more (make --memory-limit, or the server's make_memory_limit)")
            }
            // A default limit too small for the trees' lists: go on with the least budget, as before limits.
            budget = max(planned, Self.minimumBudget)
        }

        /// The least left for diffing: the low-memory mode's windows and a small anchor table.
        static let minimumBudget = anchorWindows + (16 << 20)
        /// One capped encoder (`CodecID.makeEncoder(lowMemory:)`): about 5 MiB.
        static let lowMemoryEncoderBytes = 5 << 20

        /// Peak memory of one file's in-memory diff (`diffOne`): both files; the index while it is built,
        /// then searched with the tuples; then the tuples, the old-context coder's bits (and their sorted
        /// copy) and the raw
        /// streams it returns (new's size and the alternatives' part, twice new with array growth);
        /// 10% for the allocator.
        static func entryMemory(oldSize o: Int, newSize n: Int, index: MatchIndexKind) -> Int {
            let (building, searching) = DiffEngine.indexMemory(oldSize: o, chains: index.usesChains(oldCount: o))
            let tuples = n / 4
            let coder = min(n, ContextOrder.blockSize) / 4 + (256 << 10)
            return (o + n + max(building, searching + tuples, tuples + coder + 2 * n)) / 10 * 11
        }

        /// Files under this size whose diff does not fit in memory are stored whole.
        static let storeWholeBelow = 1 << 20

        /// Whether a job's source is worth diffing against: not when the diff does not fit in memory
        /// and the new file is small (a large old file rewritten as a small one: indexing gigabytes of
        /// old in the low-memory mode would cost more than the at most 1 MiB it could save).
        func sourceWorthIndexing(_ job: DataJob, old: [TreeEntry], new: [TreeEntry]) -> Bool {
            guard let s = job.oldSource else { return true }
            let n = Int(new[job.newIndex].size)
            return n >= Self.storeWholeBelow || Self.entryMemory(oldSize: Int(old[s].size), newSize: n, index: index) <= budget
        }

        func route(_ job: DataJob, old: [TreeEntry], new: [TreeEntry], hasOld: Bool) -> Route {
            let n = Int(new[job.newIndex].size)
            guard hasOld, let s = job.oldSource else {
                // Read, then copied into the extra stream (under 17 MiB: always within the least budget).
                return n >= BundleMaker.streamWholeFrom ? .streamWhole : .inMemory(2 * n + (1 << 20))
            }
            let need = Self.entryMemory(oldSize: Int(old[s].size), newSize: n, index: index)
            return need > budget ? .lowMemory : .inMemory(need)
        }
    }
}
