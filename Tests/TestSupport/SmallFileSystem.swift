import Foundation
import TreeIO

/// A small tmpfs for disk-full tests (needs root, as CI has); nil where mounting is not permitted, and
/// the caller then skips with the printed reason.
public enum SmallFileSystem {
    nonisolated(unsafe) static var mounts: [(TemporaryDirectory, String)] = []
    static let lock = NSLock()

    public static func mount(kilobytes: Int) throws -> String? {
        guard getuid() == 0 else {
            print("SmallFileSystem: not root, cannot mount a tmpfs; disk-full test skipped")
            return nil
        }
        let dir = try TemporaryDirectory()
        let mountPoint = dir.file("fs")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let r = try Run.process("/bin/mount", ["-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", mountPoint])
        if r.status != 0 {
            print("SmallFileSystem: cannot mount a tmpfs here (\(r.stderr)); disk-full test skipped")
            return nil
        }
        lock.lock()
        mounts.append((dir, mountPoint))
        lock.unlock()
        return mountPoint
    }

    public static func unmount(_ path: String) {
        _ = try? Run.process("/bin/umount", ["-l", path])
        lock.lock()
        mounts.removeAll { $0.1 == path }
        lock.unlock()
    }

    /// Takes every free byte of the file system holding `directory` (as another program filling the
    /// disk would); returns the filler's path.
    @discardableResult
    public static func fill(_ directory: String) -> String {
        let path = directory + "/.test-fill"
        POSIX.fillFileSystem(path)
        return path
    }
}
