#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import PatchFormat

/// Reads a directory tree into bundle entries: every file, directory and symlink below `root`, with
/// permission bits and SHA-256 of file contents and link targets. Never follows a symlink.
/// Devices, FIFOs and sockets are refused.
///
/// Cost: one lstat per entry and one read of every file (hashed on `threads` cores); memory: the
/// entry list plus 1 MiB per hashing thread.
public enum TreeScanner {
    /// - Parameter lossyLinkTargets: decode a link target that is not UTF-8 with U+FFFD instead of
    ///   refusing the tree: for scans of an installation, whose digest then matches no bundle's (a delta
    ///   is refused, a full bundle replaces the tree), where refusing would leave it stuck; never for
    ///   the tree a bundle is made from, which would carry the altered target.
    public static func scan(_ root: String, hashContents: Bool = true, threads: Int = 1,
                            lossyLinkTargets: Bool = false) throws -> [TreeEntry] {
        var entries = [TreeEntry]()
        try walk(root: root, relative: nil, lossyLinkTargets: lossyLinkTargets, into: &entries)
        entries.sort { pathPrecedes($0.path, $1.path) }
        if hashContents {
            let files = entries.indices.filter { entries[$0].kind == .file }
            nonisolated(unsafe) let results = UnsafeMutableBufferPointer<Result<[UInt8], Error>?>.allocate(capacity: files.count)
            results.initialize(repeating: nil)
            defer {
                // The results hold arrays: deinitialize before freeing (found by the FuzzBundle leak check).
                _ = results.deinitialize()
                results.deallocate()
            }
            let paths = files.map { root + "/" + entries[$0].path }
            let workers = max(1, min(threads, files.count))
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var i = w
                while i < paths.count {
                    results[i] = Result { try hashFile(paths[i]) }
                    i += workers
                }
            }
            for (k, index) in files.enumerated() {
                entries[index].sha256 = try results[k]!.get()
            }
        }
        return entries
    }

    static func walk(root: String, relative: String?, lossyLinkTargets: Bool, into entries: inout [TreeEntry]) throws {
        let dirPath = relative.map { root + "/" + $0 } ?? root
        for raw in try POSIX.listDirectoryBytes(dirPath) {
            // Bundle paths are UTF-8. A name that is not is refused as it is on disk: decoded with
            // U+FFFD, it named a file that does not exist ("cannot stat").
            guard let name = String(validating: raw, as: UTF8.self) else {
                throw TreeIOError.invalidName(path: dirPath + "/" + POSIX.escaped(raw),
                                              reason: "its name is not valid UTF-8 (bundle paths are UTF-8)")
            }
            let rel = relative.map { $0 + "/" + name } ?? name
            let full = root + "/" + rel
            // The rule broken, without the bundle reader's wording ("corrupt patch: header field path").
            do { try BundlePath.validate(rel) } catch PatchFormatError.invalidField(_, _, let reason) {
                throw TreeIOError.invalidName(path: full, reason: "the path \(reason)")
            }
            let st = try POSIX.lstat(full)
            let mode = UInt16(st.st_mode & 0o777)
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                entries.append(.file(rel, mode: mode, size: UInt64(st.st_size), sha256: []))
            case S_IFDIR:
                entries.append(.directory(rel, mode: mode))
                try walk(root: root, relative: rel, lossyLinkTargets: lossyLinkTargets, into: &entries)
            case S_IFLNK:
                entries.append(.symlink(rel, target: try POSIX.readlink(full, lossy: lossyLinkTargets)))
            case S_IFCHR: throw TreeIOError.unsupportedFileType(path: full, type: "character device")
            case S_IFBLK: throw TreeIOError.unsupportedFileType(path: full, type: "block device")
            case S_IFIFO: throw TreeIOError.unsupportedFileType(path: full, type: "FIFO")
            case S_IFSOCK: throw TreeIOError.unsupportedFileType(path: full, type: "socket")
            default: throw TreeIOError.unsupportedFileType(path: full, type: "file of unknown type")
            }
        }
    }

    /// SHA-256 of a file's contents, read in 1 MiB chunks (O_NOFOLLOW).
    public static func hashFile(_ path: String) throws -> [UInt8] {
        let hasher = SHA256Hasher()
        try POSIX.readChunks(path, size: 1 << 20) { hasher.update($0) }
        return hasher.finalize()
    }
}
