/// One entry of a directory tree as a bundle records it. Paths are relative, `/`-separated UTF-8, with
/// no `.` or `..` components; only regular files, directories and symbolic links exist.
public struct TreeEntry: Equatable, Sendable {
    public enum Kind: UInt8, Sendable, CustomStringConvertible {
        case file = 1
        case directory = 2
        case symlink = 3

        public var description: String {
            switch self {
            case .file: "file"
            case .directory: "directory"
            case .symlink: "symlink"
            }
        }
    }

    public var path: String
    public var kind: Kind
    /// Permission bits (0...0o777). Symlinks have 0.
    public var mode: UInt16
    /// File size; for a symlink, the target's length in bytes; 0 for a directory.
    public var size: UInt64
    /// SHA-256 of the file's content, or of a symlink's target; empty for a directory.
    public var sha256: [UInt8]
    /// A symlink's target, as stored (never followed).
    public var linkTarget: String?

    public init(path: String, kind: Kind, mode: UInt16, size: UInt64, sha256: [UInt8], linkTarget: String? = nil) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.size = size
        self.sha256 = sha256
        self.linkTarget = linkTarget
    }

    public static func file(_ path: String, mode: UInt16, size: UInt64, sha256: [UInt8]) -> TreeEntry {
        TreeEntry(path: path, kind: .file, mode: mode, size: size, sha256: sha256)
    }

    public static func directory(_ path: String, mode: UInt16) -> TreeEntry {
        TreeEntry(path: path, kind: .directory, mode: mode, size: 0, sha256: [])
    }

    public static func symlink(_ path: String, target: String) -> TreeEntry {
        let bytes = Array(target.utf8)
        return TreeEntry(path: path, kind: .symlink, mode: 0, size: UInt64(bytes.count),
                         sha256: SHA256Hasher.hash(bytes), linkTarget: target)
    }

    /// Same path, kind, mode and content.
    public func sameContent(as other: TreeEntry) -> Bool {
        kind == other.kind && size == other.size && sha256 == other.sha256 && linkTarget == other.linkTarget
    }
}

/// Byte-wise ordering of paths, the order of every entry list in a bundle and of the tree digest.
public func pathPrecedes(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}

/// The digest of a whole tree (FORMAT.md, "Tree digest"): SHA-256 over a domain string and, for each
/// entry in byte-wise path order, its path, kind, mode, size and content hash.
public enum TreeDigest {
    public static let domain = Array("phoenix-tree-v1\u{0}".utf8)

    public static func compute(_ entries: [TreeEntry]) -> [UInt8] {
        let sorted = entries.sorted { pathPrecedes($0.path, $1.path) }
        let h = SHA256Hasher()
        h.update(domain)
        var record = [UInt8]()
        for e in sorted {
            record.removeAll(keepingCapacity: true)
            let path = Array(e.path.utf8)
            LittleEndian.append(UInt32(path.count), to: &record)
            record.append(contentsOf: path)
            record.append(e.kind.rawValue)
            LittleEndian.append(e.mode, to: &record)
            LittleEndian.append(e.size, to: &record)
            record.append(contentsOf: e.kind == .directory ? [UInt8](repeating: 0, count: 32) : e.sha256)
            h.update(record)
        }
        return h.finalize()
    }

    /// The digest of the empty tree (what a full bundle is made from).
    public static let empty: [UInt8] = compute([])
}
