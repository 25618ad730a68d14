import DiffEngine
import Foundation
import PatchFormat
import Testing
import TestSupport
import TreeIO

/// Bundles through the built binary: make, inspect, apply, rollback, and crash injection (the apply
/// process killed with SIGKILL at every crash point, then `recover`).
@Suite struct BundleCLITests {
    let dir: TemporaryDirectory
    let old: String
    let new: String

    init() throws {
        dir = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 777)
        let a = TestData.structured(60_000, rng: &rng)
        old = dir.file("v1")
        new = dir.file("v2")
        try TreeSpec.build(old, [
            .file("lib/a.so", a, mode: 0o755), .text("res/strings.txt", "hello"), .text("res/old-only.txt", "bye"),
            .link("lib/current", to: "a.so"), .dir("empty"), .text("docs/ünïcode.md", "v1"),
        ])
        try TreeSpec.build(new, [
            .file("lib/a.so", TestData.mutate(a, edits: 10, rng: &rng), mode: 0o755), .text("res/strings.txt", "hello, world"),
            .text("res/new-only.txt", "hi"), .text("res/moved/strings-copy.txt", "hello"), .link("lib/current", to: "a.so"),
            .dir("empty-too"), .text("docs/ünïcode.md", "v2"), .text("bin/run", "#!/bin/sh\n", mode: 0o755),
        ])
    }

    @Test func makeInspectApplyRollback() throws {
        let make = try CLI.run("make", old, new, dir.file("b"))
        #expect(make.status == 0, "\(make.stderr)")
        #expect(make.stdout.contains("bundle"))
        let inspect = try CLI.run("inspect", "--json", dir.file("b"))
        #expect(inspect.status == 0)
        let info = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
        #expect(info?["format"] as? String == "bundle")
        let ops = (info?["operations"] as? [[String: Any]] ?? []).compactMap { $0["op"] as? String }
        #expect(Set(ops).isSuperset(of: ["patch", "add", "remove", "directory"]))
        let text = try CLI.run("inspect", dir.file("b"))
        #expect(text.stdout.contains("remove    res/old-only.txt"))

        let install = dir.file("app")
        try TreeSpec.copy(old, install)
        let apply = try CLI.run("apply", install, dir.file("b"))
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(new))
        // Applied again, the update is done already: exit 0, nothing changed, the backup still the old
        // tree (the rollback below returns to it).
        let again = try CLI.run("apply", install, dir.file("b"))
        #expect(again.status == 0 && again.stdout.contains("already the bundle's new tree"), "\(again.stdout) \(again.stderr)")
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(new))
        let rollback = try CLI.run("rollback", install)
        #expect(rollback.status == 0, "\(rollback.stderr)")
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(old))
        let recover = try CLI.run("recover", "--json", install)
        #expect(recover.stdout.contains("clean"))
    }

    @Test func fullBundleAndUsage() throws {
        let r = try CLI.run("make", "--full", new, dir.file("full"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("full bundle"))
        let fresh = dir.file("fresh/app")
        #expect(try CLI.run("apply", fresh, dir.file("full")).status == 0)
        #expect(try TreeSpec.digest(fresh) == TreeSpec.digest(new))
        #expect(try CLI.run("make", "--full", new).status == 1)
        #expect(try CLI.run("make", old, dir.file("v2/res/strings.txt"), dir.file("x")).status == 1)
        #expect(try CLI.run("rollback", dir.file("nothing-here")).status == 4, "no such directory")
        let best = try CLI.run("make", "--index", "best", old, new, dir.file("best"))
        #expect(best.status == 1)
        #expect(best.stderr.contains("--index best applies to the diff of two files"), "\(best.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("best")))
        // Either index diffs the changed files; both bundles update a copy of old to new.
        for index in ["hash-chains", "suffix-array"] {
            let made = try CLI.run("make", "--index", index, old, new, dir.file(index))
            #expect(made.status == 0, "\(index): \(made.stderr)")
            let copy = dir.file("copy-\(index)")
            try TreeSpec.copy(old, copy)
            let applied = try CLI.run("apply", copy, dir.file(index))
            #expect(applied.status == 0, "\(index): \(applied.stderr)")
            #expect(try TreeSpec.digest(copy) == TreeSpec.digest(new), "\(index)")
        }
    }

    /// Kills `phoenix-diff apply` (and `rollback`) at each of its crash points in turn, runs `recover`,
    /// and checks that the installation is exactly the old or the new tree, then that a later apply
    /// or rollback still works. With `fallback`, as on a file system without RENAME_EXCHANGE (NFS,
    /// vfat): the switch is two journaled renames, and recovery finishes them with renames too. With
    /// `linked`, DIR is a symbolic link to the installation: between the renames its target is
    /// missing, and recovery must still find the journal beside the target.
    @Test(arguments: [(false, false), (true, false), (true, true)])
    func killedAtEveryStepTheTreeIsOldOrNew(fallback: Bool, linked: Bool) throws {
        let log = dir.file("crash-points-\(fallback)-\(linked)")
        let env = (fallback ? ["PHOENIX_NO_EXCHANGE": "1"] : [:]).merging(["PHOENIX_CRASH_LOG": log]) { a, _ in a }
        func cli(_ args: String...) throws -> ProcessResult { try Run.process(CLI.binary, args, environment: env) }
        let bundle = dir.file("b")
        #expect(try CLI.run("make", old, new, bundle).status == 0)
        let oldDigest = try TreeSpec.digest(old), newDigest = try TreeSpec.digest(new)
        var crashes = 0, sawOld = 0, sawNew = 0
        var point = 1
        while point < 200 {
            // The tree is checked where it is (`real`); the commands are given `install`.
            let real = dir.file("crash\(fallback)\(linked)-\(point)")
            let install = linked ? real + "-link" : real
            try TreeSpec.copy(old, real)
            if linked { try POSIX.symlink(target: POSIX.fileName(of: real), at: install) }
            let r = try Run.process(CLI.binary, ["apply", "--quiet", install, bundle], environment: env.merging(["PHOENIX_CRASH_AT": "\(point)"]) { a, _ in a })
            if !r.signaled {
                #expect(r.status == 0, "apply without a crash failed: \(r.stderr)")
                #expect(try TreeSpec.digest(real) == newDigest)
                break
            }
            crashes += 1
            let rec = try cli("recover", install)
            #expect(rec.status == 0, "recover after a crash at point \(point) failed: \(rec.stderr)")
            let digest = try TreeSpec.digest(real)
            #expect(digest == oldDigest || digest == newDigest, "crash at point \(point) left a mixed tree")
            if linked { #expect(try POSIX.lstat(install).st_mode & S_IFMT == S_IFLNK, "the link stays a link") }
            if digest == oldDigest {
                sawOld += 1
                let redo = try cli("apply", "--quiet", install, bundle)
                #expect(redo.status == 0, "apply after recovering point \(point): \(redo.stderr)")
                #expect(try TreeSpec.digest(real) == newDigest)
            } else {
                sawNew += 1
                // The backup must be the old tree, so that rollback works after a recovered crash.
                let back = try cli("rollback", "--quiet", install)
                #expect(back.status == 0, "rollback after recovering point \(point): \(back.stderr)")
                #expect(try TreeSpec.digest(real) == oldDigest)
            }
            point += 1
        }
        #expect(crashes >= 8, "only \(crashes) crash points were exercised")
        #expect(sawOld > 0 && sawNew > 0)
        // The switch the run took: the exchange, or the renames that replace it.
        let points = Set(String(decoding: try POSIX.readFile(log), as: UTF8.self).split(separator: "\n").map(String.init))
        #expect(points.contains(fallback ? "moved-aside" : "exchanged"), "\(points.sorted())")
        #expect(!points.contains(fallback ? "exchanged" : "moved-aside"), "\(points.sorted())")
    }

    /// The disk fills up (another program takes every free byte) at each step of `apply` in turn: the
    /// apply fails with a clear error or completes; the tree is the old or the new one; once space is
    /// back, `recover` leaves no staging behind and a new apply works.
    @Test func diskFullAtEveryStepLeavesTheOldOrNewTree() throws {
        guard let fs = try SmallFileSystem.mount(kilobytes: 8192) else { return }
        defer { SmallFileSystem.unmount(fs) }
        let bundle = dir.file("b")
        #expect(try CLI.run("make", old, new, bundle).status == 0)
        let oldDigest = try TreeSpec.digest(old), newDigest = try TreeSpec.digest(new)
        var failures = 0, point = 1
        while point < 200 {
            let install = fs + "/app"
            try? POSIX.removeTree(install)
            try? POSIX.removeTree(fs + "/.app.phoenix")
            try TreeSpec.copy(old, install)
            let r = try Run.process(CLI.binary, ["apply", "--quiet", install, bundle],
                                    environment: ["PHOENIX_FILL_AT": "\(point)", "PHOENIX_FILL_PATH": fs])
            let filled = POSIX.exists(fs + "/.phoenix-fill")
            try? POSIX.unlink(fs + "/.phoenix-fill")
            #expect(!r.signaled, "apply crashed with the disk full at point \(point)")
            let digest = try TreeSpec.digest(install)
            #expect(digest == oldDigest || digest == newDigest, "disk full at point \(point) left a mixed tree")
            if r.status != 0 {
                failures += 1
                #expect(r.stderr.contains("No space left on device"), "point \(point): \(r.stderr)")
                #expect(digest == oldDigest, "a failed apply must leave the old tree (point \(point))")
            }
            let rec = try CLI.run("recover", install)
            #expect(rec.status == 0, "recover after disk full at \(point): \(rec.stderr)")
            #expect(!POSIX.exists(fs + "/.app.phoenix/staging"), "staging left behind at point \(point)")
            if digest == oldDigest {
                let redo = try CLI.run("apply", "--quiet", install, bundle)
                #expect(redo.status == 0, "apply after the disk-full failure at \(point): \(redo.stderr)")
                #expect(try TreeSpec.digest(install) == newDigest)
            }
            if !filled { break }  // the apply finished before the Nth step: every step has been covered
            point += 1
        }
        #expect(failures >= 3, "only \(failures) steps failed with the disk full")
    }

    /// `apply DIR PATCH` with a PATCH that is not a bundle says what it is: a file patch (a usage
    /// error), or not a patch at all (exit 2, naming the magic or the short file). Before, each was
    /// told it was missing NEW.
    @Test func aDirectoryWithSomethingOtherThanABundleSaysWhatItIs() throws {
        let install = dir.file("magic-app")
        try TreeSpec.copy(old, install)
        try Array<UInt8>().withUnsafeBytes { try POSIX.writeNewFile(dir.file("empty.phxb"), $0, mode: 0o644) }
        try Array("<html>404</html>".utf8).withUnsafeBytes { try POSIX.writeNewFile(dir.file("page.phxb"), $0, mode: 0o644) }
        try Array("1234".utf8).withUnsafeBytes { try POSIX.writeNewFile(dir.file("f1"), $0, mode: 0o644) }
        try Array("1235".utf8).withUnsafeBytes { try POSIX.writeNewFile(dir.file("f2"), $0, mode: 0o644) }
        #expect(try CLI.run("make", "--quiet", dir.file("f1"), dir.file("f2"), dir.file("file.phx")).status == 0)
        let empty = try CLI.run("apply", install, dir.file("empty.phxb"))
        #expect(empty.status == 2 && empty.stderr.contains("magic") && empty.stderr.contains("only 0"), "\(empty.stderr)")
        let page = try CLI.run("apply", install, dir.file("page.phxb"))
        #expect(page.status == 2 && page.stderr.contains("unknown magic \"<html>40\""), "\(page.stderr)")
        let file = try CLI.run("apply", install, dir.file("file.phx"))
        #expect(file.status == 1 && file.stderr.contains("is a file patch"), "\(file.stderr)")
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(old))
    }

    /// An installation that is a mount point cannot be renamed, so no switch can be done: `apply` fails
    /// with the installation untouched and nothing left behind, and a run killed once the update was
    /// staged is abandoned by `recover` (retried at every start, the switch would fail every later
    /// run) instead of failing it.
    @Test func anInstallationThatCannotBeSwitchedIsLeftAsItWas() throws {
        guard let fs = try SmallFileSystem.mount(kilobytes: 8192) else { return }
        defer { SmallFileSystem.unmount(fs) }
        let bundle = dir.file("b")
        #expect(try CLI.run("make", old, new, bundle).status == 0)
        let oldDigest = try TreeSpec.digest(old)
        let state = POSIX.directory(of: fs) + "/.fs.phoenix"
        let log = dir.file("mount-points")
        var crashes = 0, point = 1
        while point < 200 {
            try? POSIX.removeTree(state)
            for name in try FileManager.default.contentsOfDirectory(atPath: fs) { try POSIX.removeTree(fs + "/" + name) }
            for name in try FileManager.default.contentsOfDirectory(atPath: old) { try TreeSpec.copy(old + "/" + name, fs + "/" + name) }
            #expect(try TreeSpec.digest(fs) == oldDigest)
            let r = try Run.process(CLI.binary, ["apply", "--quiet", fs, bundle],
                                    environment: ["PHOENIX_CRASH_AT": "\(point)", "PHOENIX_CRASH_LOG": log])
            if r.signaled {
                crashes += 1
                let rec = try CLI.run("recover", fs)
                #expect(rec.status == 0, "recover after a crash at point \(point): \(rec.stderr)")
            } else {
                #expect(r.status != 0, "an apply to a mount point succeeded")
                #expect(r.stderr.contains("a mount point cannot be replaced"), "the error says why: \(r.stderr)")
            }
            #expect(try TreeSpec.digest(fs) == oldDigest, "point \(point)")
            #expect(!POSIX.exists(state + "/journal") && !POSIX.exists(state + "/staging"), "left behind at point \(point)")
            // Nothing stops a later run: it fails the same way, not on the leftovers of this one.
            let again = try CLI.run("apply", "--quiet", fs, bundle)
            #expect(again.status != 0 && !again.stderr.contains("recover"), "\(again.stderr)")
            if !r.signaled { break }
            point += 1
        }
        let points = String(decoding: try POSIX.readFile(log), as: UTF8.self)
        #expect(crashes >= 1 && points.contains("journal-staged"), "\(points)")
    }

    @Test(arguments: [false, true])
    func killedDuringRollbackTheTreeIsOneOfTheTwo(fallback: Bool) throws {
        let log = dir.file("rollback-points-\(fallback)")
        let env = (fallback ? ["PHOENIX_NO_EXCHANGE": "1"] : [:]).merging(["PHOENIX_CRASH_LOG": log]) { a, _ in a }
        let bundle = dir.file("b")
        #expect(try CLI.run("make", old, new, bundle).status == 0)
        let oldDigest = try TreeSpec.digest(old), newDigest = try TreeSpec.digest(new)
        var point = 1
        while point < 50 {
            let install = dir.file("rb\(point)")
            try TreeSpec.copy(old, install)
            #expect(try CLI.run("apply", "--quiet", install, bundle).status == 0)
            let r = try Run.process(CLI.binary, ["rollback", "--quiet", install],
                                    environment: env.merging(["PHOENIX_CRASH_AT": "\(point)"]) { a, _ in a })
            if !r.signaled {
                #expect(r.status == 0)
                #expect(try TreeSpec.digest(install) == oldDigest)
                break
            }
            let rec = try Run.process(CLI.binary, ["recover", install], environment: env)
            #expect(rec.status == 0, "recover after a rollback crash at \(point): \(rec.stderr)")
            let digest = try TreeSpec.digest(install)
            #expect(digest == oldDigest || digest == newDigest, "rollback crash at \(point) left a mixed tree")
            // And the other version is still the backup: a second rollback swaps to it.
            let again = try Run.process(CLI.binary, ["rollback", "--quiet", install], environment: env)
            #expect(again.status == 0, "rollback after recovering a rollback crash at \(point): \(again.stderr)")
            #expect(try TreeSpec.digest(install) == (digest == oldDigest ? newDigest : oldDigest))
            point += 1
        }
        #expect(point > 2)
        let points = Set(String(decoding: try POSIX.readFile(log), as: UTF8.self).split(separator: "\n").map(String.init))
        #expect(points.contains(fallback ? "rollback-moved-aside" : "rollback-exchanged"), "\(points.sorted())")
    }

    /// Opt-in (PHOENIX_CORPUS): the real Django 5.2.18 -> 5.2.19 trees from ../shared/corpus.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["PHOENIX_CORPUS"] != nil))
    func djangoReleasePair() throws {
        let corpus = ProcessInfo.processInfo.environment["PHOENIX_CORPUS"]!
        let o = corpus + "/pairs/d-django/old", n = corpus + "/pairs/d-django/new"
        #expect(try CLI.run("make", o, n, dir.file("dj")).status == 0)
        let size = try FileManager.default.attributesOfItem(atPath: dir.file("dj"))[.size] as? Int ?? 0
        print("Django 5.2.18 -> 5.2.19 bundle: \(size) bytes")
        #expect(size <= 21 * 1024, "the Django bundle must not be larger than HDiffPatch's 21 KB")
        let install = dir.file("django")
        try TreeSpec.copy(o, install)
        #expect(try CLI.run("apply", install, dir.file("dj")).status == 0)
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(n))
    }
}
