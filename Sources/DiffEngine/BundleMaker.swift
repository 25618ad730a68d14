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

    public init(codec: CodecID = .zstd, level: Int? = nil, threads: Int = 1, index: MatchIndexKind = .auto) {
        self.codec = codec
        self.level = level
        self.threads = max(1, threads)
        self.index = index
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
/// Cost: a read and hash of both trees; one diff per changed file, `threads` at a time (memory: the
/// largest old/new pair being diffed on each thread, about 6x its size, plus the compressed output).
public enum BundleMaker {
    public static func make(oldRoot: String?, newRoot: String, to output: String, options: BundleOptions = BundleOptions(),
                            progress: ((Double) -> Void)? = nil) throws -> BundleSummary {
        progress?(0)
        let old = try oldRoot.map { try TreeScanner.scan($0, threads: options.threads) } ?? []
        let new = try TreeScanner.scan(newRoot, threads: options.threads)
        progress?(0.2)
        let plan = plan(old: old, new: new)

        // Diff the data files, a batch at a time, then feed their streams to the encoders in order.
        let level = options.level ?? options.codec.defaultLevel
        let encoders = try (0..<4).map { _ in try options.codec.makeEncoder(level: level, threads: options.threads) }
        // Compressed streams go to temporary files beside the output as they are produced, so that a
        // large full bundle does not sit in memory.
        let spills = try (0..<4).map { _ in try AtomicFileWriter(destination: output, mode: 0o600) }
        defer { for s in spills { s.abort() } }
        func spill() throws {
            for (e, f) in zip(encoders, spills) {
                let bytes = e.takeOutput()
                try bytes.withUnsafeBytes { try f.write($0) }
            }
        }
        var operations = plan.operations
        let jobs = plan.dataJobs
        var done = 0
        while done < jobs.count {
            var batch = [Int]()
            var bytes: UInt64 = 0
            while done + batch.count < jobs.count && (batch.isEmpty || (batch.count < options.threads * 8 && bytes < 256 << 20)) {
                let job = jobs[done + batch.count]
                bytes += new[job.newIndex].size
                batch.append(done + batch.count)
            }
            let results = try diffBatch(batch.map { jobs[$0] }, old: old, new: new, oldRoot: oldRoot, newRoot: newRoot,
                                        threads: options.threads, index: options.index)
            for (k, jobIndex) in batch.enumerated() {
                let job = jobs[jobIndex]
                let r = results[k]
                try encoders[0].write(r.streams.control)
                try encoders[1].write(r.streams.runs)
                try encoders[2].write(r.streams.literals)
                try encoders[3].write(r.streams.extra)
                let e = new[job.newIndex]
                operations[job.operationIndex].op = .file(
                    mode: e.mode, size: e.size, sha256: e.sha256,
                    action: .data(source: r.usedSource ? job.touchedSource : nil, tuples: r.streams.tuples,
                                  diffBytes: r.streams.diffBytes, literalBytes: r.streams.literalBytes,
                                  extraBytes: r.streams.extraBytes))
            }
            try spill()
            done += batch.count
            progress?(0.2 + 0.7 * Double(done) / Double(max(jobs.count, 1)))
        }
        for (e, f) in zip(encoders, spills) {
            let tail = try e.finish()
            try tail.withUnsafeBytes { try f.write($0) }
            try f.flushToDisk()
        }
        let streamLengths = spills.map { $0.bytesWritten }

        let manifest = BundleManifest(touched: plan.touched, operations: operations)
        let rawManifest = manifest.encode()
        let manifestEncoder = try options.codec.makeEncoder(level: level, threads: 1)
        try manifestEncoder.write(rawManifest)
        let compressedManifest = try manifestEncoder.finish()
        let header = BundleHeader(
            isFull: oldRoot == nil, codec: options.codec, level: UInt8(clamping: level),
            oldDigest: TreeDigest.compute(old), newDigest: TreeDigest.compute(new),
            oldCount: UInt64(old.count), newCount: UInt64(new.count),
            newTotalBytes: new.reduce(0) { $0 + ($1.kind == .file ? $1.size : 0) },
            manifestLength: UInt64(compressedManifest.count), manifestRawLength: UInt64(rawManifest.count),
            controlLength: streamLengths[0], runsLength: streamLengths[1],
            literalsLength: streamLengths[2], extraLength: streamLengths[3])

        let writer = try AtomicFileWriter(destination: output, mode: 0o644)
        for part in [header.encode(), compressedManifest] {
            try part.withUnsafeBytes { try writer.write($0) }
        }
        for f in spills { try f.copyContents(to: writer) }
        try writer.commit()
        progress?(1)
        var summary = plan.summary
        summary.oldEntries = old.count
        summary.newEntries = new.count
        summary.newBytes = header.newTotalBytes
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
    }

    struct Plan {
        var touched: [TreeEntry]
        var operations: [BundleOperation]
        var dataJobs: [DataJob]
        var summary: BundleSummary
    }

    static func plan(old: [TreeEntry], new: [TreeEntry]) -> Plan {
        var oldByPath = [String: Int]()
        var oldBySHA = [[UInt8]: [Int]]()
        var oldByName = [String: [Int]]()
        for (i, e) in old.enumerated() {
            oldByPath[e.path] = i
            if e.kind == .file {
                oldBySHA[e.sha256, default: []].append(i)
                oldByName[POSIX.fileName(of: e.path), default: []].append(i)
            }
        }
        let newPaths = Set(new.map(\.path))
        var touchedPaths = Set<String>()
        var ops: [(String, BundleOp, DataJob?)] = []
        var summary = BundleSummary(oldEntries: old.count, newEntries: new.count, unchanged: 0, added: 0, changed: 0,
                                    removed: 0, copied: 0, newBytes: 0, bundleBytes: 0)
        for (ni, e) in new.enumerated() {
            let same = oldByPath[e.path].map { old[$0] }
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
                touchedPaths.insert(same.path)
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
                    touchedPaths.insert(old[s].path)
                    summary.copied += 1
                    ops.append((e.path, .file(mode: e.mode, size: e.size, sha256: e.sha256, action: .copy(source: s)), nil))
                    continue
                }
                var source: Int?
                if let same, same.kind == .file {
                    source = oldByPath[same.path]
                } else if let candidates = oldByName[name] {
                    // A moved file: prefer the candidate closest in size, then the first in path order.
                    source = candidates.min { a, b in
                        let da = old[a].size > e.size ? old[a].size - e.size : e.size - old[a].size
                        let db = old[b].size > e.size ? old[b].size - e.size : e.size - old[b].size
                        return da < db
                    }
                }
                if let source { touchedPaths.insert(old[source].path) }
                ops.append((e.path, .file(mode: e.mode, size: e.size, sha256: e.sha256, action: .data(
                    source: nil, tuples: 0, diffBytes: 0, literalBytes: 0, extraBytes: 0)),
                    DataJob(operationIndex: 0, newIndex: ni, oldSource: source, touchedSource: nil)))
            }
        }
        for e in old where !newPaths.contains(e.path) {
            touchedPaths.insert(e.path)
            summary.removed += 1
            ops.append((e.path, .remove, nil))
        }
        let touched = old.filter { touchedPaths.contains($0.path) }
        var touchedIndex = [String: Int]()
        for (i, e) in touched.enumerated() { touchedIndex[e.path] = i }
        ops.sort { pathPrecedes($0.0, $1.0) }
        var operations = [BundleOperation]()
        var jobs = [DataJob]()
        for (k, (path, op, job)) in ops.enumerated() {
            var op = op
            if case .file(let mode, let size, let sha, .copy(let s)) = op {
                op = .file(mode: mode, size: size, sha256: sha, action: .copy(source: touchedIndex[old[s].path]!))
            }
            operations.append(BundleOperation(path: path, op: op))
            if var job {
                job.operationIndex = k
                job.touchedSource = job.oldSource.map { touchedIndex[old[$0].path]! }
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
                          threads: Int, index: MatchIndexKind) throws -> [JobResult] {
        nonisolated(unsafe) var results = [Result<JobResult, Error>?](repeating: nil, count: jobs.count)
        let workers = max(1, min(threads, jobs.count))
        results.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let out = buffer
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var i = w
                while i < jobs.count {
                    out[i] = Result { try diffOne(jobs[i], old: old, new: new, oldRoot: oldRoot, newRoot: newRoot, index: index) }
                    i += workers
                }
            }
        }
        return try results.map { try $0!.get() }
    }

    static func diffOne(_ job: DataJob, old: [TreeEntry], new: [TreeEntry], oldRoot: String?, newRoot: String,
                        index: MatchIndexKind) throws -> JobResult {
        let newBytes = try POSIX.readFile(newRoot + "/" + new[job.newIndex].path)
        guard SHA256Hasher.hash(newBytes) == new[job.newIndex].sha256 else {
            throw TreeIOError.io(operation: "file changed while the bundle was being made:", path: newRoot + "/" + new[job.newIndex].path,
                                 errno: 0, message: "its content no longer matches the scan")
        }
        return try newBytes.withUnsafeBufferPointer { n in
            guard let source = job.oldSource, let oldRoot else {
                return JobResult(streams: .whole(n), usedSource: false)
            }
            let oldBytes = try POSIX.readFile(oldRoot + "/" + old[source].path)
            guard SHA256Hasher.hash(oldBytes) == old[source].sha256 else {
                throw TreeIOError.io(operation: "file changed while the bundle was being made:", path: oldRoot + "/" + old[source].path,
                                     errno: 0, message: "its content no longer matches the scan")
            }
            let streams = try oldBytes.withUnsafeBufferPointer { o in try DiffEngine.rawPhxStreams(old: o, new: n, index: index) }
            // When almost nothing matched, the file alone compresses at least as well: store it whole.
            if streams.diffBytes < UInt64(n.count) / 16 {
                return JobResult(streams: .whole(n), usedSource: false)
            }
            return JobResult(streams: streams, usedSource: true)
        }
    }
}
