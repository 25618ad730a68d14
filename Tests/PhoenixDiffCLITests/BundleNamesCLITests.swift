import Foundation
import Glibc
import Testing
import TestSupport
import TreeIO

/// `make` of a tree that a bundle cannot carry: refused before anything is written, with an exit code
/// and a message that say which path and why.
@Suite struct BundleNamesCLITests {
    /// Exit 1 (usage, as for other inputs `make` cannot take), naming both paths.
    @Test func caseCollidingPathsAreAUsageError() throws {
        let dir = try TemporaryDirectory()
        let tree = dir.file("c")
        try TreeSpec.build(tree, [.text("A/x", "1"), .text("a/y", "2")])
        let r = try CLI.run("make", "--full", tree, dir.file("c.phxb"))
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("\(tree)/A and \(tree)/a") && r.stderr.contains("case-insensitive file system"), "\(r.stderr)")
        #expect(try dir.listing() == ["c"], "no bundle and no temporary file")
    }

    /// Exit 4, as for other entries a bundle cannot hold (devices, FIFOs): the name or link target
    /// shown as its bytes. Before: "cannot stat u/bad\u{FFFD}" for the name, and the target silently
    /// installed as `tgt\xef\xbf\xbd`.
    @Test func namesAndLinkTargetsThatAreNotUTF8AreRefusedAsSuch() throws {
        let dir = try TemporaryDirectory()
        let u = dir.file("u"), s = dir.file("s")
        try POSIX.mkdir(u)
        try POSIX.mkdir(s)
        let bad = (Array((u + "/bad").utf8) + [0xFF, 0]).map { CChar(bitPattern: $0) }
        let fd = creat(bad, 0o644)
        #expect(fd >= 0)
        close(fd)
        let name = try CLI.run("make", "--full", "-q", u, dir.file("u.phxb"))
        #expect(name.status == 4, "\(name.stderr)")
        #expect(name.stderr.contains("\(u)/bad\\xff") && name.stderr.contains("not valid UTF-8"), "\(name.stderr)")
        #expect(!name.stderr.contains("cannot stat"), "\(name.stderr)")
        // Removed here: the scratch directory's removal goes through `String` names.
        #expect(unlink(bad) == 0)

        let target = (Array("tgt".utf8) + [0xFF, 0]).map { CChar(bitPattern: $0) }
        #expect(Glibc.symlink(target, s + "/lnk") == 0)
        let link = try CLI.run("make", "--full", "-q", s, dir.file("s.phxb"))
        #expect(link.status == 4, "\(link.stderr)")
        #expect(link.stderr.contains("\(s)/lnk") && link.stderr.contains("tgt\\xff") && link.stderr.contains("not valid UTF-8"),
                "\(link.stderr)")
        #expect(try dir.listing() == ["s", "u"])
    }

    /// A backslash: the rule a bundle's paths follow, not "corrupt patch: header field path".
    @Test func aBackslashInANameIsNotAllowedInABundle() throws {
        let dir = try TemporaryDirectory()
        let tree = dir.file("w")
        try POSIX.mkdir(tree)
        try POSIX.mkdir(tree + "/sub")
        try Array("x".utf8).withUnsafeBytes { try POSIX.writeNewFile(tree + "/sub/a\\b", $0, mode: 0o644) }
        let r = try CLI.run("make", "--full", tree, dir.file("w.phxb"))
        #expect(r.status == 4, "\(r.stderr)")
        #expect(r.stderr.contains("not allowed in a bundle: \(tree)/sub/a\\b: the path contains a backslash"), "\(r.stderr)")
        #expect(!r.stderr.contains("corrupt patch"), "\(r.stderr)")
    }
}
