#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials  // not all of Foundation: ICU and the rest cost ~9 MB of every run's memory
#else
import Foundation
#endif
import PatchFormat
import TreeIO

/// Options for applying a bundle.
public struct BundleApplyOptions: Sendable {
    public var limits: BundleLimits
    /// Cores used to hash trees.
    public var threads: Int
    /// Called with a phase name and a fraction in 0...1.
    public var progress: (@Sendable (String, Double) -> Void)?

    public init(limits: BundleLimits = BundleLimits(), threads: Int = 1, progress: (@Sendable (String, Double) -> Void)? = nil) {
        self.limits = limits
        self.threads = max(1, threads)
        self.progress = progress
    }
}

/// What an apply, a recovery or a rollback did.
public struct BundleApplyResult: Sendable, Equatable, Codable {
    public var directory: String
    public var oldDigest: String
    public var newDigest: String
    public var entries: Int
    public var filesWritten: Int
    public var bytesWritten: UInt64
    /// Where the replaced version is kept (for `rollback`), if there was one.
    public var backup: String?
    /// The installation was the bundle's new tree already: nothing was done.
    public var unchanged = false
}

public enum RecoveryOutcome: String, Sendable, Codable {
    /// No interrupted operation.
    case clean
    /// An interrupted switch was completed: the tree is the new version.
    case finished
    /// An interrupted staging was discarded, or a staged update whose switch cannot be done (a mount
    /// point): the tree is the old version.
    case undone
}

/// Applies bundles to an installed tree in place, atomically, with a backup of the replaced version.
///
/// Layout: beside the installation `DIR` lives a state directory `.NAME.phoenix` (same file system)
/// holding `staging/` (the new tree being built), `backup/` (the previous version), `journal` (what
/// an interrupted operation was doing), `installed` (the record of the current tree) and `lock`.
///
/// Apply: check the installation against the bundle's old-tree digest (naming the first differing
/// path), check free space, build the whole new tree in `staging/` (unchanged files hard-linked, new
/// and changed ones written and verified), verify its digest, then swap it with `DIR` in one
/// `renameat2(RENAME_EXCHANGE)` (two journaled renames where the file system lacks it), and keep the
/// old tree as `backup/`. A crash at any point leaves `DIR` old or new; `recover` (run first by every
/// apply and rollback) finishes or undoes what the journal says was under way.
///
/// Memory: the entry lists, plus one file at a time (the old file a changed file is patched from) and
/// fixed buffers. Disk: the new and changed files (unchanged ones are hard links).
public enum BundleApplier {
    // MARK: State directory

    struct State {
        let directory: String
        let root: String
        var staging: String { root + "/staging" }
        var backup: String { root + "/backup" }
        var journal: String { root + "/journal" }
        var backupInfo: String { root + "/backup.json" }
        var installed: String { root + "/installed" }
        var lock: String { root + "/lock" }
        var previous: String { root + "/previous" }
        /// Written before the switch so that finishing it needs no free space (renames only): a disk
        /// that fills up during the switch cannot leave a new tree with a failed apply.
        var journalNext: String { root + "/journal.next" }
        var backupInfoNext: String { root + "/backup.json.next" }
        var installedNext: String { root + "/installed.next" }

        func removePrepared() {
            for p in [journalNext, backupInfoNext, installedNext] { try? POSIX.unlink(p) }
        }

        init(directory raw: String) {
            directory = BundleApplier.installationPath(raw)
            root = POSIX.directory(of: directory) + "/." + POSIX.fileName(of: directory) + ".phoenix"
        }
    }

    /// The installation `raw` names (`POSIX.resolvedPath`), so that its state (`.NAME.phoenix`) is
    /// beside the directory, never inside it (`apply .`, `DIR/.`), and the same whatever the spelling.
    /// An installation reached through a symbolic link (`/opt/app -> /opt/app-1.2`) is updated where
    /// the link points, and the link stays: taken as it was, the link itself would be swapped for a
    /// directory, and given the link's own mode (0777: a world-writable root). The link's target need
    /// not exist: after a stop between the renames that replace an exchange, it is missing until
    /// recovery, which must still find the journal beside it.
    public static func installationPath(_ raw: String) -> String { POSIX.resolvedPath(raw) }

    /// Throws unless `directory` is an installation, or has the state an interrupted update left beside
    /// where it was (the renames that replace an exchange move it aside for a moment): with neither,
    /// the path names nothing. `rollback` checks this; `phoenix-diff recover` does before `recover`
    /// (which, for a client checking at every start, finds nothing to do in an installation that
    /// does not exist yet).
    public static func requireInstallationOrState(directory: String) throws {
        try requireInstallationOrState(State(directory: directory))
    }

