import PatchFormat

/// What `phoenix-diff inspect` shows about a bundle.
public struct BundleInfo: Sendable, Equatable, Codable {
    public struct Operation: Sendable, Equatable, Codable {
        public var path: String
        /// remove, directory, symlink, chmod, copy, patch or add.
        public var op: String
        public var mode: String?
        public var size: UInt64?
        public var sha256: String?
        /// The old path a copy or patch reads, or a symlink's target.
        public var from: String?
    }

    public var format: String
    public var full: Bool
    public var codec: String
    /// Every data file's diff pattern: natural or context (old-context order).
    public var diffOrder: String
    /// Every data file's control tuples: interleaved or split.
    public var controlLayout: String
    public var bundleSize: UInt64
    public var oldTreeDigest: String
    public var newTreeDigest: String
    public var oldEntries: UInt64
    public var newEntries: UInt64
    public var newBytes: UInt64
    public var manifestSize: UInt64
    public var streamSizes: [String: UInt64]
    public var operations: [Operation]
}

extension BundleApplier {
    /// The digest of the tree the bundle builds (hex), from its header alone.
    public static func newTreeDigest(bundlePath: String) throws -> String {
        try mapErrors { Hex.encode(try readHeader(FilePatchInput(path: bundlePath), limits: BundleLimits()).newDigest) }
    }

    static func readHeader(_ input: FilePatchInput, limits: BundleLimits) throws -> BundleHeader {
        try BundleHeader.decode(try input.bytes(at: 0, count: BundleHeader.size), fileLength: input.length, limits: limits)
    }

    public static func inspect(bundlePath: String, limits: BundleLimits = BundleLimits()) throws -> BundleInfo {
        try mapErrors {
            let input = try FilePatchInput(path: bundlePath)
            let header = try readHeader(input, limits: limits)
            let manifest = try readManifest(input, header: header, limits: limits)
            let ops = manifest.operations.map { o -> BundleInfo.Operation in
                switch o.op {
                case .remove:
                    return .init(path: o.path, op: "remove")
                case .directory(let mode):
                    return .init(path: o.path, op: "directory", mode: String(mode, radix: 8))
                case .symlink(let target):
                    return .init(path: o.path, op: "symlink", from: target)
                case .chmod(let mode):
                    return .init(path: o.path, op: "chmod", mode: String(mode, radix: 8))
                case .file(let mode, let size, let sha, let action):
                    let (name, from): (String, String?) = switch action {
                    case .copy(let s): ("copy", manifest.touched[s].path)
                    case .data(let s?, _, _, _, _): ("patch", manifest.touched[s].path)
                    case .data(nil, _, _, _, _): ("add", nil)
                    }
                    return .init(path: o.path, op: name, mode: String(mode, radix: 8), size: size, sha256: Hex.encode(sha), from: from)
                }
            }
            return BundleInfo(
                format: "bundle", full: header.isFull, codec: header.codec.name, diffOrder: header.diffOrder.rawValue,
                controlLayout: header.splitControl ? "split" : "interleaved", bundleSize: input.length,
                oldTreeDigest: Hex.encode(header.oldDigest), newTreeDigest: Hex.encode(header.newDigest),
                oldEntries: header.oldCount, newEntries: header.newCount, newBytes: header.newTotalBytes,
                manifestSize: header.manifestLength,
                streamSizes: ["control": header.controlLength, "diff-runs": header.runsLength,
                              "diff-literals": header.literalsLength, "extra": header.extraLength],
                operations: ops)
        }
    }

    /// Whether the file at `path` starts with the bundle magic.
    public static func isBundle(path: String) -> Bool {
        guard let input = try? FilePatchInput(path: path), let head = try? input.bytes(at: 0, count: 8) else { return false }
        return head == BundleHeader.magic
    }
}
