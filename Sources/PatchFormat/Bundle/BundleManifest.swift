/// How a bundle produces one file of the new tree.
public enum FileAction: Equatable, Sendable {
    /// Same content as touched old entry `source` (a move or a copy): stored as a reference, no data.
    case copy(source: Int)
    /// Rebuilt from the bundle's streams: `tuples` phx control tuples applied to touched old entry
    /// `source` (nil: to nothing, the file is stored whole in the extra stream).
    case data(source: Int?, tuples: UInt64, diffBytes: UInt64, literalBytes: UInt64, extraBytes: UInt64)
}

/// One change from the old tree to the new one. Paths the bundle does not mention are unchanged.
public enum BundleOp: Equatable, Sendable {
    /// The old entry at this path is gone from the new tree.
    case remove
    /// A directory (new, replacing another kind, or with a new mode).
    case directory(mode: UInt16)
    /// A symlink (new or changed). Its target is stored and never followed.
    case symlink(target: String)
    /// A regular file (new or changed).
    case file(mode: UInt16, size: UInt64, sha256: [UInt8], action: FileAction)
    /// Only the permission bits of an existing file or directory change.
    case chmod(mode: UInt16)
}

public struct BundleOperation: Equatable, Sendable {
    public var path: String
    public var op: BundleOp
    public init(path: String, op: BundleOp) {
        self.path = path
        self.op = op
    }
}

/// What a bundle says about the two trees: the old entries it touches (removes, replaces or reads
/// from), with their full description so that the installation can be checked entry by entry, and
/// the operations that turn the old tree into the new one. Both lists are sorted by path (byte-wise).
public struct BundleManifest: Equatable, Sendable {
    public var touched: [TreeEntry]
    public var operations: [BundleOperation]

    public init(touched: [TreeEntry], operations: [BundleOperation]) {
        self.touched = touched
        self.operations = operations
    }

    // MARK: Encoding (FORMAT.md, "Bundle manifest")

    public func encode() -> [UInt8] {
        var out = [UInt8]()
        Varint.appendUnsigned(UInt64(touched.count), to: &out)
        var previous: [UInt8] = []
        for e in touched { Self.encodeEntry(e, into: &out, previous: &previous) }
        Varint.appendUnsigned(UInt64(operations.count), to: &out)
        previous = []
        for o in operations {
            Self.appendPath(o.path, to: &out, previous: &previous)
            switch o.op {
            case .remove:
                out.append(1)
            case .directory(let mode):
                out.append(2)
                Varint.appendUnsigned(UInt64(mode), to: &out)
            case .symlink(let target):
                out.append(3)
                Self.appendString(target, to: &out)
            case .chmod(let mode):
                out.append(5)
                Varint.appendUnsigned(UInt64(mode), to: &out)
            case .file(let mode, let size, let sha, let action):
                out.append(4)
                Varint.appendUnsigned(UInt64(mode), to: &out)
                Varint.appendUnsigned(size, to: &out)
                out.append(contentsOf: sha)
                switch action {
                case .copy(let source):
                    out.append(1)
                    Varint.appendUnsigned(UInt64(source), to: &out)
                case .data(let source, let tuples, let diff, let literal, let extra):
                    out.append(2)
                    Varint.appendUnsigned(source.map { UInt64($0) + 1 } ?? 0, to: &out)
                    for v in [tuples, diff, literal, extra] { Varint.appendUnsigned(v, to: &out) }
                }
            }
        }
        return out
    }

    static func appendString(_ s: String, to out: inout [UInt8]) {
        let bytes = Array(s.utf8)
        Varint.appendUnsigned(UInt64(bytes.count), to: &out)
        out.append(contentsOf: bytes)
    }

    /// Front coding: the length of the prefix shared with the previous path, then the rest.
    static func appendPath(_ path: String, to out: inout [UInt8], previous: inout [UInt8]) {
        let bytes = Array(path.utf8)
        var shared = 0
        while shared < min(bytes.count, previous.count) && bytes[shared] == previous[shared] { shared += 1 }
        Varint.appendUnsigned(UInt64(shared), to: &out)
        Varint.appendUnsigned(UInt64(bytes.count - shared), to: &out)
        out.append(contentsOf: bytes[shared...])
        previous = bytes
    }

    static func encodeEntry(_ e: TreeEntry, into out: inout [UInt8], previous: inout [UInt8]) {
        appendPath(e.path, to: &out, previous: &previous)
        encodeEntryBody(e, into: &out)
    }

