import DiffEngine
import Foundation
import PatchFormat
import Patcher
import Testing
import TestSupport
import TreeIO

/// Trees that exercise every entry kind, bundles made and applied in place, rollback, tampering.
@Suite struct BundleTests {
    static func trees(_ dir: TemporaryDirectory) throws -> (old: String, new: String) {
        var rng = SeededGenerator(seed: 5150)
        let lib = TestData.structured(120_000, rng: &rng)
        let libV2 = TestData.mutate(lib, edits: 20, rng: &rng)
        let moved = TestData.structured(30_000, rng: &rng)
        let old = dir.file("old"), new = dir.file("new")
        try TreeSpec.build(old, [
            .text("README.md", "Phoenix Dashboard 1.0\n"),
            .file("lib/core.so", lib, mode: 0o755),
            .file("lib/plugin.so", moved, mode: 0o644),
            .text("bin/phoenix", "#!/bin/sh\nexec python3 -m phoenix \"$@\"\n", mode: 0o755),
            .text("bin/helper", "#!/bin/sh\necho helper\n", mode: 0o644),
            .link("bin/current", to: "phoenix"),
            .link("docs/latest", to: "v1"),
            .text("docs/v1/index.html", "<h1>v1</h1>"),
            .dir("cache", mode: 0o755),
            .dir("var/empty-old"),
            .text("config/defaults.json", "{\"channel\": \"stable\"}"),
            .text("kind-change", "was a file"),
            .text("gone/deep/file.txt", "deleted subtree"),
            .text("naïve/日本語.txt", "unicode, old"),
        ])
        try TreeSpec.build(new, [
            .text("README.md", "Phoenix Dashboard 1.1\n"),
            .file("lib/core.so", libV2, mode: 0o755),
            .file("plugins/plugin.so", moved, mode: 0o644),                  // moved, same content
            .text("bin/phoenix", "#!/bin/sh\nexec python3 -m phoenix \"$@\"\n", mode: 0o755),
            .text("bin/helper", "#!/bin/sh\necho helper\n", mode: 0o755),    // now executable
            .link("bin/current", to: "phoenix"),
            .link("docs/latest", to: "v2"),                                     // retargeted
            .text("docs/v2/index.html", "<h1>v2</h1>"),
            .dir("cache", mode: 0o700),                                         // mode change
            .dir("var/empty-new"),
            .text("config/defaults.json", "{\"channel\": \"stable\"}"),
            .text("config/defaults copy.json", "{\"channel\": \"stable\"}"),   // a copy
            .dir("kind-change"),                                                // file -> directory
            .text("kind-change/inside", "now a directory"),
            .text("naïve/日本語.txt", "unicode, new"),
            .text("naïve/Ελληνικά.txt", "added"),
        ])
        return (old, new)
    }