    static func requireInstallationOrState(_ state: State) throws {
        try refuseRoot(state)
        if !POSIX.exists(state.directory) && !POSIX.exists(state.root) {
            throw PatcherError.io(operation: "no installation at", path: state.directory, errno: ENOENT, message: "no such directory")
        }
    }

    /// `/` has no directory beside it for the state, and swapping it is not an update.
    static func refuseRoot(_ state: State) throws {
        if state.directory == "/" {
            throw PatcherError.io(operation: "not an installation:", path: "/", errno: EINVAL, message: "the root directory cannot be updated in place")
        }
    }

    /// Where the backup of the installation `directory` is kept (`.NAME.phoenix/backup` beside it).
    public static func backupPath(for directory: String) -> String { State(directory: directory).backup }

    struct Journal: Codable {
        enum Operation: String, Codable { case apply, rollback }
        enum Phase: String, Codable { case staging, staged, switched }
        var operation: Operation
        var phase: Phase
        var oldDigest: String
        var newDigest: String
        /// Inode of the directory that will become the installation (staging, or the backup for a rollback).
        var incomingInode: UInt64
        /// Inode of the installation before the switch (0 if there was none).
        var liveInode: UInt64
    }

    struct BackupInfo: Codable {
        var digest: String
    }

    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let data = try JSONEncoder().encode(value)
        let w = try AtomicFileWriter(destination: path, mode: 0o600)
        try data.withUnsafeBytes { try w.write($0) }
        try w.commit()
    }

    static func readJSON<T: Decodable>(_ type: T.Type, from path: String) throws -> T? {
        guard POSIX.exists(path) else { return nil }
        let bytes = try POSIX.readFile(path)
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw PatcherError.io(operation: "unreadable state file", path: path, errno: 0, message: "\(error)")
        }
    }

    static func withLock<T>(_ state: State, _ body: () throws -> T) throws -> T {
        try POSIX.mkdirIfNeeded(state.root, mode: 0o700)
        guard let lock = try FileLock(path: state.lock) else { throw PatcherError.busy(directory: state.directory) }
        defer { lock.release() }
        return try body()
    }

    static func missingInstallation(_ state: State) -> PatcherError {
        .installationMismatch(directory: state.directory,
                              detail: "it does not exist; this bundle updates an existing installation (a full bundle installs one)")
    }

    static func mapErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as TreeIOError {
            throw PatcherError(e)
        } catch let e as PatchFormatError {
            throw PatcherError.format(e)
        }
    }

    // MARK: Apply

    /// Applies the bundle at `bundlePath` to the installation `directory` (which a full bundle may
    /// create). See the type's documentation for the sequence and the guarantees.
    @discardableResult
    public static func apply(directory: String, bundlePath: String, options: BundleApplyOptions = BundleApplyOptions()) throws -> BundleApplyResult {
        let state = State(directory: directory)
        try refuseRoot(state)
        return try mapErrors {
            // An update for an installation that is not there, with no state of one (an interrupted
            // install to recover), is refused before its parent, state directory or lock is made.
            if !POSIX.exists(state.directory) && !POSIX.exists(state.root) {
                let header = try readHeader(try FilePatchInput(path: bundlePath), limits: options.limits)
                if !header.isFull { throw missingInstallation(state) }
            }
            let parent = POSIX.directory(of: state.directory)
            if !POSIX.isDirectory(parent) {
                do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
                    throw PatcherError.io(operation: "cannot create directory", path: parent, errno: 0, message: "\(error)")
                }
            }
            return try withLock(state) {
                _ = try recoverLocked(state)
                return try applyLocked(state, bundlePath: bundlePath, options: options)
            }
        }
    }

    static func readManifest(_ input: FilePatchInput, header: BundleHeader, limits: BundleLimits) throws -> BundleManifest {
        let reader = try DecompressingReader(streamName: "manifest", codec: header.codec,
                                             source: input.source(offset: header.manifestOffset, length: header.manifestLength))
        // Grown as the stream delivers, not allocated at the declared size: a bundle that declares a
        // 512 MiB manifest and holds a few bytes fails at its end, having taken only what it gave.
        var raw = [UInt8]()
        let total = Int(header.manifestRawLength)
        while raw.count < total {
            let start = raw.count
            raw.append(contentsOf: repeatElement(0, count: min(1 << 20, total - start)))
            try raw.withUnsafeMutableBytes { try reader.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }
        }
        try reader.finish()
        return try BundleManifest.decode(raw, limits: limits)
    }

    static func applyLocked(_ state: State, bundlePath: String, options: BundleApplyOptions) throws -> BundleApplyResult {
        let progress = options.progress
        let input = try FilePatchInput(path: bundlePath)
        let header = try readHeader(input, limits: options.limits)
        let manifest = try readManifest(input, header: header, limits: options.limits)

        // 1. The installation must be the tree the bundle was made from (a full bundle replaces anything).
        progress?("verify", 0)
        let exists = POSIX.isDirectory(state.directory)
        if !exists && POSIX.exists(state.directory) {
            throw PatcherError.installationMismatch(directory: state.directory, detail: "it is not a directory")
        }
        let old = exists ? try TreeScanner.scan(state.directory, threads: options.threads, lossyLinkTargets: true) : []
        let oldDigest = TreeDigest.compute(old)
        if !header.isFull && !exists { throw missingInstallation(state) }
        // Applied a second time (a retried script, a client run after another's), the update is done
        // already: nothing to do, and the backup stays the version before (a full bundle would
        // otherwise keep the new tree as the backup of itself).
        if exists && oldDigest == header.newDigest && oldDigest != header.oldDigest {
            let digest = Hex.encode(oldDigest)
            return BundleApplyResult(directory: state.directory, oldDigest: digest, newDigest: digest, entries: old.count,
                                     filesWritten: 0, bytesWritten: 0, backup: POSIX.isDirectory(state.backup) ? state.backup : nil,
                                     unchanged: true)
        }
        if !header.isFull && oldDigest != header.oldDigest {
            throw PatcherError.installationMismatch(directory: state.directory, detail: describeMismatch(state, old: old, manifest: manifest))
        }
        // The touched entries are the paths the apply opens in the installation (sources to copy, link
        // or patch from): each must be the entry the scan found, which never follows a link. A bundle
        // whose list disagrees with the tree its digest names would have the apply open `lib/x` through
        // an installed symlink `lib`, reaching (and hard-linking) a file outside the installation.
        if !header.isFull, let d = manifest.firstTouchedDifference(in: old) {
            throw PatchFormatError.invalidField(field: "touched entries", value: d,
                                                reason: "do not match the tree the bundle names as its old tree")
        }
        // The header's counts must be the trees' (its total is what the byte limit was checked on).
        if !header.isFull && UInt64(old.count) != header.oldCount {
            throw PatchFormatError.invalidField(field: "old entry count (offset 80)", value: "\(header.oldCount)",
                                                reason: "the old tree has \(old.count) entries")
        }
        let base = header.isFull ? [] : old
        let new = try manifest.newTree(from: base, expectedDigest: header.newDigest)
        guard UInt64(new.count) == header.newCount else {
            throw PatchFormatError.invalidField(field: "new entry count (offset 88)", value: "\(header.newCount)",
                                                reason: "the operations build \(new.count) entries")
        }
        let newBytes = new.reduce(UInt64(0)) { $0 &+ ($1.kind == .file ? $1.size : 0) }
        guard newBytes == header.newTotalBytes else {
            throw PatchFormatError.invalidField(field: "new tree bytes (offset 96)", value: "\(header.newTotalBytes)",
                                                reason: "the operations build \(newBytes) bytes of files")
        }

        // 2. Free space for everything that is not a hard link, checked before anything is written.
        // By bytes (`PathKey`): as `String`s, the remove of an old NFC name replaced the file op of its
        // new NFD form, and staging found no file to build.
        var operations = [PathKey: BundleOp]()
        for o in manifest.operations { operations[PathKey(o.path)] = o.op }
        var needed: UInt64 = 1 << 20
        for e in new where e.kind == .file && (header.isFull || operations[PathKey(e.path)] != nil) { needed += e.size }
        let parent = POSIX.directory(of: state.directory)
        if let free = POSIX.freeSpace(state.root), free < needed {
            throw PatcherError.insufficientSpace(path: parent, needed: needed, available: free)
        }

        // 3. Build the new tree in staging.
        try writeJSON(Journal(operation: .apply, phase: .staging, oldDigest: Hex.encode(oldDigest),
                              newDigest: Hex.encode(header.newDigest), incomingInode: 0, liveInode: 0), to: state.journal)
        CrashPoint.hit("journal-staging")
        let files: Int, bytes: UInt64
        do {
            try POSIX.removeTree(state.staging)
            try POSIX.mkdir(state.staging, mode: 0o700)
            (files, bytes) = try stage(new: new, operations: operations, manifest: manifest, header: header, input: input,
                                       state: state, fromInstallation: !header.isFull, progress: progress)

            // 4. Verify the staged tree as a whole.
            progress?("verify staged", 0)
            let staged = try TreeScanner.scan(state.staging, threads: options.threads)
            if let diff = TreeRecord.firstDifference(expected: new, actual: staged) {
                throw PatcherError.newChecksumMismatch(expected: Hex.encode(header.newDigest), actual: "staged tree differs at \(diff)")
            }
            // The installation directory itself keeps its permissions (a fresh install gets 0755).
            let rootMode = exists ? mode_t((try POSIX.lstat(state.directory)).st_mode & 0o7777) : 0o755
            try POSIX.chmod(state.staging, rootMode)
            POSIX.fsyncPath(state.staging, directory: true)

            // 5. Prepare everything the switch will need, so that after it only renames remain.
            let record = TreeRecord.encode(new)
            let w = try AtomicFileWriter(destination: state.installedNext, mode: 0o600)
            try record.withUnsafeBytes { try w.write($0) }
            try w.commit()
            if exists { try writeJSON(BackupInfo(digest: Hex.encode(oldDigest)), to: state.backupInfoNext) }
            let incoming = try POSIX.inode(state.staging) ?? 0
            let live = exists ? (try POSIX.inode(state.directory) ?? 0) : 0
            var journal = Journal(operation: .apply, phase: .switched, oldDigest: Hex.encode(oldDigest),
                                  newDigest: Hex.encode(header.newDigest), incomingInode: incoming, liveInode: live)
            try writeJSON(journal, to: state.journalNext)
            journal.phase = .staged
            try writeJSON(journal, to: state.journal)
        } catch {
            // Nothing was switched: discard the partial tree and the journal; the installation is untouched.
            try? POSIX.removeTree(state.staging)
            state.removePrepared()
            try? POSIX.unlink(state.journal)
            throw error
        }

        // 6. Switch. One that fails with the installation where it was (a mount point cannot be
        // renamed) abandons the update, as before the journal: recovery would only fail the same way.
        CrashPoint.hit("journal-staged")
        do {
            try switchIn(state, incoming: state.staging, liveExists: exists)
        } catch {
            guard restoreAfterFailedSwitch(state, liveExists: exists) else { throw error }
            abandonStaged(state)
            if case TreeIOError.io(_, _, let code, let message) = error, code == EBUSY {
                throw PatcherError.io(operation: "cannot switch the update into place at", path: state.directory, errno: code,
                                      message: "\(message): a mount point cannot be replaced; install into a directory inside it. Nothing was changed")
            }
            throw error
        }
        try finishApply(state, oldDigest: Hex.encode(oldDigest), hadOld: exists, newTree: new)
        progress?("done", 1)
        return BundleApplyResult(directory: state.directory, oldDigest: Hex.encode(oldDigest), newDigest: Hex.encode(header.newDigest),
                                 entries: new.count, filesWritten: files, bytesWritten: bytes, backup: exists ? state.backup : nil)
    }

    static func describeMismatch(_ state: State, old: [TreeEntry], manifest: BundleManifest) -> String {
        if let d = manifest.firstTouchedDifference(in: old) { return "first difference: \(d)" }
        if let bytes = try? POSIX.readFile(state.installed), let record = try? TreeRecord.decode(bytes),
           let d = TreeRecord.firstDifference(expected: record, actual: old) {
            return "modified since it was installed; first difference: \(d)"
        }
        return "its digest \(Hex.encode(TreeDigest.compute(old)).prefix(16))... is not the bundle's old-tree digest; it is another version"
    }

    /// Creates every entry of `new` under staging. Unchanged files are hard-linked from the
    /// installation (copied where links are refused or the mode differs); new and changed files are
    /// written from the bundle's streams and verified; directory modes are set last.
    static func stage(new: [TreeEntry], operations: [PathKey: BundleOp], manifest: BundleManifest, header: BundleHeader,
                      input: FilePatchInput, state: State, fromInstallation: Bool,
                      progress: (@Sendable (String, Double) -> Void)?) throws -> (files: Int, bytes: UInt64) {
        func open(_ name: String, _ offset: UInt64, _ length: UInt64) throws -> DecompressingReader {
            try StreamReading.open(name, codec: header.codec, in: input, offset: offset, length: length)
        }
        let runs = try open("diff-runs", header.runsOffset, header.runsLength)
        let literals = try open("diff-literals", header.literalsOffset, header.literalsLength)
        let diff = DiffRunReader(runs: runs, literals: literals, total: 0)
        // Old-context order: a second reader of the control stream looks ahead, file by file.
        let lookahead = header.diffOrder == .oldContext ? try open("control", header.controlOffset, header.controlLength) : nil
        let tables = lookahead.map { _ in ContextTables(blockSize: 1 << 16) }
        let streams = TupleStreams(control: try open("control", header.controlOffset, header.controlLength), diff: diff,
                                   extra: try open("extra", header.extraOffset, header.extraLength))
        let total = max(header.newTotalBytes, 1)
        var done: UInt64 = 0
        var files = 0
        var written: UInt64 = 0
        for e in new {
            let target = state.staging + "/" + e.path
            switch e.kind {
            case .directory:
                try POSIX.mkdir(target, mode: 0o700)
            case .symlink:
                try POSIX.symlink(target: e.linkTarget ?? "", at: target)
            case .file:
                let installed = state.directory + "/" + e.path
                switch operations[PathKey(e.path)] {
                case nil:
                    // Unchanged: the installation's file, already verified by the tree digest.
                    try linkOrCopy(installed, target, mode: e.mode, sha256: e.sha256)
                case .chmod:
                    // Same content, new mode: a copy (a hard link would change the old tree's mode too).
                    try copyVerified(installed, target, mode: e.mode, sha256: e.sha256)
                    files += 1
                    written += e.size
                case .file(_, _, _, .copy(let source)):
                    let from = state.directory + "/" + manifest.touched[source].path
                    if manifest.touched[source].mode == e.mode {
                        try linkOrCopy(from, target, mode: e.mode, sha256: e.sha256)
                    } else {
                        try copyVerified(from, target, mode: e.mode, sha256: e.sha256)
                    }
                    files += 1
                    written += e.size
                case .file(_, _, _, .data(let source, let tuples, let diffBytes, let literalBytes, _)):
                    try diff.beginFile(total: lookahead == nil ? diffBytes : 0)
                    // The installed source file: read (and hashed) on its own thread when large, as a
                    // file patch's old file is; checked against the manifest before the result is kept.
                    var old = OldInput(bytes: UnsafeRawBufferPointer(start: nil, count: 0))
                    var sourcePath = ""
                    func changed(_ error: any Error) -> any Error {
                        guard case PatcherError.oldChecksumMismatch = error else { return error }
                        return PatcherError.installationMismatch(directory: state.directory, detail: "\(sourcePath) changed during the update")
                    }
                    if let source {
                        let t = manifest.touched[source]
                        sourcePath = t.path
                        do {
                            old = try OldInput(path: state.directory + "/" + t.path, expectedSize: t.size, expectedSHA256: t.sha256,
                                               background: OldInput.beside(t.size))
                        } catch {
                            throw changed(error)
                        }
                    }
                    let writer = try AtomicFileWriter(destination: target, mode: mode_t(e.mode), behind: OldInput.beside(e.size))
                    // This file's diff bytes: the shared natural-order reader, or its own old-context one
                    // (the pattern is keyed by this file's source).
                    let context = lookahead.map {
                        ContextDiffSource(runs: runs, literals: literals,
                                          lookahead: PhxControlReader(reader: $0, count: tuples, split: header.splitControl),
                                          old: old, controlCount: tuples, diffBytes: diffBytes, literalBytes: literalBytes,
                                          tables: tables!)
                    }
                    streams.diff = context ?? diff
                    // Drop this file's reader (and the source bytes it holds) before the next file's source is read.
                    defer { streams.diff = diff }
                    do {
                        // Progress inside the file too (every 4 MiB): one large file is most of many updates.
                        let before = done
                        try streams.applyPhx(count: tuples, newSize: e.size, old: old, splitControl: header.splitControl, to: writer,
                                             progress: progress.map { report in { report("stage", Double(before + $0) / Double(total)) } })
                        try context?.endFile()
                        try diff.endFile()
                        let digest = try writer.digest()
                        try old.verify()
                        guard digest == e.sha256 else {
                            throw PatcherError.newChecksumMismatch(expected: Hex.encode(e.sha256), actual: "\(Hex.encode(digest)) for \(e.path)")
                        }
                        try writer.commit()
                    } catch {
                        writer.abort()
                        throw changed(old.precedence(error))
                    }
                    files += 1
                    written += e.size
                default:
                    throw PatchFormatError.invalidField(field: "operation", value: BundlePath.quoted(e.path), reason: "does not build a file")
                }
                done += e.size
                progress?("stage", Double(done) / Double(total))
                CrashPoint.hit("staged-file")
            }
        }
        try streams.finish()
        try lookahead?.finish()
        // Over an installation, by a delta or a full bundle.
        if POSIX.isDirectory(state.directory) { try keepOwners(new, operations: operations, manifest: manifest, state: state) }
        // Directory modes last, deepest first, so that read-only directories can still be filled.
        for e in new.reversed() where e.kind == .directory {
            try POSIX.chmod(state.staging + "/" + e.path, mode_t(e.mode))
        }
        return (files, written)
    }

    /// Run as root (an updater updating a user's installation), the staged tree would be root's: each
    /// entry gets the owner and group of the installation's entry at its path, else of the file it is
    /// copied or moved from, else of the installation itself, as `cp -p` and `apply --in-place` keep a
    /// file's (a bundle carries no owners). A staged file that is a hard link to an installed one is
    /// that file: where its owner must change, it becomes a copy first, so that the installation (and
    /// with it the backup) is never touched. Another user cannot give files away, and what it writes
    /// is its own.
    static func keepOwners(_ new: [TreeEntry], operations: [PathKey: BundleOp], manifest: BundleManifest, state: State) throws {
        guard geteuid() == 0 else { return }
        let root = try POSIX.lstat(state.directory)
        // (Not there, or not reachable: a file where the new tree has a directory on the way.)
        func installed(_ path: String) -> stat? { (try? POSIX.lstatIfExists(state.directory + "/" + path)) ?? nil }
        for e in [nil] + new {
            let staged = state.staging + (e.map { "/" + $0.path } ?? "")
            var owner = root
            if let e {
                if let same = installed(e.path) {
                    owner = same
                } else if case .file(_, _, _, .copy(let source))? = operations[PathKey(e.path)], let from = installed(manifest.touched[source].path) {
                    owner = from
                }
            }
            let now = try POSIX.lstat(staged)
            guard now.st_uid != owner.st_uid || now.st_gid != owner.st_gid else { continue }
            if let e, e.kind == .file, now.st_nlink > 1 {
                let copy = state.staging + "/.phoenix-owner-copy"
                try copyVerified(staged, copy, mode: e.mode, sha256: e.sha256)
                try POSIX.rename(copy, staged)
            }
            try POSIX.lchown(staged, owner.st_uid, owner.st_gid)
            // A change of owner clears a file's set-user-ID and set-group-ID bits: its mode again.
            if let e, e.kind == .file, e.mode & 0o6000 != 0 { try POSIX.chmod(staged, mode_t(e.mode)) }
        }
    }

    static func linkOrCopy(_ from: String, _ to: String, mode: UInt16, sha256: [UInt8]) throws {
        if POSIX.link(from, to) { return }
        try copyVerified(from, to, mode: mode, sha256: sha256)
    }

    static func copyVerified(_ from: String, _ to: String, mode: UInt16, sha256: [UInt8]) throws {
        let digest = try POSIX.copyFile(from: from, to: to, mode: mode_t(mode))
        guard digest == sha256 else {
            throw PatcherError.installationMismatch(directory: POSIX.directory(of: from), detail: "\(from) changed during the update")
        }
    }

    /// Makes `incoming` the installation: one atomic exchange, or (without RENAME_EXCHANGE) a move of the
    /// installation aside followed by a move of `incoming` into place, both journaled.
    static func switchIn(_ state: State, incoming: String, liveExists: Bool) throws {
        if liveExists {
            if try POSIX.exchange(state.directory, incoming) {
                CrashPoint.hit("exchanged")
                return
            }
            try POSIX.rename(state.directory, state.previous)
            CrashPoint.hit("moved-aside")
            try POSIX.rename(incoming, state.directory)
            CrashPoint.hit("moved-in")
            try POSIX.rename(state.previous, incoming)
        } else {
            try POSIX.rename(incoming, state.directory)
            CrashPoint.hit("moved-in")
        }
        POSIX.fsyncPath(POSIX.directory(of: state.directory), directory: true)
    }

    /// After a switch into place that failed: moves the installation back if the fallback's renames had
    /// moved it aside, and says whether it is where it was (and `staging` still the new tree), so that
    /// the update can be abandoned.
    static func restoreAfterFailedSwitch(_ state: State, liveExists: Bool) -> Bool {
        if liveExists && !POSIX.exists(state.directory) && POSIX.exists(state.previous) {
            try? POSIX.rename(state.previous, state.directory)
        }
        return POSIX.exists(state.directory) == liveExists && !POSIX.exists(state.previous) && POSIX.isDirectory(state.staging)
    }

    /// Discards a staged update that was not switched in: the installation is untouched.
    static func abandonStaged(_ state: State) {
        try? POSIX.removeTree(state.staging)
        state.removePrepared()
        try? POSIX.unlink(state.journal)
    }

    /// After the switch: the old tree (now at `staging`) becomes the backup; the record of the
    /// installed tree is written; the journal is removed. Every step can be repeated.
    static func finishApply(_ state: State, oldDigest: String, hadOld: Bool, newTree: [TreeEntry]?) throws {
        if var j = try readJSON(Journal.self, from: state.journal), j.phase != .switched {
            if POSIX.exists(state.journalNext) {
                try POSIX.rename(state.journalNext, state.journal)
            } else {
                j.phase = .switched
                try writeJSON(j, to: state.journal)
            }
            CrashPoint.hit("journal-switched")
        }
        try? POSIX.unlink(state.journalNext)
        if hadOld && POSIX.exists(state.staging) {
            try POSIX.removeTree(state.backup)
            CrashPoint.hit("backup-removed")
            try POSIX.rename(state.staging, state.backup)
            CrashPoint.hit("backup-moved")
            if POSIX.exists(state.backupInfoNext) {
                try POSIX.rename(state.backupInfoNext, state.backupInfo)
            } else {
                try writeJSON(BackupInfo(digest: oldDigest), to: state.backupInfo)
            }
            CrashPoint.hit("backup-kept")
        } else {
            try POSIX.removeTree(state.staging)
            if hadOld && POSIX.exists(state.backupInfoNext) {
                // Stopped between moving the old tree to the backup and recording its digest: the
                // backup is that tree, so its record is the prepared one (without it, rollback would
                // refuse the backup as modified, or find none).
                try POSIX.rename(state.backupInfoNext, state.backupInfo)
            } else {
                try? POSIX.unlink(state.backupInfoNext)
            }
        }
        if POSIX.exists(state.installedNext) {
            try POSIX.rename(state.installedNext, state.installed)
        } else {
            let record = TreeRecord.encode(try newTree ?? TreeScanner.scan(state.directory, lossyLinkTargets: true))
            let w = try AtomicFileWriter(destination: state.installed, mode: 0o600)
            try record.withUnsafeBytes { try w.write($0) }
            try w.commit()
        }
        try POSIX.unlink(state.journal)
        POSIX.fsyncPath(state.root, directory: true)
        CrashPoint.hit("done")
    }

    // MARK: Recovery

    /// Finishes or undoes an operation that was interrupted (by a crash, a kill or a power cut), using
    /// the journal. Afterwards the installation is exactly the old or the new tree.
    @discardableResult
    public static func recover(directory: String) throws -> RecoveryOutcome {
        let state = State(directory: directory)
        try refuseRoot(state)
        guard POSIX.exists(state.root) else { return .clean }
        return try mapErrors { try withLock(state) { try recoverLocked(state) } }
    }

    static func recoverLocked(_ state: State) throws -> RecoveryOutcome {
        guard let j = try readJSON(Journal.self, from: state.journal) else {
            // No operation under way; a leftover staging tree (from before its journal) is garbage.
            try POSIX.removeTree(state.staging)
            state.removePrepared()
            return .clean
        }
        switch (j.operation, j.phase) {
        case (.apply, .staging):
            try POSIX.removeTree(state.staging)
            state.removePrepared()
            try POSIX.unlink(state.journal)
            return .undone
        case (.apply, .staged):
            let current = try POSIX.inode(state.directory)
            if current == j.incomingInode {
                // Switched: the old tree is at staging (or still aside, without RENAME_EXCHANGE).
                if POSIX.exists(state.previous) && !POSIX.exists(state.staging) { try POSIX.rename(state.previous, state.staging) }
            } else {
                // Not switched yet, or moved aside only; staging is complete and verified, so finish the
                // job. A switch that cannot be done (a mount point) puts the installation back and
                // abandons the update: retried at every start, it would stop every later run.
                let aside = current == nil && POSIX.exists(state.previous)
                let liveExists = aside || current != nil
                do {
                    if aside {
                        try POSIX.rename(state.staging, state.directory)
                        try POSIX.rename(state.previous, state.staging)
                    } else {
                        try switchIn(state, incoming: state.staging, liveExists: liveExists)
                    }
                } catch {
                    guard restoreAfterFailedSwitch(state, liveExists: liveExists) else { throw error }
                    abandonStaged(state)
                    return .undone
                }
            }
            try finishApply(state, oldDigest: j.oldDigest, hadOld: j.liveInode != 0, newTree: nil)
            return .finished
        case (.apply, .switched):
            if POSIX.exists(state.previous) && !POSIX.exists(state.staging) { try POSIX.rename(state.previous, state.staging) }
            try finishApply(state, oldDigest: j.oldDigest, hadOld: j.liveInode != 0, newTree: nil)
            return .finished
        case (.rollback, .staging):
            try POSIX.unlink(state.journal)
            return .undone
        case (.rollback, _):
            let current = try POSIX.inode(state.directory)
            if current != j.incomingInode {
                try switchRollback(state)
            }
            try finishRollback(state, rolledBackFrom: j.oldDigest)
            return .finished
        }
    }

    // MARK: Rollback

    /// Restores the previous version kept by the last apply, after checking it against its digest.
    /// The version rolled back from becomes the backup, so a second rollback rolls forward again.
    @discardableResult
    public static func rollback(directory: String, options: BundleApplyOptions = BundleApplyOptions()) throws -> BundleApplyResult {
        let state = State(directory: directory)
        try requireInstallationOrState(state)
        return try mapErrors {
            try withLock(state) {
                _ = try recoverLocked(state)
                guard POSIX.isDirectory(state.backup), let info = try readJSON(BackupInfo.self, from: state.backupInfo) else {
                    throw PatcherError.noBackup(directory: state.directory, detail: "there is no previous version to restore")
                }
                let backup = try TreeScanner.scan(state.backup, threads: options.threads, lossyLinkTargets: true)
                let backupDigest = Hex.encode(TreeDigest.compute(backup))
                guard backupDigest == info.digest else {
                    throw PatcherError.noBackup(directory: state.directory,
                                                detail: "the previous version was modified (digest \(backupDigest.prefix(16))..., expected \(info.digest.prefix(16))...)")
                }
                let current = try TreeScanner.scan(state.directory, threads: options.threads, lossyLinkTargets: true)
                let currentDigest = Hex.encode(TreeDigest.compute(current))
                try writeJSON(Journal(operation: .rollback, phase: .staged, oldDigest: currentDigest, newDigest: info.digest,
                                      incomingInode: try POSIX.inode(state.backup) ?? 0,
                                      liveInode: try POSIX.inode(state.directory) ?? 0), to: state.journal)
                CrashPoint.hit("rollback-journal")
                try switchRollback(state)
                try finishRollback(state, rolledBackFrom: currentDigest)
                return BundleApplyResult(directory: state.directory, oldDigest: currentDigest, newDigest: info.digest,
                                         entries: backup.count, filesWritten: 0, bytesWritten: 0, backup: state.backup)
            }
        }
    }

    static func switchRollback(_ state: State) throws {
        // Resumed after a stop between the fallback's renames, the installation may be aside: only
        // the renames can finish that (an exchange with a missing path fails before the file system
        // is asked whether it could exchange).
        if POSIX.exists(state.directory) && POSIX.exists(state.backup), try POSIX.exchange(state.directory, state.backup) {
            CrashPoint.hit("rollback-exchanged")
            return
        }
        if POSIX.exists(state.directory) {
            try POSIX.rename(state.directory, state.previous)
            CrashPoint.hit("rollback-moved-aside")
        }
        if POSIX.exists(state.backup) { try POSIX.rename(state.backup, state.directory) }
        CrashPoint.hit("rollback-moved-in")
        if POSIX.exists(state.previous) { try POSIX.rename(state.previous, state.backup) }
    }

    static func finishRollback(_ state: State, rolledBackFrom digest: String) throws {
        if POSIX.exists(state.previous) && !POSIX.exists(state.backup) { try POSIX.rename(state.previous, state.backup) }
        try writeJSON(BackupInfo(digest: digest), to: state.backupInfo)
        let record = TreeRecord.encode(try TreeScanner.scan(state.directory, lossyLinkTargets: true))
        let w = try AtomicFileWriter(destination: state.installed, mode: 0o600)
        try record.withUnsafeBytes { try w.write($0) }
        try w.commit()
        try POSIX.unlink(state.journal)
        CrashPoint.hit("rollback-done")
    }
}
