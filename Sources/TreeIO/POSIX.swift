#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CPhoenixSys

/// Small POSIX wrappers that throw `TreeIOError.io` naming the operation and the path.
public enum POSIX {
    public static func error(_ operation: String, _ path: String, _ code: Int32 = errno) -> TreeIOError {
        .io(operation: operation, path: path, errno: code, message: String(cString: strerror(code)))
    }

    /// `raw` as an absolute path without `.`, `..` or symbolic links (its own last component
    /// included), like realpath(3), but also for a path that does not exist (yet): what exists is
    /// resolved, the rest taken as written (`.` and `..` as its parents), and a link whose target is
    /// missing resolves to that target.
    public static func resolvedPath(_ raw: String) -> String {
        func real(_ p: String) -> String? {
            guard let r = realpath(p, nil) else { return nil }
            defer { free(r) }
            return String(cString: r)
        }
        var d = raw.isEmpty ? "." : raw
        if !d.hasPrefix("/") { d = currentDirectory() + "/" + d }
        for _ in 0..<40 {
            while d.count > 1 && d.hasSuffix("/") { d.removeLast() }
            let name = fileName(of: d), parent = directory(of: d)
            if name == "." || name == "..", let r = real(d) { return r }
            // `.` and `..` of a path that does not exist (yet): its parent, or the parent's parent.
            if name == "." { d = parent; continue }
            if name == ".." { d = directory(of: resolvedPath(parent)); continue }
            let realParent = real(parent) ?? parent
            let path = (realParent == "/" ? "" : realParent) + "/" + name
            guard isSymlink(path), let target = try? readlink(path), !target.isEmpty else { return path }
            d = target.hasPrefix("/") ? target : (realParent == "/" ? "" : realParent) + "/" + target
        }
        return d  // a loop of links: left as it is, to fail where it is used
    }

    /// The current working directory.
    private static func currentDirectory() -> String {
        guard let p = getcwd(nil, 0) else { return "/" }
        defer { free(p) }
        return String(cString: p)
    }

    /// Throws unless `path` may be replaced by a new file: absent, a regular file, or a symbolic link
    /// (which the new file replaces). A device, FIFO, socket or directory is never replaced (as root,
    /// `apply old patch /dev/null` turned the device into a file).
    public static func checkReplaceable(_ path: String) throws {
        var st = stat()
        guard Glibc.lstat(path, &st) == 0 else { return }
        let kind: String
        switch st.st_mode & S_IFMT {
        case S_IFREG, S_IFLNK: return
        case S_IFDIR: kind = "a directory"
        case S_IFCHR, S_IFBLK: kind = "a device"
        case S_IFIFO: kind = "a FIFO"
        case S_IFSOCK: kind = "a socket"
        default: kind = "not a regular file"
        }
        throw TreeIOError.io(operation: "will not replace", path: path, errno: EEXIST, message: "it is \(kind), not a regular file")
    }

    /// Throws unless a new file can be written at `path`: its directory exists and is writable, and
    /// `path` may be replaced (`checkReplaceable`). Checked before long work, so that a wrong output
    /// path fails at once rather than after the diff.
    public static func checkOutput(_ path: String) throws {
        let dir = directory(of: path)
        guard isDirectory(dir) else { throw error("no such directory for the output", dir, ENOENT) }
        guard access(dir, W_OK | X_OK) == 0 else { throw error("cannot write in", dir) }
        try checkReplaceable(path)
    }

