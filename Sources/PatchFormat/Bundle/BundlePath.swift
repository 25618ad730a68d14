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
        var depth = path.split(separator: "/").count - 1  // the link's directory
        for component in target.split(separator: "/", omittingEmptySubsequences: true) {
            if component == "." { continue }
            if component == ".." {
                depth -= 1
                if depth < 0 { throw bad("climbs above the installation directory") }
            } else {
                depth += 1
            }
        }
    }

    /// The key under which two paths collide on a case-insensitive file system.
    public static func caseFoldKey(_ path: String) -> String {
        path.lowercased()
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
