#if canImport(Glibc)
import Glibc
#endif
import PatchFormat
import TreeIO

/// Options for applying a patch.
public struct ApplyOptions: Sendable {
    public var limits: PatchLimits
    /// Called with the number of bytes of the new file written so far (from the applying thread).
    public var progress: (@Sendable (_ written: UInt64, _ total: UInt64) -> Void)?

    public init(limits: PatchLimits = PatchLimits(), progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) {
        self.limits = limits
        self.progress = progress
    }
}

/// What an apply produced.
public struct ApplyResult: Sendable, Equatable {
    public var kind: PatchKind
    public var newSize: UInt64
    /// SHA-256 of the written file, hex.
    public var newSHA256: String
    /// Whether the result was checked against a checksum carried by the patch (`phx` only).
    public var verified: Bool
}

/// Applies `phx` and `BSDIFF40` patches.
///
/// Memory: the old file plus fixed buffers (per stream a 64 KiB decompression window, or 16 when it
/// is decoded ahead on its own thread (`StreamReading`); a 256 KiB work buffer, a 1 MiB write buffer
/// (two when written behind), and each codec's state: at most 128 MiB for a zstd window, 64 MiB for
/// xz, 3.6 MiB for bzip2).
/// The patch streams and the new file are never held whole. Time: O(old + new).
public enum PatchApplier {
    /// Applies `patchPath` to `oldPath` and writes `outputPath` atomically (temporary file beside it,
    /// fsync, rename). For `phx`, the old file's size is checked before it is read, and its SHA-256 and
    /// the result's before the result replaces anything; a wrong old file is the error reported, whatever
    /// else failed. With a second core and files from 4 MiB, the old file is read and hashed on one
    /// thread while the apply uses what is read, and the result hashed and written on another, a
    /// buffer behind (`OldInput`, `WriteBehind`). On any error nothing is left at `outputPath` that
    /// was not there before.
    @discardableResult
    public static func apply(oldPath: String, patchPath: String, outputPath: String,
                             options: ApplyOptions = ApplyOptions()) throws -> ApplyResult {
        let input = try FilePatchInput(path: patchPath)
        let header: PatchHeader
        do { header = try PatchHeader.read(from: input, limits: options.limits) } catch let e as PatchFormatError {
            throw PatcherError.format(e)
        }

        // The streams start decoding (on their own threads, when there is a second core) while the old
        // file is read and checked.
        let streams: PatchStreams
        do {
            streams = try PatchStreams(header: header, input: input)
        } catch let e as PatchFormatError {
            throw PatcherError.format(e)
        }
        // The old file is read, and for phx hashed, on another core while the apply uses what has
        // been read (`OldInput`); its size is checked now, its digest before the result replaces
        // anything. A wrong old file is the error reported whatever else failed.
        let oldStat = try FileIO.statPath(oldPath)
        var expectedOldSize: UInt64?
        var expectedOldSHA256: [UInt8]?
        if case .phx(let h) = header {
            expectedOldSize = h.oldSize
            expectedOldSHA256 = h.oldSHA256
        }
        let old = try OldInput(path: oldPath, expectedSize: expectedOldSize, expectedSHA256: expectedOldSHA256,
                               background: OldInput.beside(UInt64(oldStat.st_size)))
        var created: AtomicFileWriter?
        do {
            let dir = POSIX.directory(of: outputPath)
            if let free = POSIX.freeSpace(dir), free < header.newSize {
                throw PatcherError.insufficientSpace(path: dir, needed: header.newSize, available: free)
            }
            let writer: AtomicFileWriter
            // A file replaced keeps its own mode (as cp does: a private 0600 file stays private); a
            // new one takes the old file's (0644 when old is /dev/null: a device's 0666 is not a
            // file's). In place, both are the same file.
            let replaced = (try? POSIX.lstat(outputPath)).flatMap { $0.st_mode & S_IFMT == S_IFREG ? $0 : nil }
            // A large result is hashed and written on another core, a buffer behind the apply.
            do {
                let mode = replaced.map { $0.st_mode & 0o7777 } ?? (POSIX.isNullDevice(oldStat) ? 0o644 : oldStat.st_mode & 0o7777)
                writer = try AtomicFileWriter(destination: outputPath, mode: mode,
                                              behind: OldInput.beside(header.newSize))
            } catch let e as TreeIOError {
                throw PatcherError(e)
            }
            created = writer
            // As root, the owner too: the replaced file's, else the old file's.
            if getuid() == 0 { writer.copyOwnership(from: replaced ?? oldStat) }
            let total = header.newSize
            let progress = options.progress
            var engine = ApplyEngine(header: header, old: old, streams: streams, sink: writer)
            if let progress { engine.progress = { progress($0, total) } }
            do { try engine.run() } catch let e as PatchFormatError { throw PatcherError.format(e) }
            let digest: [UInt8]
            do { digest = try writer.digest() } catch let e as TreeIOError { throw PatcherError(e) }
            try old.verify()
            var verified = false
            if case .phx(let h) = header {
                guard digest == h.newSHA256 else {
                    throw PatcherError.newChecksumMismatch(expected: Hex.encode(h.newSHA256), actual: Hex.encode(digest))
                }
                verified = true
            }
            do { try writer.commit() } catch let e as TreeIOError { throw PatcherError(e) }
            return ApplyResult(kind: header.kind, newSize: writer.bytesWritten, newSHA256: Hex.encode(digest), verified: verified)
        } catch {
            created?.abort()
            let e = error as? TreeIOError
            throw old.precedence(e.map { PatcherError($0) } ?? error)
        }
    }

