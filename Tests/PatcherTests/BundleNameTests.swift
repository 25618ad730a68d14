import DiffEngine
import Foundation
import Glibc
import PatchFormat
import Patcher
import Testing
import TestSupport
import TreeIO

/// Names and link targets that a bundle cannot carry, or that Swift `String`s confuse (NFC `caf\u{E9}`
/// and NFD `cafe\u{301}` are equal `String`s, two names on Linux): `make` refuses the first with an
/// error that says which and why, and tells the second apart by their bytes, as the applier does.
@Suite struct BundleNameTests {
    static let nfc = "caf\u{E9}"
    static let nfd = "cafe\u{301}"

    /// `directory/name` as a C string: a name that is not UTF-8 cannot be a `String`.
    static func cPath(_ directory: String, _ name: [UInt8]) -> [CChar] {
        (Array((directory + "/").utf8) + name + [0]).map { CChar(bitPattern: $0) }
    }

    /// A file written with POSIX calls: its path's bytes exactly as given.
    static func write(_ path: String, _ text: String) throws {
        try Array(text.utf8).withUnsafeBytes { try POSIX.writeNewFile(path, $0, mode: 0o644) }
    }

    /// Old holds `from` and `x`, new `to` (same content) and a changed `x`.
    static func renameTrees(_ dir: TemporaryDirectory, from: String, to: String) throws -> (old: String, new: String) {
        let old = dir.file("old"), new = dir.file("new")
        try POSIX.mkdir(old)
        try POSIX.mkdir(new)
        try Self.write(old + "/" + from, "same")
        try Self.write(old + "/x", "1")
        try Self.write(new + "/" + to, "same")
        try Self.write(new + "/x", "2")
        #expect(try TreeScanner.scan(new).map { Array($0.path.utf8) }.contains(Array(to.utf8)), "the premise: the name's bytes as written")
        return (old, new)
    }

