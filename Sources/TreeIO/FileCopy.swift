#if canImport(Glibc)
import Glibc
#endif
import PatchFormat

extension POSIX {
    /// Copies a regular file to a new path (created exclusively, never through a symlink) with `mode`,
    /// 1 MiB at a time, fsynced. Returns the SHA-256 of what was copied.
    @discardableResult
    public static func copyFile(from source: String, to destination: String, mode: mode_t) throws -> [UInt8] {
        let (src, _) = try openRegularFile(source)
        defer { close(src) }
        let dst = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard dst >= 0 else { throw error("cannot create", destination) }
        var ok = false
        defer {
            close(dst)
            if !ok { Glibc.unlink(destination) }
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        let hasher = SHA256Hasher()
        while true {
            let n = read(src, buffer.baseAddress!, buffer.count)
            if n < 0 { if errno == EINTR { continue }; throw error("cannot read", source) }
            if n == 0 { break }
            let part = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hasher.update(part)
            try writeAll(dst, destination, part)
        }
        guard fchmod(dst, mode) == 0 else { throw error("cannot set permissions on", destination) }
        guard fsync(dst) == 0 else { throw error("cannot fsync", destination) }
        ok = true
        return hasher.finalize()
    }

    /// Inode number of a path (not following a final symlink), nil if it does not exist.
    public static func inode(_ path: String) throws -> UInt64? {
        try lstatIfExists(path).map { UInt64($0.st_ino) }
    }
}

/// An exclusive advisory lock on a file (flock), held until `release()` or deinit.
public final class FileLock {
    private var fd: Int32

    /// Takes the lock, waiting at most `patience` seconds; nil when another process holds it.
    ///
    /// The short wait is not for real contention (an update holds the lock for its whole run) but for
    /// a lock this process has just released: a child forked by another thread in the instant before
    /// its exec still shares the lock's open file description, and so the lock, for that instant.
    public init?(path: String, patience: Double = 2) throws {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw POSIX.error("cannot open lock file", path) }
        var waited = 0.0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            if e == EINTR { continue }
            if e == EWOULDBLOCK && waited < patience {
                usleep(20_000)
                waited += 0.02
                continue
            }
            close(fd)
            fd = -1
            if e == EWOULDBLOCK { return nil }
            errno = e
            throw POSIX.error("cannot lock", path)
        }
    }

    public func release() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
    }

    deinit { release() }
}

/// Fault injection for the crash tests: when PHOENIX_CRASH_AT=N is set, the Nth call to `hit` kills
/// the process with SIGKILL, as a power cut would. Without the variable it costs one branch.
public enum CrashPoint {
    nonisolated(unsafe) private static var remaining: Int = {
        guard let v = getenv("PHOENIX_CRASH_AT"), let n = Int(String(cString: v)), n > 0 else { return -1 }
        return n
    }()
    nonisolated(unsafe) private static var count = 0

    /// Number of crash points passed so far (tests use it to know how many exist).
    public static var passed: Int { count }

    nonisolated(unsafe) private static var fillRemaining: Int = {
        guard let v = getenv("PHOENIX_FILL_AT"), let n = Int(String(cString: v)), n > 0 else { return -1 }
        return n
    }()

    public static func hit(_ name: StaticString) {
        count += 1
        if fillRemaining > 0 {
            fillRemaining -= 1
            if fillRemaining == 0, let dir = getenv("PHOENIX_FILL_PATH") { POSIX.fillFileSystem(String(cString: dir) + "/.phoenix-fill") }
        }
        guard remaining > 0 else { return }
        remaining -= 1
        if remaining == 0 {
            if let log = getenv("PHOENIX_CRASH_LOG") {
                let path = String(cString: log)
                let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
                if fd >= 0 {
                    let line = "\(name)\n"
                    _ = line.withCString { write(fd, $0, strlen($0)) }
                    close(fd)
                }
            }
            kill(getpid(), SIGKILL)
        }
    }
}

extension POSIX {
    /// Takes every free byte of the file system holding `path` by writing to that file, as another
    /// program filling the disk would (disk-full injection: PHOENIX_FILL_AT and the tests' tmpfs).
    public static func fillFileSystem(_ path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let block = [UInt8](repeating: 0xA5, count: 1 << 16)
        for size in [1 << 16, 4096, 1] {
            while block.withUnsafeBytes({ write(fd, $0.baseAddress, size) }) == size {}
        }
    }
}