    static func encodeEntry(_ e: TreeEntry, into out: inout [UInt8]) {
        appendString(e.path, to: &out)
        encodeEntryBody(e, into: &out)
    }

    static func encodeEntryBody(_ e: TreeEntry, into out: inout [UInt8]) {
        out.append(e.kind.rawValue)
        switch e.kind {
        case .file:
            Varint.appendUnsigned(UInt64(e.mode), to: &out)
            Varint.appendUnsigned(e.size, to: &out)
            out.append(contentsOf: e.sha256)
        case .directory:
            Varint.appendUnsigned(UInt64(e.mode), to: &out)
        case .symlink:
            appendString(e.linkTarget ?? "", to: &out)
        }
    }

    // MARK: Decoding and self-consistency

    /// Decodes a manifest and checks everything that can be checked without the old tree: path rules,
    /// order and uniqueness, modes, sizes within limits, and actions that refer to touched files of
    /// the right content. `newTree(from:)` checks the rest against the actual old tree.
    public static func decode(_ bytes: [UInt8], limits: BundleLimits) throws -> BundleManifest {
        var r = ManifestReader(bytes: bytes)
        r.maxPathBytes = limits.maxPathBytes
        let touchedCount = try r.varint("touched entry count")
        guard touchedCount <= limits.maxEntries else {
            throw PatchFormatError.limitExceeded(field: "touched entry count", value: touchedCount, limit: limits.maxEntries)
        }
        var touched = [TreeEntry]()
        touched.reserveCapacity(Int(min(touchedCount, 1 << 16)))
        var previous: [UInt8] = []
        for i in 0..<touchedCount {
            let path = try r.path("touched entry \(i) path", previous: &previous)
            let e = try r.entry(index: i, path: path)
            if let last = touched.last, !pathPrecedes(last.path, e.path) {
                throw PatchFormatError.invalidField(field: "touched entry \(i)", value: BundlePath.quoted(e.path),
                                                    reason: last.path.utf8.elementsEqual(e.path.utf8) ? "is a duplicate" : "is out of order")
            }
            touched.append(e)
        }
        let opCount = try r.varint("operation count")
        guard opCount <= limits.maxEntries * 2 else {
            throw PatchFormatError.limitExceeded(field: "operation count", value: opCount, limit: limits.maxEntries * 2)
        }
        var touchedIndex = [PathKey: Int]()
        for (i, e) in touched.enumerated() { touchedIndex[PathKey(e.path)] = i }
        var operations = [BundleOperation]()
        operations.reserveCapacity(Int(min(opCount, 1 << 16)))
        var total: UInt64 = 0
        previous = []
        for i in 0..<opCount {
            let path = try r.path("operation \(i) path", previous: &previous)
            try BundlePath.validate(path, field: "operation \(i) path")
            if let last = operations.last, !pathPrecedes(last.path, path) {
                throw PatchFormatError.invalidField(field: "operation \(i)", value: BundlePath.quoted(path),
                                                    reason: last.path.utf8.elementsEqual(path.utf8) ? "is a duplicate" : "is out of order")
            }
            func bad(_ reason: String) -> PatchFormatError {
                .invalidField(field: "operation \(i) \(BundlePath.quoted(path))", value: "", reason: reason)
            }
            let tag = try r.byte("operation tag")
            let op: BundleOp
            switch tag {
            case 1:
                guard touchedIndex[PathKey(path)] != nil else { throw bad("removes a path the bundle does not describe as touched") }
                op = .remove
            case 2:
                op = .directory(mode: try r.mode())
            case 3:
                let target = try r.string("symlink target")
                try BundlePath.validateLinkTarget(target, of: path)
                op = .symlink(target: target)
            case 4:
                let mode = try r.mode()
                let size = try r.varint("size")
                let sha = Array(try r.take(32, "sha256"))
                if size > limits.maxFileBytes {
                    throw PatchFormatError.limitExceeded(field: "file \(BundlePath.quoted(path))", value: size, limit: limits.maxFileBytes)
                }
                let (t, o) = total.addingReportingOverflow(size)
                if o || t > limits.maxTotalBytes {
                    throw PatchFormatError.limitExceeded(field: "files the bundle writes", value: t, limit: limits.maxTotalBytes)
                }
                total = t
                let actionTag = try r.byte("file action")
                func source(_ v: UInt64) throws -> Int {
                    guard v < UInt64(touched.count), touched[Int(v)].kind == .file else {
                        throw bad("refers to touched entry \(v), which is not a touched file")
                    }
                    return Int(v)
                }
                let action: FileAction
                switch actionTag {
                case 1:
                    let s = try source(try r.varint("copy source"))
                    guard touched[s].sha256 == sha, touched[s].size == size else {
                        throw bad("copies \(BundlePath.quoted(touched[s].path)), whose content differs")
                    }
                    action = .copy(source: s)
                case 2:
                    let sv = try r.varint("data source")
                    let s: Int? = sv == 0 ? nil : try source(sv - 1)
                    let tuples = try r.varint("tuples"), diff = try r.varint("diff bytes")
                    let literal = try r.varint("literal bytes"), extra = try r.varint("extra bytes")
                    let (sum, o2) = diff.addingReportingOverflow(extra)
                    guard !o2, sum == size else { throw bad("diff \(diff) + extra \(extra) bytes is not the file's size \(size)") }
                    guard literal <= diff else { throw bad("has more literal bytes (\(literal)) than diff bytes (\(diff))") }
                    guard tuples <= size + 1 else { throw bad("has \(tuples) control tuples for \(size) bytes") }
                    if s == nil && diff > 0 { throw bad("adds \(diff) bytes from no source file") }
                    action = .data(source: s, tuples: tuples, diffBytes: diff, literalBytes: literal, extraBytes: extra)
                default:
                    throw bad("has unknown file action \(actionTag)")
                }
                op = .file(mode: mode, size: size, sha256: sha, action: action)
            case 5:
                op = .chmod(mode: try r.mode())
            default:
                throw bad("has unknown operation tag \(tag)")
            }
            operations.append(BundleOperation(path: path, op: op))
        }
        guard r.atEnd else {
            throw PatchFormatError.trailingData(location: "in the manifest", detail: "\(bytes.count - r.offset) bytes after the last operation")
        }
        return BundleManifest(touched: touched, operations: operations)
    }