    /// Whether `path` is a symbolic link (not followed).
    public static func isSymlink(_ path: String) -> Bool {
        var st = stat()
        return Glibc.lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    /// Whether `a` and `b` are the same file (device and inode, links followed); false when either is missing.
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard fstatat(AT_FDCWD, a, &sa, 0) == 0, fstatat(AT_FDCWD, b, &sb, 0) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    public static func fileName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// Writes all of `bytes` to `fd`, retrying short writes and EINTR.
    public static func writeAll(_ fd: Int32, _ path: String, _ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw error("cannot write", path)
            }
            done += n
        }
    }

    public static func lstat(_ path: String) throws -> stat {
        var st = stat()
        guard Glibc.lstat(path, &st) == 0 else { throw error("cannot stat", path) }
        return st
    }

    /// nil when the path does not exist.
    public static func lstatIfExists(_ path: String) throws -> stat? {
        var st = stat()
        if Glibc.lstat(path, &st) == 0 { return st }
        if errno == ENOENT { return nil }
        throw error("cannot stat", path)
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return Glibc.lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return fstatat(AT_FDCWD, path, &st, 0) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Whether `path` is a regular file (following symlinks): not a device such as /dev/null, a pipe
    /// or a directory.
    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return fstatat(AT_FDCWD, path, &st, 0) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// A symbolic link's target. One that is not UTF-8 is refused, naming the link: decoded, it would
    /// be another target (U+FFFD for each bad byte), installed as such by a bundle made from it. With
    /// `lossy` it is decoded so (for scans of an installation, which only compare digests: the tree
    /// then matches no bundle made from what is on disk, and a full bundle replaces it).
    public static func readlink(_ path: String, lossy: Bool = false) throws -> String {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = Glibc.readlink(path, &buf, 4096)
        guard n >= 0 else { throw error("cannot read link", path) }
        let bytes = buf[0..<n].map { UInt8(bitPattern: $0) }
        if lossy { return String(decoding: bytes, as: UTF8.self) }
        guard let target = String(validating: bytes, as: UTF8.self) else {
            throw TreeIOError.invalidName(path: path, reason: "it is a symbolic link whose target \"\(escaped(bytes))\" is not "
                                          + "valid UTF-8 (bundles store link targets as UTF-8)")
        }
        return target
    }

    /// A name's bytes for a message: UTF-8 as it is, any other byte (and control characters) as `\xNN`,
    /// so that a name that is not UTF-8 shows what is on disk rather than U+FFFD.
    public static func escaped(_ bytes: [UInt8]) -> String {
        var out = ""
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            let length: Int
            switch b {
            case 0x20..<0x7F: length = 1
            case 0xC2...0xDF: length = 2
            case 0xE0...0xEF: length = 3
            case 0xF0...0xF4: length = 4
            default: length = 0  // a control character, or a byte no UTF-8 sequence starts with
            }
            if length > 0, i + length <= bytes.count, let s = String(validating: bytes[i..<i + length], as: UTF8.self) {
                // C1 controls and the bidirectional overrides would reorder or hide what the message
                // shows: as `\u{...}`.
                let v = s.unicodeScalars.first!.value
                out += (0x80...0x9F).contains(v) || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
                    ? "\\u{" + String(v, radix: 16) + "}" : s
                i += length
            } else {
                out += "\\x" + (b < 0x10 ? "0" : "") + String(b, radix: 16)
                i += 1
            }
        }
        return out
    }

    public static func mkdir(_ path: String, mode: mode_t = 0o755) throws {
        guard Glibc.mkdir(path, mode) == 0 else { throw error("cannot create directory", path) }
    }

    public static func mkdirIfNeeded(_ path: String, mode: mode_t = 0o755) throws {
        if Glibc.mkdir(path, mode) != 0 && errno != EEXIST { throw error("cannot create directory", path) }
    }

    public static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw error("cannot rename \(from) to", to) }
    }

    /// Atomically swaps two paths (Linux `renameat2(RENAME_EXCHANGE)`). Returns false where the
    /// kernel or file system does not support it (NFS, vfat, ZFS before 2.2), and always when
    /// PHOENIX_NO_EXCHANGE is set: the tests' way to take the fallback on any file system.
    public static func exchange(_ a: String, _ b: String) throws -> Bool {
        if exchangeDisabled {
            // As such a file system answers: the paths are looked up (ENOENT) before the flag is refused.
            guard exists(a) && exists(b) else {
                errno = ENOENT
                throw error("cannot exchange \(a) with", b)
            }
            return false
        }
        if phx_rename_exchange(a, b) == 0 { return true }
        if errno == EINVAL || errno == ENOSYS || errno == ENOTSUP { return false }
        throw error("cannot exchange \(a) with", b)
    }

    nonisolated(unsafe) private static let exchangeDisabled = getenv("PHOENIX_NO_EXCHANGE") != nil

    public static func symlink(target: String, at path: String) throws {
        guard Glibc.symlink(target, path) == 0 else { throw error("cannot create symlink", path) }
    }

    public static func link(_ from: String, _ to: String) -> Bool {
        Glibc.link(from, to) == 0
    }

    /// Sets the owner and group of `path` itself (a symbolic link's own, not its target's).
    public static func lchown(_ path: String, _ uid: uid_t, _ gid: gid_t) throws {
        guard Glibc.lchown(path, uid, gid) == 0 else { throw error("cannot set the owner of", path) }
    }

    public static func chmod(_ path: String, _ mode: mode_t) throws {
        guard Glibc.chmod(path, mode) == 0 else { throw error("cannot set permissions on", path) }
    }

    public static func unlink(_ path: String) throws {
        guard Glibc.unlink(path) == 0 || errno == ENOENT else { throw error("cannot remove", path) }
    }

    /// Runs the program at `path` with `arguments` (its standard input and output are ours) and waits
    /// for it: its exit status, or 128 + the number of the signal that ended it (as a shell reports).
    /// The program starts with no signal blocked (`phx_spawn`), from whatever thread this is called.
    public static func runProcess(_ path: String, _ arguments: [String]) throws -> Int32 {
        let argv = ([path] + arguments).map { strdup($0) }
        defer { for a in argv { free(a) } }
        var pid: Int32 = 0
        let started = (argv + [nil]).withUnsafeBufferPointer { phx_spawn(path, $0.baseAddress!, &pid) }
        guard started == 0 else {
            errno = started
            throw error("cannot run", path)
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw error("cannot wait for", path) }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import.
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    public static func fsyncPath(_ path: String, directory: Bool) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0) | O_NOFOLLOW)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }

    /// Gives memory that malloc keeps after frees back to the system (after a large, finished job).
    public static func releaseFreeMemory() { phx_release_free_memory() }

    /// From now on, allocations of `bytes` or more get mappings of their own, given back to the system
    /// when freed (a process-wide malloc setting; for a process that runs large jobs one after another).
    public static func mapLargeAllocations(above bytes: Int) { phx_map_large_allocations(bytes) }

    public static func freeSpace(_ directory: String) -> UInt64? {
        var s = statvfs()
        guard statvfs(directory, &s) == 0 else { return nil }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    /// Names in a directory (without . and ..), unsorted, as the file system holds them: a name that
    /// is not UTF-8 cannot be a `String` unchanged.
    public static func listDirectoryBytes(_ path: String) throws -> [[UInt8]] {
        guard let dir = opendir(path) else { throw error("cannot open directory", path) }
        defer { closedir(dir) }
        var names = [[UInt8]]()
        let dot = UInt8(ascii: ".")
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw -> [UInt8] in
                Array(raw.prefix { $0 != 0 })
            }
            if name == [dot] || name == [dot, dot] { continue }
            names.append(name)
        }
        return names
    }

    /// Names in a directory (without . and ..), unsorted; one that is not UTF-8 gets U+FFFD for its bad
    /// bytes (`listDirectoryBytes` has them as they are).
    public static func listDirectory(_ path: String) throws -> [String] {
        try listDirectoryBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Removes a tree without following symlinks. Missing paths are fine.
    public static func removeTree(_ path: String) throws {
        guard let st = try lstatIfExists(path) else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            // Make sure we may list and unlink inside (a bundle may have made it read-only).
            _ = Glibc.chmod(path, 0o700)
            for name in try listDirectory(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 || errno == ENOENT else { throw error("cannot remove directory", path) }
        } else {
            try unlink(path)
        }
    }

    /// Opens `path` for reading only if it is a regular file, or the null device (an empty input: a
    /// patch from nothing, as with bsdiff); returns the descriptor and its stat. O_NONBLOCK: a FIFO put
    /// where a file was expected (or named on purpose) is refused here, not waited on forever at open;
    /// a pipe (`<(...)`) is refused too, instead of read as empty by its size. Regular files ignore the
    /// flag. The final component is not followed unless `followSymlinks`.
    public static func openRegularFile(_ path: String, followSymlinks: Bool = false) throws -> (fd: Int32, stat: stat) {
        func acceptable(_ st: stat) -> Bool {
            (st.st_mode & S_IFMT) == S_IFREG || ((st.st_mode & S_IFMT) == S_IFCHR && st.st_rdev == nullDevice)
        }
        let refused = TreeIOError.io(operation: "not a regular file:", path: path, errno: EINVAL,
                                     message: "expected a regular file (a pipe, FIFO or device cannot be read here)")
        // Looked at before opening: opening a device or FIFO is not free of effects (a writer blocked on
        // a FIFO is let go; some devices act on open). Checked again on the descriptor after.
        var before = stat()
        if fstatat(AT_FDCWD, path, &before, followSymlinks ? 0 : AT_SYMLINK_NOFOLLOW) == 0 && (before.st_mode & S_IFMT) != S_IFLNK
            && !acceptable(before) {
            throw refused
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (followSymlinks ? 0 : O_NOFOLLOW))
        guard fd >= 0 else { throw error("cannot open", path) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = error("cannot stat", path)
            close(fd)
            throw e
        }
        guard acceptable(st) else {
            close(fd)
            throw refused
        }
        return (fd, st)
    }

    /// Whether `st` is /dev/null's: the empty input `make` and `apply` take as OLD for a patch from nothing.
    public static func isNullDevice(_ st: stat) -> Bool {
        (st.st_mode & S_IFMT) == S_IFCHR && st.st_rdev == nullDevice
    }

    /// The device number of /dev/null, if it is one.
    private static let nullDevice: dev_t? = {
        var st = stat()
        return stat("/dev/null", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR ? st.st_rdev : nil
    }()

    /// Reads a whole regular file, to its end (more than its size at open if it grew meanwhile). For
    /// files that must not be followed through a symlink, the open uses O_NOFOLLOW unless `followSymlinks`.
    public static func readFile(_ path: String, followSymlinks: Bool = false) throws -> [UInt8] {
        let (fd, st) = try openRegularFile(path, followSymlinks: followSymlinks)
        defer { close(fd) }
        // One byte more than the size, so that the end is seen without another pass when it did not grow.
        var out = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
        var done = 0
        while true {
            if done == out.count { out.append(contentsOf: repeatElement(0, count: max(out.count, 1 << 16))) }
            let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 { if errno == EINTR { continue }; throw error("cannot read", path) }
            if n == 0 { break }
            done += n
        }
        out.removeLast(out.count - done)
        return out
    }

    /// Reads a regular file from start to end (O_NOFOLLOW), handing `body` each chunk of at most `size`
    /// bytes: a file of any size in one buffer's memory.
    public static func readChunks(_ path: String, size: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let (fd, _) = try openRegularFile(path)
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, size), alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress!, buffer.count)
            if n < 0 { if errno == EINTR { continue }; throw error("cannot read", path) }
            if n == 0 { return }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    /// Writes bytes to a new file (O_EXCL, O_NOFOLLOW) with `mode`, fsynced.
    public static func writeNewFile(_ path: String, _ bytes: UnsafeRawBufferPointer, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw error("cannot create", path) }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 { if errno == EINTR { continue }; throw error("cannot write", path) }
            done += n
        }
        guard fchmod(fd, mode) == 0 else { throw error("cannot set permissions on", path) }
        guard fsync(fd) == 0 else { throw error("cannot fsync", path) }
    }
}
