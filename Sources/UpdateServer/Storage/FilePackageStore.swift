import Foundation
import PatchFormat
import TreeIO

/// Packages as files named by their SHA-256 under `root/aa/<sha256>`, written once and never changed.
public final class FilePackageStore: PackageStore {
    public let root: String

    public init(root: String) throws {
        self.root = root
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    public func add(fileAt path: String) throws -> (sha256: String, size: UInt64) {
        let sha = Hex.encode(try TreeScanner.hashFile(path))
        let size = UInt64(try POSIX.lstat(path).st_size)
        let dir = root + "/" + sha.prefix(2)
        try POSIX.mkdirIfNeeded(dir)
        let target = dir + "/" + sha
        if POSIX.exists(target) {
            try POSIX.unlink(path)
        } else {
            try POSIX.rename(path, target)
            POSIX.fsyncPath(dir, directory: true)
        }
        return (sha, size)
    }

    public func path(for sha256: String) -> String? {
        guard sha256.count == 64, sha256.allSatisfy({ $0.isHexDigit }) else { return nil }
        let p = root + "/" + sha256.prefix(2) + "/" + sha256
        return POSIX.exists(p) ? p : nil
    }
}
