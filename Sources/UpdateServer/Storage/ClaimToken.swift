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
    private let lock: FileLock

    init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.directory = directory
        token = UUID().uuidString.lowercased()
        guard let held = try FileLock(path: directory + "/" + token + ".lock", patience: 0) else {
            throw ServerError.badConfiguration("cannot hold the claim lock in \(directory)")
        }
        lock = held
    }

    deinit {
        try? POSIX.unlink(directory + "/" + token + ".lock")
        lock.release()
    }

    /// Whether the process that took `token` still runs: its lock file is held. A file nobody holds
    /// (its process is gone) is removed.
    public func isAlive(_ other: String) -> Bool {
        if other == token { return true }
        guard !other.isEmpty, other.allSatisfy({ $0.isHexDigit || $0 == "-" }) else { return false }
        let path = directory + "/" + other + ".lock"
        guard POSIX.exists(path) else { return false }
        guard let probe = try? FileLock(path: path, patience: 0) else { return true }
        try? POSIX.unlink(path)
        probe.release()
        return false
    }
}
