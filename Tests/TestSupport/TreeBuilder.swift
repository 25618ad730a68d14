import Foundation
import PatchFormat
import TreeIO

/// Builds directory trees for tests from a compact description.
public enum TreeSpec {
    case file(String, [UInt8], mode: UInt16 = 0o644)
    case text(String, String, mode: UInt16 = 0o644)
    case dir(String, mode: UInt16 = 0o755)
    case link(String, to: String)

    public static func build(_ root: String, _ entries: [TreeSpec]) throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        for e in entries {
            switch e {
            case .file(let path, let bytes, let mode):
                let full = root + "/" + path
                try FileManager.default.createDirectory(atPath: POSIX.directory(of: full), withIntermediateDirectories: true)
                try Data(bytes).write(to: URL(fileURLWithPath: full))
                try POSIX.chmod(full, mode_t(mode))
            case .text(let path, let text, let mode):
                try build(root, [.file(path, Array(text.utf8), mode: mode)])
            case .dir(let path, let mode):
                let full = root + "/" + path
                try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
                try POSIX.chmod(full, mode_t(mode))
            case .link(let path, let target):
                let full = root + "/" + path
                try FileManager.default.createDirectory(atPath: POSIX.directory(of: full), withIntermediateDirectories: true)
                try POSIX.symlink(target: target, at: full)
            }
        }
    }

    /// The tree digest of a directory (what bundles verify against).
    public static func digest(_ root: String) throws -> String {
        Hex.encode(TreeDigest.compute(try TreeScanner.scan(root)))
    }

    /// Copies a tree preserving modes and symlinks (cp -a).
    public static func copy(_ from: String, _ to: String) throws {
        let r = try Run.process("/bin/cp", ["-a", from, to])
        guard r.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: ["stderr": r.stderr]) }
    }
}

/// Builds bundles by hand, for hostile-input tests.
public enum HandMadeBundle {
    public static func make(manifest: BundleManifest, oldDigest: [UInt8] = TreeDigest.empty, newDigest: [UInt8] = TreeDigest.empty,
                            oldCount: UInt64 = 0, newCount: UInt64 = 0, newTotalBytes: UInt64 = 0, full: Bool = false,
                            control: [UInt8] = [], runs: [UInt8] = [], literals: [UInt8] = [], extra: [UInt8] = [],
                            rawManifest: [UInt8]? = nil) throws -> [UInt8] {
        let raw = rawManifest ?? manifest.encode()
        let m = try HandMadePatch.compress(raw, codec: .zstd)
        let c = try HandMadePatch.compress(control, codec: .zstd)
        let r = try HandMadePatch.compress(runs, codec: .zstd)
        let l = try HandMadePatch.compress(literals, codec: .zstd)
        let x = try HandMadePatch.compress(extra, codec: .zstd)
        let header = BundleHeader(isFull: full, codec: .zstd, level: 0, oldDigest: oldDigest, newDigest: newDigest,
                                  oldCount: oldCount, newCount: newCount, newTotalBytes: newTotalBytes,
                                  manifestLength: UInt64(m.count), manifestRawLength: UInt64(raw.count),
                                  controlLength: UInt64(c.count), runsLength: UInt64(r.count),
                                  literalsLength: UInt64(l.count), extraLength: UInt64(x.count))
        return header.encode() + m + c + r + l + x
    }
}