    @Test func everyEntryKindRoundTripsWithBackupAndRollback() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        let bundle = dir.file("update.bundle")
        let summary = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle, options: BundleOptions(threads: 2))
        #expect(summary.copied >= 2)
        #expect(summary.removed > 0 && summary.added > 0 && summary.changed > 0)
        let install = dir.file("app")
        try TreeSpec.copy(old, install)
        let oldDigest = try TreeSpec.digest(old), newDigest = try TreeSpec.digest(new)
        #expect(try TreeSpec.digest(install) == oldDigest)

        let result = try BundleApplier.apply(directory: install, bundlePath: bundle)
        #expect(try TreeSpec.digest(install) == newDigest)
        #expect(result.newDigest == newDigest && result.oldDigest == oldDigest)
        #expect(try TreeSpec.digest(dir.file(".app.phoenix/backup")) == oldDigest)
        #expect(!POSIX.exists(dir.file(".app.phoenix/staging")))
        #expect(!POSIX.exists(dir.file(".app.phoenix/journal")))

        try BundleApplier.rollback(directory: install)
        #expect(try TreeSpec.digest(install) == oldDigest)
        try BundleApplier.rollback(directory: install)
        #expect(try TreeSpec.digest(install) == newDigest, "a second rollback rolls forward")
        #expect(try BundleApplier.recover(directory: install) == .clean)
    }

    /// Applied by root to an installation another user owns (an updater run as root), the new tree keeps
    /// the installation's owners: each entry its installed counterpart's (two files here another
    /// user's, one patched, one also copied to a new path), a copy its source's, a new one the
    /// installation's; the installation itself (so the backup) is not touched, though unchanged and
    /// copied files are staged as hard links to it. Before, every changed file and directory became
    /// root's and the user could no longer read the installation. By a delta and by a full bundle.
    @Test func rootKeepsTheInstallationsOwners() throws {
        guard geteuid() == 0 else {
            print("BundleTests: not root; the ownership test is skipped")
            return
        }
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        let delta = dir.file("delta.bundle"), full = dir.file("full.bundle")
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: delta)
        _ = try BundleMaker.make(oldRoot: nil, newRoot: new, to: full)
        for bundle in [delta, full] {
            let install = dir.file("app-" + POSIX.fileName(of: bundle))
            try TreeSpec.copy(old, install)
            #expect(try Run.process("/bin/chown", ["-R", "-h", "65534:65534", install]).status == 0)
            #expect(try Run.process("/bin/chown", ["-h", "1234:4321", install + "/README.md", install + "/config/defaults.json"]).status == 0)
            try BundleApplier.apply(directory: install, bundlePath: bundle)
            #expect(try TreeSpec.digest(install) == TreeSpec.digest(new))
            let backup = dir.file(".app-" + POSIX.fileName(of: bundle) + ".phoenix/backup/config/defaults.json")
            let kept = try POSIX.lstat(backup)
            #expect(kept.st_uid == 1234 && kept.st_gid == 4321, "the backup's defaults.json is \(kept.st_uid):\(kept.st_gid)")
            let paths = [""] + (FileManager.default.enumerator(atPath: install)?.compactMap { $0 as? String } ?? [])
            #expect(paths.count > 20)
            for p in paths {
                let st = try POSIX.lstat(p.isEmpty ? install : install + "/" + p)
                let other = ["README.md", "config/defaults.json"].contains(p) || (p == "config/defaults copy.json" && bundle == delta)
                let (uid, gid): (uid_t, gid_t) = other ? (1234, 4321) : (65534, 65534)
                #expect(st.st_uid == uid && st.st_gid == gid, "\(POSIX.fileName(of: bundle)): \(p.isEmpty ? "the installation" : p) is \(st.st_uid):\(st.st_gid)")
            }
        }
    }

    /// An installation reached through a symbolic link (`app -> app-1.0`, a common layout) is updated
    /// where the link points: the link stays a link, the directory keeps its own mode. Before, the link
    /// was swapped for the new tree, which took the link's mode: a world-writable 0777 root.
    @Test func aSymlinkedInstallationIsUpdatedWhereItPoints() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        let bundle = dir.file("update.bundle")
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle, options: BundleOptions(threads: 2))
        let real = dir.file("app-1.0"), link = dir.file("app")
        try TreeSpec.copy(old, real)
        try POSIX.chmod(real, 0o750)
        try POSIX.symlink(target: "app-1.0", at: link)
        _ = try BundleApplier.apply(directory: link, bundlePath: bundle)
        #expect(try POSIX.lstat(link).st_mode & S_IFMT == S_IFLNK && POSIX.readlink(link) == "app-1.0")
        #expect(try TreeSpec.digest(real) == TreeSpec.digest(new))
        #expect(try POSIX.lstat(real).st_mode & 0o7777 == 0o750)
        try BundleApplier.rollback(directory: link)
        #expect(try TreeSpec.digest(real) == TreeSpec.digest(old))
        #expect(try POSIX.lstat(real).st_mode & 0o7777 == 0o750 && POSIX.lstat(link).st_mode & S_IFMT == S_IFLNK)
        #expect(try BundleApplier.recover(directory: link) == .clean)
    }

    /// File names of the full 255 bytes (ASCII, and two-byte characters): the temporary file beside
    /// each (`.NAME.phx-tmp-XXXXXX`) must still fit in a name.
    @Test func longestFileNamesApply() throws {
        let dir = try TemporaryDirectory()
        let long = String(repeating: "n", count: 255), wide = String(repeating: "é", count: 127)
        let old = dir.file("old"), new = dir.file("new")
        try TreeSpec.build(old, [.text(long, "one"), .text("d/" + wide, "two")])
        try TreeSpec.build(new, [.text(long, "one, changed"), .text("d/" + wide, "two, changed"), .text("e/" + long, "three")])
        let bundle = dir.file("update.bundle")
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle, options: BundleOptions(threads: 2))
        let install = dir.file("app")
        try TreeSpec.copy(old, install)
        _ = try BundleApplier.apply(directory: install, bundlePath: bundle)
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(new))
    }

    /// `DIR/.`, `DIR/` and a path through `..` name the same installation: its state is kept beside
    /// it, never inside it (where it would change the tree and fail every later update).
    @Test func anyPathToTheInstallationKeepsItsStateBeside() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        let bundle = dir.file("update.bundle")
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: bundle, options: BundleOptions(threads: 2))
        let install = dir.file("app")
        try TreeSpec.copy(old, install)
        _ = try BundleApplier.apply(directory: install + "/.", bundlePath: bundle)
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(new))
        #expect(POSIX.isDirectory(dir.file(".app.phoenix/backup")))
        try BundleApplier.rollback(directory: install + "/lib/../")
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(old))
        #expect(try BundleApplier.recover(directory: install + "/./") == .clean)
        #expect(BundleApplier.installationPath(install + "/.") == BundleApplier.installationPath(install))
        // The same for a path that does not exist yet (a fresh install): `.` and `..` are its parents.
        let fresh = BundleApplier.installationPath(dir.file("fresh"))
        #expect(BundleApplier.installationPath(dir.file("fresh/.")) == fresh)
        #expect(BundleApplier.installationPath(dir.file("fresh/sub/..")) == fresh)
        #expect(BundleApplier.installationPath(dir.file("fresh/sub/../.")) == fresh)
        #expect(BundleApplier.installationPath(dir.file("fresh/a/b/../..")) == fresh)
        #expect(BundleApplier.installationPath(install + "/nothing/here/../../..") == BundleApplier.installationPath(dir.path))
    }

    @Test func bundleBytesDoNotDependOnThreads() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("a"), options: BundleOptions(threads: 1))
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"), options: BundleOptions(threads: 4))
        #expect(try dir.read("a") == dir.read("b"))
    }

    @Test func fullBundleInstallsFreshAndReplacesAnything() throws {
        let dir = try TemporaryDirectory()
        let (_, new) = try Self.trees(dir)
        let bundle = dir.file("full.bundle")
        _ = try BundleMaker.make(oldRoot: nil, newRoot: new, to: bundle)
        let fresh = dir.file("installs/fresh")
        let r = try BundleApplier.apply(directory: fresh, bundlePath: bundle)
        #expect(r.backup == nil)
        #expect(try TreeSpec.digest(fresh) == TreeSpec.digest(new))
        // Over a broken installation: replaced entirely, the broken one kept as the backup.
        let broken = dir.file("broken")
        try TreeSpec.build(broken, [.text("junk", "left over"), .text("lib/core.so", "truncated")])
        let brokenDigest = try TreeSpec.digest(broken)
        try BundleApplier.apply(directory: broken, bundlePath: bundle)
        #expect(try TreeSpec.digest(broken) == TreeSpec.digest(new))
        #expect(try TreeSpec.digest(dir.file(".broken.phoenix/backup")) == brokenDigest)
        // Again: nothing to do, and the backup is not replaced by a copy of the new tree.
        let again = try BundleApplier.apply(directory: broken, bundlePath: bundle)
        #expect(again.unchanged && again.filesWritten == 0)
        #expect(try TreeSpec.digest(dir.file(".broken.phoenix/backup")) == brokenDigest)
    }

    /// Refused before anything is made: no installation, no state directory beside it (its lock), no
    /// parent directory.
    @Test func aDeltaBundleRefusesAMissingInstallation() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"))
        let before = try dir.listing()
        for target in ["nowhere", "missing/parent/app"] {
            #expect {
                try BundleApplier.apply(directory: dir.file(target), bundlePath: dir.file("b"))
            } throws: { error in
                guard case PatcherError.installationMismatch(_, let detail) = error else { return false }
                return detail.contains("does not exist")
            }
            let after = try dir.listing()
            #expect(after == before, "\(target): left \(after)")
        }
    }

    @Test func aSecondUpdateWhileOneHoldsTheLockIsRefusedAsBusy() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("delta"))
        let install = dir.file("app")
        try TreeSpec.copy(old, install)
        try FileManager.default.createDirectory(atPath: dir.file(".app.phoenix"), withIntermediateDirectories: true)
        // Another process holds the installation's lock (as a running update would) for a while.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(60)",
                            dir.file(".app.phoenix/lock")]
        try holder.run()
        // SIGKILL: a child of the test runner may start with SIGTERM blocked.
        defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
        var held = false
        for _ in 0..<250 where !held {
            held = (try FileLock(path: dir.file(".app.phoenix/lock"), patience: 0)) == nil
            if !held { usleep(20_000) }
        }
        #expect(held, "the other process did not take the lock")
        #expect {
            try BundleApplier.apply(directory: install, bundlePath: dir.file("delta"))
        } throws: { error in
            guard case PatcherError.busy = error else { return false }
            return "\(error)".contains("another update")
        }
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(old), "the installation is untouched")
    }

    @Test func modifiedInstallationIsRefusedNamingTheFirstDifference() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("delta"))
        _ = try BundleMaker.make(oldRoot: nil, newRoot: old, to: dir.file("full-old"))
        let install = dir.file("app")
        try BundleApplier.apply(directory: install, bundlePath: dir.file("full-old"))

        // A file the bundle patches: named from the bundle itself.
        try Data("tampered".utf8).write(to: URL(fileURLWithPath: install + "/lib/core.so"))
        let before = try TreeSpec.digest(install)
        #expect {
            try BundleApplier.apply(directory: install, bundlePath: dir.file("delta"))
        } throws: { error in
            guard case PatcherError.installationMismatch(_, let detail) = error else { return false }
            return detail.contains("lib/core.so")
        }
        #expect(try TreeSpec.digest(install) == before, "a refused apply changed the installation")

        // A file the bundle does not touch: named from the installation's own record.
        try BundleApplier.apply(directory: install, bundlePath: dir.file("full-old"))
        try Data("user edit".utf8).write(to: URL(fileURLWithPath: install + "/bin/phoenix"))
        #expect {
            try BundleApplier.apply(directory: install, bundlePath: dir.file("delta"))
        } throws: { error in
            guard case PatcherError.installationMismatch(_, let detail) = error else { return false }
            return detail.contains("bin/phoenix")
        }
    }

    @Test func tamperedBundlesLeaveTheInstallationOldOrNew() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"))
        let good = try dir.read("b")
        let oldDigest = try TreeSpec.digest(old), newDigest = try TreeSpec.digest(new)
        var rng = SeededGenerator(seed: 99)
        var offsets = Array(stride(from: 0, to: min(200, good.count), by: 3))
        for _ in 0..<40 { offsets.append(Int(rng.next() % UInt64(good.count))) }
        offsets.append(contentsOf: [good.count - 1, good.count / 2])
        for (k, offset) in offsets.enumerated() {
            var bad = good
            bad[offset] ^= UInt8(1) << UInt8(rng.next() % 8)
            try dir.write("bad", bad)
            let install = dir.file("app\(k)")
            try TreeSpec.copy(old, install)
            do {
                try BundleApplier.apply(directory: install, bundlePath: dir.file("bad"))
                #expect(try TreeSpec.digest(install) == newDigest, "flip at \(offset) was accepted and gave a wrong tree")
            } catch is PatcherError {
                #expect(try TreeSpec.digest(install) == oldDigest, "flip at \(offset): a failed apply changed the installation")
                #expect(!POSIX.exists(dir.file(".app\(k).phoenix/staging")), "flip at \(offset): staging left behind")
            }
        }
        // Truncations.
        for cut in [0, 7, 100, good.count / 2, good.count - 1] {
            try dir.write("cut", Array(good.prefix(cut)))
            let install = dir.file("cut\(cut)")
            try TreeSpec.copy(old, install)
            #expect(throws: PatcherError.self) { try BundleApplier.apply(directory: install, bundlePath: dir.file("cut")) }
            #expect(try TreeSpec.digest(install) == oldDigest)
        }
    }

    @Test func rollbackRefusesWithoutOrWithADamagedBackup() throws {
        let dir = try TemporaryDirectory()
        let (old, new) = try Self.trees(dir)
        _ = try BundleMaker.make(oldRoot: old, newRoot: new, to: dir.file("b"))
        let install = dir.file("app")
        try TreeSpec.copy(old, install)
        #expect(throws: PatcherError.self) { try BundleApplier.rollback(directory: install) }
        try BundleApplier.apply(directory: install, bundlePath: dir.file("b"))
        try Data("damage".utf8).write(to: URL(fileURLWithPath: dir.file(".app.phoenix/backup/README.md")))
        #expect {
            try BundleApplier.rollback(directory: install)
        } throws: { error in
            guard case PatcherError.noBackup(_, let detail) = error else { return false }
            return detail.contains("modified")
        }
        #expect(try TreeSpec.digest(install) == TreeSpec.digest(new))
    }
}

