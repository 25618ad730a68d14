/// How the bundle produces one file of the new tree.
public enum FileAction: Equatable, Sendable {
    /// The old tree has this path with the same content: keep it.
    case unchanged
    /// Same content as old entry `source` (a move or a copy): stored as a reference, no data.
    case copy(source: Int)
    /// Rebuilt from the bundle's streams: `tuples` phx control tuples applied to old entry `source`
    /// (nil: to nothing, i.e. stored whole in the extra stream). `diffBytes + extraBytes` is the size.
    case data(source: Int?, tuples: UInt64, diffBytes: UInt64, literalBytes: UInt64, extraBytes: UInt64)
}

/// The list of both trees' entries and, for each new file, its action. Entries are sorted by path
/// (byte-wise); the lists hash to the header's tree digests.
public struct BundleManifest: Equatable, Sendable {
    public var old: [TreeEntry]
    public var new: [TreeEntry]
    /// One per new entry; nil for directories and symlinks.
    public var actions: [FileAction?]

    public init(old: [TreeEntry], new: [TreeEntry], actions: [FileAction?]) {
        precondition(new.count == actions.count, "one action per new entry")
        self.old = old
        self.new = new
        self.actions = actions
    }

    // MARK: Encoding (FORMAT.md, "Bundle manifest")

    public func encode() -> [UInt8] {
        var out = [UInt8]()
        Varint.appendUnsigned(UInt64(old.count), to: &out)
        for e in old { Self.encodeEntry(e, into: &out) }
        Varint.appendUnsigned(UInt64(new.count), to: &out)
        for (e, action) in zip(new, actions) {
            Self.encodeEntry(e, into: &out)
            guard e.kind == .file, let action else { continue }
            switch action {
            case .unchanged:
                out.append(0)
            case .copy(let source):
                out.append(1)
                Varint.appendUnsigned(UInt64(source), to: &out)
            case .data(let source, let tuples, let diff, let literal, let extra):
                out.append(2)
                Varint.appendUnsigned(source.map { UInt64($0) + 1 } ?? 0, to: &out)
                Varint.appendUnsigned(tuples, to: &out)
                Varint.appendUnsigned(diff, to: &out)
                Varint.appendUnsigned(literal, to: &out)
                Varint.appendUnsigned(extra, to: &out)
            }
        }
        return out
    }

    static func encodeEntry(_ e: TreeEntry, into out: inout [UInt8]) {
        let path = Array(e.path.utf8)
        Varint.appendUnsigned(UInt64(path.count), to: &out)
        out.append(contentsOf: path)
        out.append(e.kind.rawValue)
        switch e.kind {
        case .file:
            Varint.appendUnsigned(UInt64(e.mode), to: &out)
            Varint.appendUnsigned(e.size, to: &out)
            out.append(contentsOf: e.sha256)
        case .directory:
            Varint.appendUnsigned(UInt64(e.mode), to: &out)
        case .symlink:
            let target = Array((e.linkTarget ?? "").utf8)
            Varint.appendUnsigned(UInt64(target.count), to: &out)
            out.append(contentsOf: target)
        }
    }

    // MARK: Decoding and validation

    /// Decodes and validates a manifest against its header: counts, digests, path rules (no absolute
    /// paths, no `..`, nothing under a symlink or a file, no duplicates or case collisions, link targets
    /// that stay inside), sizes within limits, and actions consistent with both trees.
    public static func decode(_ bytes: [UInt8], header: BundleHeader, limits: BundleLimits) throws -> BundleManifest {
        var reader = ManifestReader(bytes: bytes)
        let oldCount = try reader.varint("old entry count")
        guard oldCount == header.oldCount else {
            throw PatchFormatError.invalidField(field: "manifest old entry count", value: "\(oldCount)",
                                                reason: "the header says \(header.oldCount)")
        }
        var old = [TreeEntry]()
        old.reserveCapacity(Int(oldCount))
        for i in 0..<oldCount { old.append(try reader.entry(index: i, list: "old")) }
        let newCount = try reader.varint("new entry count")
        guard newCount == header.newCount else {
            throw PatchFormatError.invalidField(field: "manifest new entry count", value: "\(newCount)",
                                                reason: "the header says \(header.newCount)")
        }
        var new = [TreeEntry]()
        var actions = [FileAction?]()
        new.reserveCapacity(Int(newCount))
        actions.reserveCapacity(Int(newCount))
        for i in 0..<newCount {
            let e = try reader.entry(index: i, list: "new")
            new.append(e)
            if e.kind == .file {
                actions.append(try reader.action(index: i, oldCount: oldCount))
            } else {
                actions.append(nil)
            }
        }
        guard reader.atEnd else {
            throw PatchFormatError.trailingData(location: "in the manifest", detail: "\(bytes.count - reader.offset) bytes after the last entry")
        }
        let manifest = BundleManifest(old: old, new: new, actions: actions)
        try manifest.validate(header: header, limits: limits)
        return manifest
    }