    /// Checks the touched entries against the actual old tree; returns the first that differs, as a
    /// description, or nil when all match.
    public func firstTouchedDifference(in old: [TreeEntry]) -> String? {
        var byPath = [PathKey: TreeEntry]()
        for e in old { byPath[PathKey(e.path)] = e }
        for t in touched {
            guard let e = byPath[PathKey(t.path)] else { return "\(t.path): missing (expected a \(t.kind))" }
            if e.kind != t.kind { return "\(t.path): is a \(e.kind), expected a \(t.kind)" }
            if e.mode != t.mode { return "\(t.path): mode \(String(e.mode, radix: 8)), expected \(String(t.mode, radix: 8))" }
            if !e.sameContent(as: t) { return "\(t.path): content differs" }
        }
        return nil
    }

    /// The new tree: `old` with the operations applied, checked as a whole (sorted, unique, every parent
    /// a directory, no case collisions, link targets inside) and against `expectedDigest`.
    public func newTree(from old: [TreeEntry], expectedDigest: [UInt8]) throws -> [TreeEntry] {
        // By bytes: an operation on NFD `cafe\u{301}` must not replace the old NFC `caf\u{E9}`.
        var byPath = [PathKey: TreeEntry]()
        for e in old { byPath[PathKey(e.path)] = e }
        let touchedPaths = Set(touched.map { PathKey($0.path) })
        for (i, o) in operations.enumerated() {
            let key = PathKey(o.path)
            let existing = byPath[key]
            if case .chmod(let mode) = o.op {
                guard var e = existing, e.kind != .symlink else {
                    throw PatchFormatError.invalidField(field: "operation \(i) \(BundlePath.quoted(o.path))", value: "",
                                                        reason: "changes the mode of a path that is not a file or directory of the old tree")
                }
                e.mode = mode
                byPath[key] = e
                continue
            }
            if existing != nil && !touchedPaths.contains(key) {
                throw PatchFormatError.invalidField(field: "operation \(i) \(BundlePath.quoted(o.path))", value: "",
                                                    reason: "changes an old entry the bundle does not describe as touched")
            }
            switch o.op {
            case .remove:
                byPath[key] = nil
            case .directory(let mode):
                byPath[key] = .directory(o.path, mode: mode)
            case .symlink(let target):
                byPath[key] = .symlink(o.path, target: target)
            case .file(let mode, let size, let sha, _):
                byPath[key] = .file(o.path, mode: mode, size: size, sha256: sha)
            case .chmod:
                break
            }
        }
        let new = byPath.values.sorted { pathPrecedes($0.path, $1.path) }
        try Self.validateTree(new, list: "new tree")
        guard TreeDigest.compute(new) == expectedDigest else {
            throw PatchFormatError.invalidField(field: "new tree digest (offset 48)", value: Hex.encode(expectedDigest),
                                                reason: "does not match the tree the operations build")
        }
        return new
    }

