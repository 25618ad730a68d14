#if canImport(Glibc)
import Glibc
#endif
import Foundation
import TreeIO

/// Who is making a delta job, in a form any process sharing the data directory can check: a random
/// token naming a lock file (`DIR/TOKEN.lock`) that its process holds locked (flock) while it lives.
/// The lock goes with the process, however it ends, and works where process ids do not: a server
/// restarted as process 1 in a container (its old claims were process 1's too), processes in other
/// PID namespaces (a CLI container beside the server's), ids reused after a reboot.
public final class ClaimToken: @unchecked Sendable {
    public let token: String
    private let directory: String
    private let fd: Int32

    init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let token = UUID().uuidString.lowercased()
        // Created and locked under another name, then renamed: every `.lock` file another process
        // sees is locked already (a sweep running meanwhile would take an unlocked one for dead).
        // Readable by all (0644): another user's process (a root CLI beside the server) must be able
        // to open it to test the lock.
        let path = directory + "/" + token + ".lock", staging = directory + "/" + token + ".new"
        let fd = open(staging, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw POSIX.error("cannot create the claim lock", staging) }
        fchmod(fd, 0o644)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, rename(staging, path) == 0 else {
            let e = POSIX.error("cannot set up the claim lock", path)
            unlink(staging)
            close(fd)
            throw e
        }
        (self.directory, self.token, self.fd) = (directory, token, fd)
        // Files left by processes that ended without removing theirs (killed, or never deinitialised).
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(".lock") {
            _ = isAlive(String(name.dropLast(5)))
        }
    }

    deinit {
        unlink(directory + "/" + token + ".lock")
        close(fd)
    }

    /// Whether the process that took `token` still runs: its lock file is held. A file nobody holds
    /// (its process is gone) is removed; one that cannot be opened is taken as held (never two makers).
    public func isAlive(_ other: String) -> Bool {
        if other == token { return true }
        guard !other.isEmpty, other.allSatisfy({ $0.isHexDigit || $0 == "-" }) else { return false }
        let path = directory + "/" + other + ".lock"
        let probe = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard probe >= 0 else { return errno != ENOENT }
        defer { close(probe) }
        if flock(probe, LOCK_EX | LOCK_NB) != 0 { return true }
        unlink(path)
        return false
    }
}