    func validate(header: BundleHeader, limits: BundleLimits) throws {
        try Self.validateTree(old, list: "old")
        try Self.validateTree(new, list: "new")
        guard TreeDigest.compute(old) == header.oldDigest else {
            throw PatchFormatError.invalidField(field: "old tree digest (offset 16)", value: Hex.encode(header.oldDigest),
                                                reason: "does not match the manifest's old entries")
        }
        guard TreeDigest.compute(new) == header.newDigest else {
            throw PatchFormatError.invalidField(field: "new tree digest (offset 48)", value: Hex.encode(header.newDigest),
                                                reason: "does not match the manifest's new entries")
        }
        var total: UInt64 = 0
        var oldIndexByPath = [String: Int]()
        for (i, e) in old.enumerated() { oldIndexByPath[e.path] = i }
        for (i, e) in new.enumerated() where e.kind == .file {
            func bad(_ reason: String) -> PatchFormatError {
                .invalidField(field: "new entry \(i) \(BundlePath.quoted(e.path))", value: "action", reason: reason)
            }
            if e.size > limits.maxFileBytes {
                throw PatchFormatError.limitExceeded(field: "file \(BundlePath.quoted(e.path))", value: e.size, limit: limits.maxFileBytes)
            }
            total += e.size
            if total > limits.maxTotalBytes || total > header.newTotalBytes {
                throw PatchFormatError.limitExceeded(field: "new tree", value: total, limit: min(limits.maxTotalBytes, header.newTotalBytes))
            }
            switch actions[i]! {
            case .unchanged:
                guard let j = oldIndexByPath[e.path], old[j].kind == .file, old[j].sha256 == e.sha256, old[j].size == e.size else {
                    throw bad("is 'unchanged' but the old tree has no identical file at this path")
                }
            case .copy(let source):
                guard old[source].kind == .file, old[source].sha256 == e.sha256, old[source].size == e.size else {
                    throw bad("copies old entry \(source), which is not a file with the same content")
                }
            case .data(let source, let tuples, let diff, let literal, let extra):
                if let source, old[source].kind != .file { throw bad("patches old entry \(source), which is not a file") }
                let (sum, o) = diff.addingReportingOverflow(extra)
                guard !o, sum == e.size else { throw bad("diff \(diff) + extra \(extra) bytes is not the file's size \(e.size)") }
                guard literal <= diff else { throw bad("has more literal bytes (\(literal)) than diff bytes (\(diff))") }
                guard tuples <= e.size + 1 else { throw bad("has \(tuples) control tuples for \(e.size) bytes") }
                if source == nil && diff > 0 { throw bad("adds \(diff) bytes from no source file") }
            }
        }
        guard total == header.newTotalBytes else {
            throw PatchFormatError.invalidField(field: "new tree bytes (offset 96)", value: "\(header.newTotalBytes)",
                                                reason: "the manifest's files add up to \(total)")
        }
    }

    /// Sorted and unique paths, every parent a directory of the same tree, no case collisions, link
    /// targets that stay inside.
    static func validateTree(_ entries: [TreeEntry], list: String) throws {
        var kinds = [String: TreeEntry.Kind]()
        var folded = Set<String>()
        kinds.reserveCapacity(entries.count)
        for (i, e) in entries.enumerated() {
            func bad(_ reason: String) -> PatchFormatError {
                .invalidField(field: "\(list) entry \(i)", value: BundlePath.quoted(e.path), reason: reason)
            }
            if i > 0 && !pathPrecedes(entries[i - 1].path, e.path) {
                throw bad(entries[i - 1].path == e.path ? "is a duplicate" : "is out of order")
            }
            if let parent = BundlePath.parent(of: e.path) {
                switch kinds[parent] {
                case .directory: break
                case .symlink: throw bad("lies under the symlink \(BundlePath.quoted(parent))")
                case .file: throw bad("lies under the file \(BundlePath.quoted(parent))")
                case nil: throw bad("has no directory entry for its parent \(BundlePath.quoted(parent))")
                }
            }
            guard folded.insert(BundlePath.caseFoldKey(e.path)).inserted else {
                throw bad("collides with another entry on a case-insensitive file system")
            }
            if e.kind == .symlink {
                try BundlePath.validateLinkTarget(e.linkTarget ?? "", of: e.path)
                try validateLinkChain(e, kinds: kinds, entries: entries)
            }
            kinds[e.path] = e.kind
        }
    }