    /// Sorted and unique paths, every parent a directory of the same tree (by bytes: a parent in the
    /// other Unicode normalization is another directory on Linux), no case collisions
    /// (`BundlePath.CaseCollisions`), link targets that stay inside.
    public static func validateTree(_ entries: [TreeEntry], list: String) throws {
        var kinds = [PathKey: TreeEntry.Kind]()
        // The same by `caseFoldKey` (unique: collisions are refused below), for the link chains.
        var foldedKinds = [String: TreeEntry.Kind]()
        var folded = BundlePath.CaseCollisions()
        kinds.reserveCapacity(entries.count)
        for (i, e) in entries.enumerated() {
            func bad(_ reason: String) -> PatchFormatError {
                .invalidField(field: "\(list) entry \(i)", value: BundlePath.quoted(e.path), reason: reason)
            }
            if i > 0 && !pathPrecedes(entries[i - 1].path, e.path) {
                throw bad(entries[i - 1].path.utf8.elementsEqual(e.path.utf8) ? "is a duplicate" : "is out of order")
            }
            if let parent = BundlePath.parent(of: e.path) {
                switch kinds[PathKey(parent)] {
                case .directory: break
                case .symlink: throw bad("lies under the symlink \(BundlePath.quoted(parent))")
                case .file: throw bad("lies under the file \(BundlePath.quoted(parent))")
                case nil: throw bad("has no directory entry for its parent \(BundlePath.quoted(parent))")
                }
            }
            if let other = folded.insert(e.path) {
                throw bad("collides with \(BundlePath.quoted(other)) on a case-insensitive file system")
            }
            if e.kind == .symlink {
                try BundlePath.validateLinkTarget(e.linkTarget ?? "", of: e.path)
            }
            kinds[PathKey(e.path)] = e.kind
            foldedKinds[BundlePath.caseFoldKey(e.path)] = e.kind
        }
        for e in entries where e.kind == .symlink {
            try validateLinkChain(e, kinds: foldedKinds)
        }
    }

