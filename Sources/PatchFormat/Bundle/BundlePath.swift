/// Rules for paths and link targets inside a bundle. A bundle is hostile input: a path that could
/// escape the installation directory, or alias another entry on a case-insensitive file system, is
/// rejected before anything is written.
public enum BundlePath {
    public static let maxLength = 4096
    public static let maxComponentLength = 255

    /// Throws unless `path` is relative, `/`-separated, non-empty, without empty, `.` or `..`
    /// components, without NUL or backslash, and within the length limits.
    public static func validate(_ path: String, field: String = "path") throws {
        let bytes = Array(path.utf8)
        func bad(_ reason: String) -> PatchFormatError {
            .invalidField(field: field, value: quoted(path), reason: reason)
        }
        guard !bytes.isEmpty else { throw bad("is empty") }
        guard bytes.count <= maxLength else { throw bad("is longer than \(maxLength) bytes") }
        guard bytes.first != UInt8(ascii: "/") else { throw bad("is absolute") }
        guard !bytes.contains(0) else { throw bad("contains a NUL byte") }
        guard !bytes.contains(UInt8(ascii: "\\")) else { throw bad("contains a backslash") }
        for component in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if component.isEmpty { throw bad("has an empty component") }
            if component.elementsEqual(".".utf8) { throw bad("has a '.' component") }
            if component.elementsEqual("..".utf8) { throw bad("has a '..' component") }
            if component.count > maxComponentLength { throw bad("has a component longer than \(maxComponentLength) bytes") }
        }
    }

    /// Throws unless a symlink at `path` pointing to `target` stays inside the tree: the target is
    /// relative and, resolved lexically from the link's directory, never climbs above the root.
    public static func validateLinkTarget(_ target: String, of path: String) throws {
        func bad(_ reason: String) -> PatchFormatError {
            .invalidField(field: "symlink \(quoted(path)) target", value: quoted(target), reason: reason)
        }
        let bytes = Array(target.utf8)
        guard !bytes.isEmpty else { throw bad("is empty") }
        guard bytes.count <= maxLength else { throw bad("is longer than \(maxLength) bytes") }
        guard bytes.first != UInt8(ascii: "/") else { throw bad("is absolute (it would point outside the installation)") }
        guard !bytes.contains(0) else { throw bad("contains a NUL byte") }
        // Components by bytes, as the file system splits them: split by `Character`, a `/` followed by a
        // combining mark (`../\u{301}x`) is no separator, and that `..` went uncounted.
        let slash = UInt8(ascii: "/")
        var depth = path.utf8.split(separator: slash).count - 1  // the link's directory
        for component in bytes.split(separator: slash, omittingEmptySubsequences: true) {
            if component.elementsEqual(".".utf8) { continue }
            if component.elementsEqual("..".utf8) {
                depth -= 1
                if depth < 0 { throw bad("climbs above the installation directory") }
            } else {
                depth += 1
            }
        }
    }

    /// The key under which two paths collide on a case-insensitive file system. Keys are compared as
    /// `String`s, that is by canonical equivalence: NFC `caf\u{E9}` and NFD `cafe\u{301}` collide too,
    /// as on APFS and HFS+.
    public static func caseFoldKey(_ path: String) -> String {
        path.lowercased()
    }

    /// Paths seen so far by their `caseFoldKey`: the one collision rule of the applier (a new tree
    /// with two such paths is refused) and of the maker (which refuses to make that tree's bundle).
    public struct CaseCollisions: Sendable {
        private var seen = [String: String]()

        public init() {}

        /// Records `path`; returns the path recorded before that it collides with, if any.
        public mutating func insert(_ path: String) -> String? {
            let key = BundlePath.caseFoldKey(path)
            if let other = seen[key] { return other }
            seen[key] = path
            return nil
        }
    }

    /// The parent directory of a path, or nil at the top level.
    public static func parent(of path: String) -> String? {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return nil }
        return String(path[..<slash])
    }

    public static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars.prefix(200) {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f: out += "\\u{\(String(scalar.value, radix: 16))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + (s.unicodeScalars.count > 200 ? "...\"" : "\"")
    }
}

/// A path compared by its UTF-8 bytes: the key wherever a path's identity matters (which entry of a
/// tree it is). Swift `String` compares and hashes by canonical equivalence, so NFC `caf\u{E9}` and
/// NFD `cafe\u{301}`, two names on Linux, were one `String` key: a rename from one to the other looked
/// unchanged, and a tree holding both lost one of them.
public struct PathKey: Hashable, Sendable {
    public let bytes: [UInt8]

    public init(_ path: String) {
        bytes = Array(path.utf8)
    }

    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }
}