/// Bundles written by hand whose manifests try to escape the installation or alias entries. Each must
/// be refused with the installation untouched.
@Suite struct HostileBundleTests {
    static let sha = SHA256Hasher.hash(Array("x".utf8))

    func expectRefused(_ bundle: [UInt8], full: Bool = true, containing text: String,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = try TemporaryDirectory()
        try dir.write("b", bundle)
        let install = dir.file("app")
        try TreeSpec.build(install, [.text("keep.txt", "untouched"), .dir("sub")])
        let before = try TreeSpec.digest(install)
        #expect(sourceLocation: sourceLocation) {
            try BundleApplier.apply(directory: install, bundlePath: dir.file("b"))
        } throws: { error in
            "\(error)".contains(text)
        }
        #expect(try TreeSpec.digest(install) == before, sourceLocation: sourceLocation)
        #expect(!POSIX.exists(dir.file("escaped")), sourceLocation: sourceLocation)
    }

    func fileOp(_ path: String) -> BundleOperation {
        BundleOperation(path: path, op: .file(mode: 0o644, size: 1, sha256: Self.sha,
                                              action: .data(source: nil, tuples: 1, diffBytes: 0, literalBytes: 0, extraBytes: 1)))
    }

    func bundle(_ ops: [BundleOperation], touched: [TreeEntry] = []) throws -> [UInt8] {
        try HandMadeBundle.make(manifest: BundleManifest(touched: touched, operations: ops), newCount: UInt64(ops.count),
                                newTotalBytes: 1, full: true, control: [0, 1, 0], extra: Array("x".utf8))
    }

    /// A delta bundle for the right installation (its old-tree digest matches) whose touched list says
    /// `lib/x` is a file, where the installation has `lib` as a symlink to a directory outside (which
    /// the bundle removes, so the new tree has no bad link to refuse): copying from `lib/x` would
    /// hard-link that outside file into the new tree. Refused before staging.
    @Test func touchedEntriesMustBeTheInstalledOnes() throws {
        let dir = try TemporaryDirectory()
        let secret = Array("secret".utf8)
        try TreeSpec.build(dir.file("outside"), [.file("x", secret, mode: 0o644)])
        let install = dir.file("app")
        try TreeSpec.build(install, [.text("keep.txt", "untouched")])
        try POSIX.symlink(target: dir.file("outside"), at: install + "/lib")
        let old = try TreeScanner.scan(install)
        let link = try #require(old.first { $0.path == "lib" })
        let touched = TreeEntry(path: "lib/x", kind: .file, mode: 0o644, size: UInt64(secret.count), sha256: SHA256Hasher.hash(secret))
        let copied = TreeEntry(path: "stolen", kind: .file, mode: 0o644, size: UInt64(secret.count), sha256: SHA256Hasher.hash(secret))
        let new = (old.filter { $0.path != "lib" } + [copied]).sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
        let manifest = BundleManifest(touched: [link, touched], operations: [
            BundleOperation(path: "lib", op: .remove),
            BundleOperation(path: "stolen", op: .file(mode: 0o644, size: UInt64(secret.count), sha256: SHA256Hasher.hash(secret),
                                                      action: .copy(source: 1)))])
        try dir.write("b", try HandMadeBundle.make(manifest: manifest, oldDigest: TreeDigest.compute(old), newDigest: TreeDigest.compute(new),
                                                   oldCount: UInt64(old.count), newCount: UInt64(new.count),
                                                   newTotalBytes: UInt64(secret.count)))
        let before = try TreeSpec.digest(install)
        #expect {
            try BundleApplier.apply(directory: install, bundlePath: dir.file("b"))
        } throws: { error in
            "\(error)".contains("touched entries") && "\(error)".contains("lib/x")
        }
        #expect(try TreeSpec.digest(install) == before)
        #expect(!POSIX.exists(install + "/stolen"))
    }

    @Test func absolutePath() throws {
        try expectRefused(try bundle([fileOp("/tmp/escaped")]), containing: "is absolute")
    }

    @Test func dotDotPath() throws {
        try expectRefused(try bundle([fileOp("../escaped")]), containing: "'..' component")
        try expectRefused(try bundle([BundleOperation(path: "a", op: .directory(mode: 0o755)), fileOp("a/../../escaped")]),
                          containing: "'..' component")
    }

    @Test func pathThroughASymlink() throws {
        try expectRefused(try bundle([BundleOperation(path: "link", op: .symlink(target: "sub")), fileOp("link/x")]),
                          containing: "lies under the symlink")
    }

    @Test func symlinkPointingOutside() throws {
        try expectRefused(try bundle([BundleOperation(path: "evil", op: .symlink(target: "../../etc"))]), containing: "climbs above")
        try expectRefused(try bundle([BundleOperation(path: "evil", op: .symlink(target: "/etc/passwd"))]), containing: "is absolute")
        // A '..' through another link that points at the root.
        try expectRefused(try bundle([BundleOperation(path: "a", op: .directory(mode: 0o755)),
                                      BundleOperation(path: "a/dot", op: .symlink(target: "..")),
                                      BundleOperation(path: "a/evil", op: .symlink(target: "dot/.."))]),
                          containing: "through another symlink")
    }

    @Test func duplicateAndCaseCollidingEntries() throws {
        try expectRefused(try bundle([fileOp("same"), fileOp("same")]), containing: "duplicate")
        try expectRefused(try bundle([fileOp("README"), fileOp("readme")]), containing: "case-insensitive")
    }

    @Test func unknownEntryTypeLikeADevice() throws {
        var raw = [UInt8]()
        Varint.appendUnsigned(0, to: &raw)   // touched
        Varint.appendUnsigned(1, to: &raw)   // one operation
        Varint.appendUnsigned(0, to: &raw)   // shared prefix
        Varint.appendUnsigned(3, to: &raw)
        raw += Array("dev".utf8)
        raw.append(9)                        // no such operation (devices have none)
        try expectRefused(try HandMadeBundle.make(manifest: BundleManifest(touched: [], operations: []), full: true, rawManifest: raw),
                          containing: "unknown operation tag 9")
    }

    @Test func absurdCountsAndSizes() throws {
        var raw = [UInt8]()
        Varint.appendUnsigned(UInt64.max >> 1, to: &raw)
        try expectRefused(try HandMadeBundle.make(manifest: BundleManifest(touched: [], operations: []), full: true, rawManifest: raw),
                          containing: "above the limit")
        let huge = BundleOperation(path: "huge", op: .file(mode: 0o644, size: 1 << 50, sha256: Self.sha,
                                                            action: .data(source: nil, tuples: 1, diffBytes: 0, literalBytes: 0, extraBytes: 1 << 50)))
        try expectRefused(try bundle([huge]), containing: "above the limit")
        let header = BundleHeader(isFull: true, codec: .zstd, level: 0, oldDigest: TreeDigest.empty, newDigest: TreeDigest.empty,
                                  oldCount: 0, newCount: 1 << 40, newTotalBytes: 0, manifestLength: 0, manifestRawLength: 0,
                                  controlLength: 0, runsLength: 0, literalsLength: 0, extraLength: 0).encode()
        try expectRefused(header, containing: "above the limit")
    }

    @Test func streamsThatDoNotMatchTheManifest() throws {
        // The file claims 1 byte but the extra stream holds 2: trailing data, nothing installed.
        let op = fileOp("f")
        let b = try HandMadeBundle.make(manifest: BundleManifest(touched: [], operations: [op]), newCount: 1, newTotalBytes: 1,
                                        full: true, control: [0, 1, 0], extra: Array("xy".utf8))
        try expectRefused(b, containing: "digest")
    }
}