    /// A rename from NFD to NFC is a rename, and the bundle applies. Before, `make` called the file
    /// unchanged and every apply refused the bundle ("new tree digest ... does not match").
    @Test func aRenameToTheOtherNormalizationFormApplies() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.renameTrees(dir, from: Self.nfd, to: Self.nfc)
        let bundle = dir.file("b")
        let summary = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle)
        #expect(summary.unchanged == 0 && summary.copied == 1 && summary.removed == 1, "\(summary)")
        let install = dir.file("app")
        try TreeSpec.copy(old, install)
        _ = try BundleApplier.apply(directory: install, bundlePath: bundle)
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(new))
        let names = try POSIX.listDirectoryBytes(install).sorted { $0.lexicographicallyPrecedes($1) }
        #expect(names == [Array(Self.nfc.utf8), Array("x".utf8)])
    }

    /// From NFC to NFD, the bundle says what happened: NFD copied from NFC, NFC removed, and the new
    /// digest is the new tree's. Before, it held only `x` and named a digest it could not build.
    @Test func aRenameFromNFCToNFDMakesTheBundleOfTheNewTree() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.renameTrees(dir, from: Self.nfc, to: Self.nfd)
        let bundle = dir.file("b")
        let summary = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle)
        #expect(summary.unchanged == 0 && summary.copied == 1 && summary.removed == 1, "\(summary)")
        let info = try BundleApplier.inspect(bundlePath: bundle)
        // Paths in hex: the two forms print alike.
        let ops = info.operations.map { o in "\(o.op) \(Hex.encode(o.path.utf8)) \(Hex.encode((o.from ?? "").utf8))" }
        let nfc = Hex.encode(Self.nfc.utf8), nfd = Hex.encode(Self.nfd.utf8)
        #expect(ops.count == 3, "\(ops)")
        #expect(ops.contains("copy \(nfd) \(nfc)"), "\(ops)")
        #expect(ops.contains("remove \(nfc) "), "\(ops)")
        #expect(try TreeSpec.digest(new) == info.newTreeDigest)
    }

    /// The same rename applied (the applier's own table of operations was keyed by `String`: NFC's
    /// remove replaced NFD's copy there and staging stopped, "does not build a file").
    @Test func aRenameFromNFCToNFDApplies() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.renameTrees(dir, from: Self.nfc, to: Self.nfd)
        let bundle = dir.file("b")
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle)
        let install = dir.file("app")
        try TreeSpec.copy(old, install)
        _ = try BundleApplier.apply(directory: install, bundlePath: bundle)
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(new))
    }

    /// A tree with `A/` and `a/` is refused before anything is written, naming both: every apply
    /// refuses its bundle (a case-insensitive file system holds only one of them).
    @Test func makeRefusesATreeWithCaseCollidingPaths() throws {
        let dir = try TemporaryDirectory()
        let tree = dir.file("c")
        try POSIX.mkdir(tree)
        try POSIX.mkdir(tree + "/A")
        try POSIX.mkdir(tree + "/a")
        try Self.write(tree + "/A/x", "1")
        try Self.write(tree + "/a/y", "2")
        let error = #expect(throws: DiffEngineError.self) {
            _ = try BundleMaker.make(oldRoot: nil, newRoot: tree, to: dir.file("c.phxb"))
        }
        let message = error?.description ?? ""
        #expect(message.contains("\(tree)/A and \(tree)/a") && message.contains("case-insensitive file system"), "\(message)")
        #expect(try dir.listing() == ["c"], "no bundle and no temporary file")
    }

    /// Links that leave the installation are refused by `make`, naming the link (before, the bundle was
    /// made and every apply refused it); a link that stays inside is fine.
    @Test func makeRefusesLinksThatLeaveTheTree() throws {
        let dir = try TemporaryDirectory()
        for (name, target) in [("abs", "/etc/passwd"), ("up", "../outside"), ("deep", "d/../../x")] {
            let tree = dir.file("t-" + name)
            try TreeSpec.build(tree, [.text("d/f", "x"), .link(name, to: target)])
            let error = #expect(throws: DiffEngineError.self, "\(target)") {
                _ = try BundleMaker.make(oldRoot: nil, newRoot: tree, to: dir.file(name + ".phxb"))
            }
            let message = error?.description ?? ""
            #expect(message.contains("cannot be bundled") && message.contains(name), "\(message)")
            #expect(!POSIX.exists(dir.file(name + ".phxb")))
        }
        let fine = dir.file("fine")
        try TreeSpec.build(fine, [.text("d/f", "x"), .link("ok", to: "d/f")])
        _ = try BundleMaker.make(oldRoot: nil, newRoot: fine, to: dir.file("fine.phxb"))
    }

    /// A link whose target is not UTF-8 is refused naming the link. Before, the target was decoded
    /// with U+FFFD and the bundle installed `tgt\xef\xbf\xbd` for `tgt\xff`.
    @Test func aLinkTargetThatIsNotUTF8IsRefusedNamingTheLink() throws {
        let dir = try TemporaryDirectory()
        let tree = dir.file("s")
        try POSIX.mkdir(tree)
        let target = (Array("tgt".utf8) + [0xFF, 0]).map { CChar(bitPattern: $0) }
        #expect(Glibc.symlink(target, tree + "/lnk") == 0)
        let error = #expect(throws: TreeIOError.self) { _ = try TreeScanner.scan(tree) }
        let message = error?.description ?? ""
        #expect(message.contains("\(tree)/lnk") && message.contains("tgt\\xff") && message.contains("not valid UTF-8"), "\(message)")
        #expect(throws: TreeIOError.self) { _ = try BundleMaker.make(oldRoot: nil, newRoot: tree, to: dir.file("s.phxb")) }
        #expect(try dir.listing() == ["s"])
    }

    /// An installation holding such a link is not stuck: its scan (lossy there) matches no delta's
    /// old digest, so a delta is refused as a mismatch, and a full bundle replaces the tree.
    @Test func anInstallationWithSuchALinkTakesAFullBundle() throws {
        let dir = try TemporaryDirectory()
        let install = dir.file("app")
        try TreeSpec.build(install, [.text("VERSION", "1")])
        let target = (Array("tgt".utf8) + [0xFF, 0]).map { CChar(bitPattern: $0) }
        #expect(Glibc.symlink(target, install + "/lnk") == 0)
        let next = dir.file("next")
        try TreeSpec.build(next, [.text("VERSION", "2")])
        let full = dir.file("full.phxb")
        _ = try BundleMaker.make(oldRoot: nil, newRoot: next, to: full)
        _ = try BundleApplier.apply(directory: install, bundlePath: full)
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(next))
        // And a delta made from the tree without the link is refused as another tree, not a crash.
        #expect(Glibc.symlink(target, install + "/lnk") == 0)
        let third = dir.file("third")
        try TreeSpec.build(third, [.text("VERSION", "3")])
        let delta = dir.file("delta.phxb")
        _ = try BundleMaker.make(oldRoot: next, newRoot: third, to: delta)
        #expect(throws: PatcherError.self) { _ = try BundleApplier.apply(directory: install, bundlePath: delta) }
    }

    /// A name that is not UTF-8 is refused as such, shown as its bytes. Before: "cannot stat
    /// u/bad\u{FFFD}: No such file or directory".
    @Test func aFileNameThatIsNotUTF8IsRefusedAsSuch() throws {
        let dir = try TemporaryDirectory()
        let tree = dir.file("u")
        try POSIX.mkdir(tree)
        let bad = Self.cPath(tree, Array("bad".utf8) + [0xFF])
        let fd = creat(bad, 0o644)
        #expect(fd >= 0)
        close(fd)
        let error = #expect(throws: TreeIOError.self) { _ = try TreeScanner.scan(tree) }
        let message = error?.description ?? ""
        #expect(message.contains("\(tree)/bad\\xff") && message.contains("not valid UTF-8"), "\(message)")
        #expect(!message.contains("cannot stat"), "\(message)")
        // Removed here: the scratch directory's removal goes through `String` names.
        #expect(unlink(bad) == 0)
    }

    /// A backslash in a name: the rule a bundle's paths follow, not the bundle reader's "corrupt patch:
    /// header field path".
    @Test func aBackslashInANameIsRefusedAsNotAllowedInABundle() throws {
        let dir = try TemporaryDirectory()
        let tree = dir.file("w")
        try POSIX.mkdir(tree)
        try Self.write(tree + "/a\\b", "x")
        let error = #expect(throws: TreeIOError.self) { _ = try TreeScanner.scan(tree) }
        let message = error?.description ?? ""
        #expect(message.contains("not allowed in a bundle: \(tree)/a\\b") && message.contains("contains a backslash"), "\(message)")
        #expect(!message.contains("corrupt patch"), "\(message)")
    }

    @Test func escapedShowsBytesThatAreNotUTF8() {
        #expect(POSIX.escaped(Array("bad".utf8) + [0xFF]) == "bad\\xff")
        #expect(POSIX.escaped(Array("caf\u{E9}/\u{65E5}".utf8)) == "caf\u{E9}/\u{65E5}")
        #expect(POSIX.escaped([0xC3]) == "\\xc3", "a sequence cut short")
        #expect(POSIX.escaped([0xC0, 0x80]) == "\\xc0\\x80", "an overlong sequence")
        #expect(POSIX.escaped([0x0A, 0x41]) == "\\x0aA", "a control character")
        #expect(POSIX.escaped(Array("a\u{9B}b\u{202E}c".utf8)) == "a\\u{9b}b\\u{202e}c", "C1 and bidi controls")
    }

    /// A `/` followed by a combining mark is one `Character`, but a separator on disk: split by
    /// `Character`s, a link target hid a `..` and pointed outside the installation.
    @Test func aCombiningMarkAfterASlashHidesNoDotDot() throws {
        #expect(throws: PatchFormatError.self) { try BundlePath.validateLinkTarget("../\u{301}x", of: "evil") }
        let entries: [TreeEntry] = [
            .directory("a", mode: 0o755), .symlink("a/dot", target: ".."), .symlink("a/evil", target: "dot/\u{301}/../.."),
        ]
        let error = #expect(throws: PatchFormatError.self) { try BundleManifest.validateTree(entries, list: "new tree") }
        #expect(error?.description.contains("through another symlink") == true, "\(String(describing: error))")
        try BundlePath.validateLinkTarget("\u{301}x/../y", of: "ok")
    }

    /// A `..` through a link named in the other normalization form, or in other letter case: APFS and
    /// case-insensitive file systems resolve `cafe\u{301}` to the link `caf\u{E9}` (and `DOT` to
    /// `dot`), so `a/evil` would climb out; a lookup by bytes let both pass.
    @Test func aDotDotThroughALinkSpelledOtherwiseIsRefused() throws {
        for (link, spelled) in [(Self.nfc, Self.nfd), (Self.nfd, Self.nfc), ("dot", "DOT")] {
            let names = [link, "evil"].sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            var entries: [TreeEntry] = [.directory("a", mode: 0o755)]
            for name in names {
                entries.append(name == "evil" ? .symlink("a/evil", target: spelled + "/../..") : .symlink("a/" + link, target: ".."))
            }
            let error = #expect(throws: PatchFormatError.self, "\(link) spelled \(spelled)") {
                try BundleManifest.validateTree(entries, list: "new tree")
            }
            #expect(error?.description.contains("through another symlink") == true, "\(String(describing: error))")
        }
    }

    /// A directory in the other normalization form is not a file's parent (on Linux they are two).
    @Test func aParentInTheOtherNormalizationFormIsNoParent() throws {
        let entries: [TreeEntry] = [
            .directory(Self.nfd, mode: 0o755), .file(Self.nfc + "/x", mode: 0o644, size: 0, sha256: SHA256Hasher.hash([UInt8]())),
        ]
        let error = #expect(throws: PatchFormatError.self) { try BundleManifest.validateTree(entries, list: "new tree") }
        #expect(error?.description.contains("has no directory entry for its parent") == true, "\(String(describing: error))")
    }
}
