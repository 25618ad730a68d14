import DiffEngine
import Foundation
import PatchFormat
import Testing
import TestSupport
import TreeIO

/// End-to-end tests that run the built `phoenix-diff` binary (built alongside the tests; this target
/// depends on it). PHOENIX_DIFF_BIN overrides the path.
enum CLI {
    static let binary = ProcessInfo.processInfo.environment["PHOENIX_DIFF_BIN"] ?? Run.product("phoenix-diff")

    static func run(_ args: String...) throws -> ProcessResult {
        try Run.process(binary, args)
    }
}

@Suite struct CLITests {
    let dir: TemporaryDirectory
    let old: [UInt8]
    let new: [UInt8]

    init() throws {
        dir = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 4242)
        old = TestData.structured(200_000, rng: &rng)
        new = TestData.mutate(old, edits: 30, rng: &rng)
        try dir.write("old", old)
        try dir.write("new", new)
    }

    /// `make --index best` (the file path, which reads new after indexing, twice) writes the smaller
    /// of the two indexes' patches, byte for byte. On these inputs the chains win with xz and the
    /// suffix array with bsdiff's format.
    @Test(arguments: ["phx", "bsdiff"])
    func bestWritesTheSmallerPatch(format: String) throws {
        var rng = SeededGenerator(seed: 424242)
        let a = TestData.structured(300_000, rng: &rng)
        try dir.write("best-old", a)
        try dir.write("best-new", TestData.mutate(a, edits: 60, rng: &rng))
        var made: [String: [UInt8]] = [:]
        for index in ["hash-chains", "suffix-array", "best"] {
            let r = try Run.process(CLI.binary, ["make", "--quiet", "--format", format, "--index", index,
                                                 dir.file("best-old"), dir.file("best-new"), dir.file("p-\(index)")])
            #expect(r.status == 0, "\(index): \(r.stderr)")
            made[index] = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.file("p-\(index)"))))
        }
        let chains = made["hash-chains"]!, sorted = made["suffix-array"]!
        #expect(chains.count != sorted.count, "\(format): the two indexes should differ here")
        let same = made["best"]! == (chains.count <= sorted.count ? chains : sorted)
        #expect(same, "\(format): best \(made["best"]!.count), chains \(chains.count), suffix array \(sorted.count)")
    }

    /// A pipe or FIFO as an input is refused with an error that says so. A pipe (`<(...)`) was read as
    /// an empty file (its size): `make old <(cat new) p` wrote a patch to an empty file, and exit 0. A
    /// FIFO without a writer hung at open (`timeout` turns that into a failure here, not a hung test).
    @Test func pipesAndFIFOsAreRefusedNotReadAsEmpty() throws {
        let b = CLI.binary
        let r = try Run.process("/bin/bash", ["-c", """
            '\(b)' make --quiet old <(cat new) p1; echo "pipe-new $?"
            '\(b)' make --quiet <(cat old) new p2; echo "pipe-old $?"
            '\(b)' make --quiet --memory-limit 96M old <(cat new) p3; echo "pipe-low-memory $?"
            mkfifo fifo
            timeout 30 '\(b)' make --quiet old fifo p4; echo "fifo-new $?"
            '\(b)' make --quiet old new p5 && timeout 30 '\(b)' apply --quiet fifo p5 out; echo "fifo-apply $?"
            """], cwd: dir.path)
        let statuses = r.stdout.split(whereSeparator: \.isNewline).map(String.init)
        #expect(statuses == ["pipe-new 4", "pipe-old 4", "pipe-low-memory 4", "fifo-new 4", "fifo-apply 4"], "\(r.stderr)")
        #expect(r.stderr.components(separatedBy: "not a regular file").count == 6, "\(r.stderr)")
        #expect(try dir.listing().filter { ["p1", "p2", "p3", "p4", "out"].contains($0) || $0.contains("phx-tmp") } == [])
    }

    /// A path argument that is not UTF-8 is refused. Read as a Swift string its bad byte became U+FFFD,
    /// so `apply --in-place` on `a\xFF` patched the file named `a` U+FFFD instead, and an output was
    /// created under the other name.
    @Test func pathsThatAreNotUTF8AreRefusedNotReadAsAnother() throws {
        let b = CLI.binary
        let r = try Run.process("/bin/bash", ["-c", """
            bad=$(printf 'a\\377'); other=$(printf 'a\\357\\277\\275')
            cp old "$bad"; cp old "$other"
            '\(b)' make --quiet old new p
            '\(b)' apply --quiet --in-place "$bad" p; echo "in-place $?"
            '\(b)' apply --quiet old p "$(printf 'out\\377')"; echo "output $?"
            cmp -s old "$other" && echo "other untouched"
            cmp -s old "$bad" && echo "named untouched"
            ls | grep -c '^out'; true
            """], cwd: dir.path)
        let lines = r.stdout.split(whereSeparator: \.isNewline).map(String.init)
        #expect(lines == ["in-place 1", "output 1", "other untouched", "named untouched", "0"], "\(r.stdout) \(r.stderr)")
        #expect(r.stderr.components(separatedBy: "is not valid UTF-8").count == 3 && r.stderr.contains("a\\xFF"), "\(r.stderr)")
    }

    /// Outputs that must not be replaced, and inputs that must not be lost: the patch written over an
    /// input (`make old new old` destroyed old, which the patch needs), a FIFO (as root, a device) at
    /// the output path, a directory that does not exist (refused before the diff runs). In place
    /// through a symbolic link, the file it points to is updated and the link stays; a set-user-ID
    /// file keeps its mode.
    @Test func outputsAreCheckedAndInputsKept() throws {
        for args in [["old", "new", "old"], ["old", "new", "new"], ["--memory-limit", "96M", "old", "new", "old"]] {
            let r = try Run.process(CLI.binary, ["make", "--quiet"] + args, cwd: dir.path)
            #expect(r.status == 1 && r.stderr.contains("would destroy that input"), "\(args): \(r.status) \(r.stderr)")
        }
        #expect(try dir.read("old") == old && dir.read("new") == new)
        // A PATCH that is a symbolic link to an input: the link is replaced, the input kept.
        try POSIX.symlink(target: "old", at: dir.file("plink"))
        #expect(try CLI.run("make", "--quiet", dir.file("old"), dir.file("new"), dir.file("plink")).status == 0)
        #expect(try dir.read("old") == old && !POSIX.isSymlink(dir.file("plink")))
        // A bundle written inside a tree it is made from would change that tree.
        try TreeSpec.build(dir.file("t1"), [.text("a", "1")])
        try TreeSpec.build(dir.file("t2"), [.text("a", "2")])
        let inside = try CLI.run("make", dir.file("t1"), dir.file("t2"), dir.file("t1/sub/../p.bundle"))
        #expect(inside.status == 1 && inside.stderr.contains("inside the tree"), "\(inside.stderr)")
        #expect(!POSIX.exists(dir.file("t1/p.bundle")))
        #expect(mkfifo(dir.file("fifo"), 0o600) == 0)
        #expect(try CLI.run("make", "--quiet", dir.file("old"), dir.file("new"), dir.file("p")).status == 0)
        for args in [["make", "--quiet", "old", "new", "fifo"], ["apply", "--quiet", "old", "p", "fifo"],
                     ["make", "--quiet", "old", "new", "no-such-dir/p"]] {
            let r = try Run.process(CLI.binary, args, cwd: dir.path)
            #expect(r.status == 4, "\(args): \(r.status) \(r.stderr)")
        }
        #expect(try POSIX.lstat(dir.file("fifo")).st_mode & S_IFMT == S_IFIFO, "the FIFO is still a FIFO")

        try dir.write("target", old)
        try POSIX.chmod(dir.file("target"), 0o4755)
        try POSIX.symlink(target: "target", at: dir.file("link"))
        let r = try CLI.run("apply", "--quiet", "--in-place", dir.file("link"), dir.file("p"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try POSIX.lstat(dir.file("link")).st_mode & S_IFMT == S_IFLNK && dir.read("target") == new)
        #expect(try POSIX.lstat(dir.file("target")).st_mode & 0o7777 == 0o4755)
    }

    /// `rollback` and `recover` of a path that names nothing: exit 4, and nothing is created for it.
    @Test func rollbackAndRecoverOfNothing() throws {
        for command in ["rollback", "recover"] {
            let r = try CLI.run(command, dir.file("no-such-app"))
            #expect(r.status == 4 && r.stderr.contains("no such directory"), "\(command): \(r.status) \(r.stderr)")
        }
        #expect(!POSIX.exists(dir.file(".no-such-app.phoenix")))
        #expect(try CLI.run("rollback", "").status == 1)
        let root = try CLI.run("rollback", "/")
        #expect(root.status == 4 && root.stderr.contains("root directory"), "\(root.stderr)")
        #expect(try CLI.run("apply", "--threads", "0", dir.file("old"), dir.file("p"), dir.file("x")).status == 1)
        let layout = try CLI.run("make", "--format", "bsdiff", "--diff-order", "context", dir.file("old"), dir.file("new"), dir.file("x"))
        #expect(layout.status == 1 && layout.stderr.contains("BSDIFF40 has one layout"), "\(layout.stderr)")
    }

    /// A patch from nothing: /dev/null as old (as with bsdiff) is read, not mapped (the default
    /// memory limit must not turn it away), and the patch applies to an empty file.
    @Test func makeFromDevNull() throws {
        let r = try CLI.run("make", "--quiet", "/dev/null", dir.file("new"), dir.file("from-nothing"))
        #expect(r.status == 0, "\(r.stderr)")
        try dir.write("empty", [])
        let apply = try CLI.run("apply", "--quiet", dir.file("empty"), dir.file("from-nothing"), dir.file("made"))
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try dir.read("made") == new)
        // And /dev/null as OLD on the apply side too; the result gets a file's mode, not the device's.
        let fromNull = try CLI.run("apply", "--quiet", "/dev/null", dir.file("from-nothing"), dir.file("made2"))
        #expect(fromNull.status == 0, "\(fromNull.stderr)")
        #expect(try dir.read("made2") == new && POSIX.lstat(dir.file("made2")).st_mode & 0o7777 == 0o644)
        // A bundle given to the file form says how to apply it.
        try TreeSpec.build(dir.file("tree"), [.text("a", "a")])
        #expect(try CLI.run("make", "--quiet", "--full", dir.file("tree"), dir.file("b")).status == 0)
        let wrong = try CLI.run("apply", dir.file("old"), dir.file("b"), dir.file("out"))
        #expect(wrong.status == 1 && wrong.stderr.contains("apply DIR BUNDLE"), "\(wrong.stderr)")
    }

    @Test func binaryExists() {
        #expect(FileManager.default.isExecutableFile(atPath: CLI.binary), "no phoenix-diff at \(CLI.binary)")
    }

    @Test(arguments: [["--format", "phx"], ["--format", "bsdiff"], ["--codec", "bzip2"], ["--codec", "zlib"],
                      ["--codec", "none"], ["--codec", "zstd", "--level", "3"], ["--codec", "xz", "--level", "9"],
                      ["--index", "hash-chains"], ["--index", "hash-chains", "--format", "bsdiff"], ["--index", "suffix-array"],
                      ["--index", "best"]])
    func makeThenApply(_ extra: [String]) throws {
        let make = try Run.process(CLI.binary, ["make", dir.file("old"), dir.file("new"), dir.file("p")] + extra)
        #expect(make.status == 0, "\(make.stderr)")
        #expect(make.stdout.contains("patch"))
        // The summary's numbers: "... 942 B (0.47% of the new file's 194.8 KiB), in 0.04 s".
        #expect(make.stdout.contains(/\([0-9]+\.[0-9]{2}% of the new file's 194\.8 KiB\), in [0-9]+\.[0-9]{2} s/),
                "\(make.stdout)")
        #expect(make.stderr.isEmpty, "stderr is not a terminal, so no progress: \(make.stderr)")
        let apply = try CLI.run("apply", dir.file("old"), dir.file("p"), dir.file("out"))
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try dir.read("out") == new)
        #expect(apply.stdout.contains(Hex.encode(SHA256Hasher.hash(new))))
    }

    @Test func inPlaceKeepsModeAndQuietPrintsNothing() throws {
        _ = try CLI.run("make", dir.file("old"), dir.file("new"), dir.file("p"))
        let target = try dir.write("target", old)
        chmod(target, 0o700)
        let r = try CLI.run("apply", "--in-place", target, dir.file("p"), "--quiet")
        #expect(r.status == 0)
        #expect(r.stdout.isEmpty && r.stderr.isEmpty)
        #expect(try dir.read("target") == new)
        var st = stat()
        stat(target, &st)
        #expect(st.st_mode & 0o777 == 0o700)
    }

    @Test func inspectShowsTheHeaderAndJSONParses() throws {
        _ = try CLI.run("make", dir.file("old"), dir.file("new"), dir.file("p"))
        let text = try CLI.run("inspect", dir.file("p"))
        #expect(text.status == 0)
        #expect(text.stdout.contains("format         phx"))
        #expect(text.stdout.contains(Hex.encode(SHA256Hasher.hash(old))))
        let json = try CLI.run("inspect", "--json", dir.file("p"))
        #expect(json.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["format"] as? String == "phx")
        #expect(object?["codec"] as? String == "xz")
        #expect((object?["newSize"] as? Int) == new.count)
        #expect((object?["oldSize"] as? Int) == old.count)
        #expect((object?["controlTuples"] as? Int ?? 0) > 0)
        _ = try CLI.run("make", "--format", "bsdiff", dir.file("old"), dir.file("new"), dir.file("b"))
        let b = try CLI.run("inspect", "--json", dir.file("b"))
        let bo = try JSONSerialization.jsonObject(with: Data(b.stdout.utf8)) as? [String: Any]
        #expect(bo?["format"] as? String == "bsdiff")
        #expect((bo?["controlTuples"] as? Int ?? 0) > 0)
    }

    @Test func usageErrorsExitWith1() throws {
        _ = try CLI.run("make", dir.file("old"), dir.file("new"), dir.file("p"))
        // Two paths with a file patch (not a bundle): NEW is missing.
        for args in [["make", "a"], ["apply", dir.file("old"), dir.file("p")], ["bogus"], ["make", "--full", "a", "b", "c"],
                     ["make", "--format", "bsdiff", "--codec", "zstd", "a", "b", "c"], ["make", "--level", "99", "a", "b", "c"],
                     ["apply", "--in-place", "a", "b", "c"], ["make", "--control", "diagonal", "a", "b", "c"],
                     ["make", "--diff-order", "sideways", "a", "b", "c"], ["make", "--index", "trie", "a", "b", "c"]] {
            let r = try Run.process(CLI.binary, args)
            #expect(r.status == 1, "\(args): status \(r.status), stderr \(r.stderr)")
            #expect(!r.stderr.isEmpty)
        }
    }

    @Test func corruptPatchExitsWith2AndOneLineNamingTheProblem() throws {
        _ = try CLI.run("make", dir.file("old"), dir.file("new"), dir.file("p"))
        var p = try dir.read("p")
        p = Array(p.dropLast(10))
        try dir.write("bad", p)
        let r = try CLI.run("apply", dir.file("old"), dir.file("bad"), dir.file("out"))
        #expect(r.status == 2)
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(r.stderr.contains("corrupt patch: truncated patch"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
        try dir.write("notapatch", Array("hello world, definitely not a patch".utf8))
        let m = try CLI.run("inspect", dir.file("notapatch"))
        #expect(m.status == 2)
        #expect(m.stderr.contains("unknown magic"))
    }

    @Test func wrongSourceExitsWith3AndLeavesNothing() throws {
        _ = try CLI.run("make", dir.file("old"), dir.file("new"), dir.file("p"))
        let r = try CLI.run("apply", dir.file("new"), dir.file("p"), dir.file("out"))
        #expect(r.status == 3)
        #expect(r.stderr.contains("wrong source file"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
    }

    @Test func missingFileExitsWith4() throws {
        let r = try CLI.run("apply", dir.file("old"), dir.file("missing"), dir.file("out"))
        #expect(r.status == 4)
        #expect(r.stderr.contains("missing"))
        let m = try CLI.run("make", dir.file("nope"), dir.file("new"), dir.file("p"))
        #expect(m.status == 4)
    }

    @Test func maxOutputRefusesLargeDeclaredSizes() throws {
        _ = try CLI.run("make", dir.file("old"), dir.file("new"), dir.file("p"))
        let r = try CLI.run("apply", "--max-output", "1K", dir.file("old"), dir.file("p"), dir.file("out"))
        #expect(r.status == 2)
        #expect(r.stderr.contains("above the limit of 1024 bytes"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
    }

    @Test func threadsDoNotChangeThePatch() throws {
        _ = try CLI.run("make", "--threads", "1", dir.file("old"), dir.file("new"), dir.file("p1"))
        _ = try CLI.run("make", "--threads", "4", dir.file("old"), dir.file("new"), dir.file("p4"))
        #expect(try dir.read("p1") == dir.read("p4"))
    }

    @Test func versionAndHelpExitZero() throws {
        let v = try CLI.run("--version")
        #expect(v.status == 0)
        #expect(v.stdout.contains("0."))
        let h = try CLI.run("--help")
        #expect(h.status == 0)
        #expect(h.stdout.contains("Exit codes"))
    }
}