    /// A `..` after a component that is itself a symlink could climb out physically even when the
    /// lexical check passes; refuse such targets. Components are split by bytes, as in
    /// `BundlePath.validateLinkTarget`; they are looked up by `caseFoldKey` (`kinds` is keyed by it), as
    /// a case-insensitive or normalizing file system (APFS: `cafe\u{301}` is `caf\u{E9}`) resolves
    /// them: by bytes alone, `a/evil -> cafe\u{301}/../..` passed beside a link `a/caf\u{E9} -> ..`.
    static func validateLinkChain(_ e: TreeEntry, kinds: [String: TreeEntry.Kind]) throws {
        let slash = UInt8(ascii: "/")
        guard let target = e.linkTarget else { return }
        let components = target.utf8.split(separator: slash).map { Array($0) }
        guard components.contains(where: { $0.elementsEqual("..".utf8) }) else { return }
        var current = BundlePath.parent(of: e.path).map { $0.utf8.split(separator: slash).map { Array($0) } } ?? []
        for (k, c) in components.enumerated() {
            if c.elementsEqual(".".utf8) { continue }
            if c.elementsEqual("..".utf8) { if !current.isEmpty { current.removeLast() }; continue }
            current.append(c)
            let path = String(decoding: Array(current.joined(separator: [slash])), as: UTF8.self)
            if k < components.count - 1, kinds[BundlePath.caseFoldKey(path)] == .symlink {
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
    /// Decoded path bytes so far, and their limit (`BundleLimits.maxPathBytes`).
    var pathBytes: UInt64 = 0
    var maxPathBytes: UInt64 = .max

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

    mutating func mode() throws -> UInt16 {
        let m = try varint("mode")
        guard m <= 0o777 else {
            throw PatchFormatError.invalidField(field: "mode", value: String(m, radix: 8), reason: "only permission bits 0...0777 are allowed")
        }
        return UInt16(m)
    }

    /// A front-coded path (see `BundleManifest.appendPath`).
    mutating func path(_ field: String, previous: inout [UInt8]) throws -> String {
        let shared = try varint("\(field) shared prefix")
        let rest = try varint("\(field) length")
        guard shared <= UInt64(previous.count), rest <= UInt64(BundlePath.maxLength) else {
            throw PatchFormatError.invalidField(field: field, value: "\(shared)+\(rest) bytes",
                                                reason: "shares more than the previous path has, or is too long")
        }
        pathBytes += shared + rest
        guard pathBytes <= maxPathBytes else {
            throw PatchFormatError.limitExceeded(field: "total path bytes (at \(field))", value: pathBytes, limit: maxPathBytes)
        }
        let bytes = Array(previous[0..<Int(shared)]) + Array(try take(rest, field))
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw PatchFormatError.invalidField(field: field, value: "\(bytes.count) bytes", reason: "is not valid UTF-8")
        }
        try BundlePath.validate(s, field: field)
        previous = bytes
        return s
    }

    mutating func entry(index: UInt64) throws -> TreeEntry {
        let path = try string("entry \(index) path")
        try BundlePath.validate(path, field: "entry \(index) path")
        return try entry(index: index, path: path)
    }

    mutating func entry(index: UInt64, path: String) throws -> TreeEntry {
        let kindByte = try byte("kind")
        guard let kind = TreeEntry.Kind(rawValue: kindByte) else {
            throw PatchFormatError.invalidField(field: "touched entry \(index) \(BundlePath.quoted(path)) kind", value: "\(kindByte)",
                                                reason: "only files (1), directories (2) and symlinks (3) are allowed")
        }
        switch kind {
        case .directory:
            return .directory(path, mode: try mode())
        case .file:
            let m = try mode()
            let size = try varint("size")
            return .file(path, mode: m, size: size, sha256: Array(try take(32, "sha256")))
        case .symlink:
            return .symlink(path, target: try string("touched entry \(index) link target"))
        }
    }
}

/// A tree's entry list as a file (the installation's own record of what it holds, kept beside it):
/// a varint count and the entries in the manifest's entry encoding.
public enum TreeRecord {
    public static func encode(_ entries: [TreeEntry]) -> [UInt8] {
        var out = Array("PHXTREE1".utf8)
        Varint.appendUnsigned(UInt64(entries.count), to: &out)
        for e in entries { BundleManifest.encodeEntry(e, into: &out) }
        return out
    }

    public static func decode(_ bytes: [UInt8], limits: BundleLimits = BundleLimits()) throws -> [TreeEntry] {
        guard bytes.count >= 8, Array(bytes[0..<8]) == Array("PHXTREE1".utf8) else {
            throw PatchFormatError.badMagic(found: Array(bytes.prefix(8)))
        }
        var r = ManifestReader(bytes: bytes, offset: 8)
        let n = try r.varint("entry count")
        guard n <= limits.maxEntries else { throw PatchFormatError.limitExceeded(field: "entry count", value: n, limit: limits.maxEntries) }
        var out = [TreeEntry]()
        for i in 0..<n { out.append(try r.entry(index: i)) }
        guard r.atEnd else { throw PatchFormatError.trailingData(location: "in the tree record", detail: "\(bytes.count - r.offset) bytes") }
        return out
    }

    /// The first path where two trees differ, described; nil when they are the same.
    public static func firstDifference(expected: [TreeEntry], actual: [TreeEntry]) -> String? {
        var i = 0, j = 0
        while i < expected.count || j < actual.count {
            if j == actual.count || (i < expected.count && pathPrecedes(expected[i].path, actual[j].path)) {
                return "\(expected[i].path): missing (expected a \(expected[i].kind))"
            }
            if i == expected.count || pathPrecedes(actual[j].path, expected[i].path) {
                return "\(actual[j].path): not expected (an added \(actual[j].kind))"
            }
            let e = expected[i], a = actual[j]
            if e.kind != a.kind { return "\(e.path): is a \(a.kind), expected a \(e.kind)" }
            if e.mode != a.mode { return "\(e.path): mode \(String(a.mode, radix: 8)), expected \(String(e.mode, radix: 8))" }
            if !e.sameContent(as: a) { return "\(e.path): content differs" }
            i += 1
            j += 1
        }
        return nil
    }
}