    /// A `..` after a component that is itself a symlink could climb out physically even when the
    /// lexical check passes; refuse such targets.
    static func validateLinkChain(_ e: TreeEntry, kinds: [String: TreeEntry.Kind], entries: [TreeEntry]) throws {
        guard let target = e.linkTarget, target.split(separator: "/").contains("..") else { return }
        var current = BundlePath.parent(of: e.path).map { $0.split(separator: "/").map(String.init) } ?? []
        let all = Dictionary(entries.map { ($0.path, $0.kind) }, uniquingKeysWith: { a, _ in a })
        let components = target.split(separator: "/").map(String.init)
        for (k, c) in components.enumerated() {
            if c == "." { continue }
            if c == ".." { if !current.isEmpty { current.removeLast() }; continue }
            current.append(c)
            if k < components.count - 1, all[current.joined(separator: "/")] == .symlink {
                throw PatchFormatError.invalidField(field: "symlink \(BundlePath.quoted(e.path)) target",
                                                    value: BundlePath.quoted(target),
                                                    reason: "resolves through another symlink before '..'")
            }
        }
    }
}

/// A bounds-checked cursor over manifest bytes.
struct ManifestReader {
    let bytes: [UInt8]
    var offset = 0

    var atEnd: Bool { offset == bytes.count }

    mutating func byte(_ field: String) throws -> UInt8 {
        guard offset < bytes.count else {
            throw PatchFormatError.truncated(part: "manifest (\(field))", needed: UInt64(offset + 1), available: UInt64(bytes.count))
        }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func varint(_ field: String) throws -> UInt64 {
        var i = offset
        let v = try Varint.readUnsigned(index: 0, field: field) {
            guard i < bytes.count else { return nil }
            defer { i += 1 }
            return bytes[i]
        }
        offset = i
        return v
    }

    mutating func take(_ n: UInt64, _ field: String) throws -> ArraySlice<UInt8> {
        guard n <= UInt64(bytes.count - offset) else {
            throw PatchFormatError.truncated(part: "manifest (\(field))", needed: UInt64(offset) + n, available: UInt64(bytes.count))
        }
        defer { offset += Int(n) }
        return bytes[offset..<offset + Int(n)]
    }

    mutating func string(_ field: String) throws -> String {
        let n = try varint("\(field) length")
        guard n <= UInt64(BundlePath.maxLength) else {
            throw PatchFormatError.invalidField(field: field, value: "\(n) bytes", reason: "longer than \(BundlePath.maxLength)")
        }
        let raw = try take(n, field)
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw PatchFormatError.invalidField(field: field, value: "\(n) bytes", reason: "is not valid UTF-8")
        }
        return s
    }

    mutating func entry(index: UInt64, list: String) throws -> TreeEntry {
        let path = try string("\(list) entry \(index) path")
        try BundlePath.validate(path, field: "\(list) entry \(index) path")
        let kindByte = try byte("kind")
        guard let kind = TreeEntry.Kind(rawValue: kindByte) else {
            throw PatchFormatError.invalidField(field: "\(list) entry \(index) \(BundlePath.quoted(path)) kind", value: "\(kindByte)",
                                                reason: "only files (1), directories (2) and symlinks (3) are allowed")
        }
        switch kind {
        case .file, .directory:
            let mode = try varint("mode")
            guard mode <= 0o777 else {
                throw PatchFormatError.invalidField(field: "\(list) entry \(index) \(BundlePath.quoted(path)) mode",
                                                    value: String(mode, radix: 8), reason: "only permission bits 0...0777 are allowed")
            }
            if kind == .directory { return .directory(path, mode: UInt16(mode)) }
            let size = try varint("size")
            let sha = Array(try take(32, "sha256"))
            return .file(path, mode: UInt16(mode), size: size, sha256: sha)
        case .symlink:
            let target = try string("\(list) entry \(index) link target")
            return .symlink(path, target: target)
        }
    }

    mutating func action(index: UInt64, oldCount: UInt64) throws -> FileAction {
        let tag = try byte("action")
        func source(_ v: UInt64) throws -> Int {
            guard v < oldCount else {
                throw PatchFormatError.invalidField(field: "new entry \(index) source", value: "\(v)",
                                                    reason: "there are only \(oldCount) old entries")
            }
            return Int(v)
        }
        switch tag {
        case 0: return .unchanged
        case 1: return .copy(source: try source(try varint("copy source")))
        case 2:
            let s = try varint("data source")
            let src: Int? = s == 0 ? nil : try source(s - 1)
            return .data(source: src, tuples: try varint("tuples"), diffBytes: try varint("diff bytes"),
                         literalBytes: try varint("literal bytes"), extraBytes: try varint("extra bytes"))
        default:
            throw PatchFormatError.invalidField(field: "new entry \(index) action", value: "\(tag)", reason: "unknown action")
        }
    }
}