    /// Replaces `path` by the patched result, atomically and with the same permissions.
    @discardableResult
    public static func applyInPlace(path: String, patchPath: String, options: ApplyOptions = ApplyOptions()) throws -> ApplyResult {
        try apply(oldPath: path, patchPath: patchPath, outputPath: path, options: options)
    }

    /// Applies a patch held in memory to bytes in memory (tests, fuzzing, small files).
    public static func apply(old: [UInt8], patch: [UInt8], limits: PatchLimits = PatchLimits()) throws -> [UInt8] {
        try apply(old: old, patch: patch, limits: limits, readAhead: nil)
    }

    /// `readAhead` chooses how the streams are read, for tests of both ways: true reads every stream
    /// ahead, however short; false none; nil as `StreamReading` decides.
    static func apply(old: [UInt8], patch: [UInt8], limits: PatchLimits = PatchLimits(), readAhead: Bool?) throws -> [UInt8] {
        let input = MemoryPatchInput(patch)
        do {
            let header = try PatchHeader.read(from: input, limits: limits)
            if case .phx(let h) = header {
                guard UInt64(old.count) == h.oldSize else {
                    throw PatcherError.oldSizeMismatch(path: "(memory)", expected: h.oldSize, actual: UInt64(old.count))
                }
                let actual = SHA256Hasher.hash(old)
                guard actual == h.oldSHA256 else {
                    throw PatcherError.oldChecksumMismatch(path: "(memory)", expected: Hex.encode(h.oldSHA256), actual: Hex.encode(actual))
                }
            }
            let sink = MemorySink()
            try old.withUnsafeBytes { o in
                let old = OldInput(bytes: o)
                let streams = try PatchStreams(header: header, input: input, readAhead: readAhead ?? StreamReading.readAhead,
                                               minimum: readAhead == nil ? StreamReading.minimumLength : 0)
                try ApplyEngine(header: header, old: old, streams: streams, sink: sink).run()
            }
            if case .phx(let h) = header {
                let actual = SHA256Hasher.hash(sink.bytes)
                guard actual == h.newSHA256 else {
                    throw PatcherError.newChecksumMismatch(expected: Hex.encode(h.newSHA256), actual: Hex.encode(actual))
                }
            }
            return sink.bytes
        } catch let e as PatchFormatError {
            throw PatcherError.format(e)
        }
    }
}
