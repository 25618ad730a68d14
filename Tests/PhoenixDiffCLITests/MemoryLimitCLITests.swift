import DiffEngine
import Foundation
import Testing
import TestSupport

/// `phoenix-diff make --memory-limit`: the peak resident memory of the process, measured from outside
/// by GNU time, stays under the limit on inputs larger than it.
@Suite struct MemoryLimitCLITests {
    /// Runs `phoenix-diff ARGS` under /usr/bin/time; returns the result and the peak RSS in bytes.
    static func measured(_ args: [String], cwd: String) throws -> (ProcessResult, Int) {
        let time = try #require(["/usr/bin/time"].first { FileManager.default.isExecutableFile(atPath: $0) },
                                "GNU time is not installed (scripts/setup-debian.sh installs it)")
        let r = try Run.process(time, ["-f", "peak-rss-kb %M", CLI.binary] + args, cwd: cwd)
        let line = try #require(r.stderr.split(whereSeparator: \.isNewline).last { $0.hasPrefix("peak-rss-kb ") },
                                "no measurement in: \(r.stderr)")
        return (r, try #require(Int(line.dropFirst("peak-rss-kb ".count))) * 1024)
    }

    /// Makes OLD (random) and NEW (OLD with a block inserted part-way and a few bytes changed) with the
    /// shell, so that large files cost no test-process memory.
    static func makePair(in dir: String, megabytes: Int, insertAt: Int, edits: [Int]) throws {
        let script = """
            set -e
            head -c \(megabytes)M /dev/urandom > old
            head -c \(insertAt) old > new
            head -c 4096 /dev/urandom >> new
            tail -c +\(insertAt + 1) old >> new
            for off in \(edits.map(String.init).joined(separator: " ")); do
              printf 'X' | dd of=new bs=1 seek=$off conv=notrunc status=none
            done
            """
        let r = try Run.process("/bin/sh", ["-c", script], cwd: dir)
        try #require(r.status == 0, "making the test files: \(r.stderr)")
    }

    @Test func peakMemoryStaysUnderTheLimitOnLargerFiles() throws {
        let dir = try TemporaryDirectory()
        // 2 x 96 MiB of input against a 112 MiB limit: the in-memory engine would need ~1.2 GiB.
        try Self.makePair(in: dir.path, megabytes: 96, insertAt: 40 << 20,
                          edits: stride(from: 1_000, to: 96 << 20, by: 3_000_017).map { $0 })
        let limit = DiffEngine.minimumMemoryLimit
        let (make, peak) = try Self.measured(["make", "--memory-limit", "\(limit)", "old", "new", "p"], cwd: dir.path)
        #expect(make.status == 0, "\(make.stderr)")
        #expect(make.stdout.contains("low-memory mode"), "\(make.stdout)")
        #expect(peak <= limit, "peak RSS \(peak >> 20) MiB over the \(limit >> 20) MiB limit")
        let patchSize = try FileManager.default.attributesOfItem(atPath: dir.file("p"))[.size] as? Int ?? 0
        // 4 KiB of new random bytes and ~30 changed bytes; stored whole, new would be 96 MiB.
        #expect(patchSize > 4096 && patchSize < 200_000, "patch of \(patchSize) bytes")
        let apply = try CLI.run("apply", dir.file("old"), dir.file("p"), dir.file("out"))
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try Run.process("/usr/bin/cmp", [dir.file("new"), dir.file("out")]).status == 0)
    }

    /// New made of old's 8 KiB pieces in a shuffled order: every piece is found by a lookup into old
    /// at random. Each such read maps a whole large folio of old's page cache (~640 KiB measured), and
    /// the pages stayed until the next checkpoint: 144 MB resident under the smallest limit, 96 MiB. Now the
    /// resident mapped pages are measured every few lookups and old's released when over their share.
    @Test func scatteredLookupsIntoOldStayUnderTheLimit() throws {
        let dir = try TemporaryDirectory()
        let script = """
            import os, random
            random.seed(5)
            old = os.urandom(96 << 20)
            open("old", "wb").write(old)
            pieces = [old[i:i + 8192] for i in range(0, len(old), 8192)]
            random.shuffle(pieces)
            new = bytearray(b"".join(pieces))
            for k in range(0, len(new), 100003): new[k] ^= 0x55
            open("new", "wb").write(new)
            """
        let made = try Run.process("/usr/bin/env", ["python3", "-c", script], cwd: dir.path)
        try #require(made.status == 0, "making the test files: \(made.stderr)")
        let limit = DiffEngine.minimumMemoryLimit
        let (make, peak) = try Self.measured(["make", "--memory-limit", "\(limit)", "old", "new", "p"], cwd: dir.path)
        #expect(make.status == 0, "\(make.stderr)")
        #expect(make.stdout.contains("low-memory mode"), "\(make.stdout)")
        #expect(peak <= limit, "peak RSS \(peak >> 20) MiB over the \(limit >> 20) MiB limit")
        let apply = try CLI.run("apply", dir.file("old"), dir.file("p"), dir.file("out"))
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try Run.process("/usr/bin/cmp", [dir.file("new"), dir.file("out")]).status == 0)
    }

    /// A limit at the in-memory engine's estimate keeps that engine (the better patches), and its
    /// measured peak stays under the limit: the estimate is an upper bound, not a guess (for each index
    /// of old, and for `best`, which runs both).
    @Test(arguments: [MatchIndexKind.suffixArray, .hashChains, .best])
    func theInMemoryEngineStaysUnderItsEstimate(index: MatchIndexKind) throws {
        let dir = try TemporaryDirectory()
        try Self.makePair(in: dir.path, megabytes: 24, insertAt: 9 << 20,
                          edits: stride(from: 5_000, to: 24 << 20, by: 1_000_003).map { $0 })
        let newSize = (24 << 20) + 4096
        var options = DiffOptions()
        options.index = index
        let estimate = DiffEngine.estimatedPeakMemory(oldSize: 24 << 20, newSize: newSize, options: options)
        let limit = ((estimate + (1 << 20) - 1) >> 20) << 20
        let (make, peak) = try Self.measured(["make", "--index", index.rawValue, "--memory-limit", "\(limit)", "old", "new", "p"],
                                             cwd: dir.path)
        #expect(make.status == 0, "\(make.stderr)")
        #expect(!make.stdout.contains("low-memory mode"), "\(make.stdout)")
        #expect(peak <= limit, "peak RSS \(peak >> 20) MiB over the \(limit >> 20) MiB estimate")
        let apply = try CLI.run("apply", dir.file("old"), dir.file("p"), dir.file("out"))
        #expect(apply.status == 0, "\(apply.stderr)")
        // Under the estimate, the low-memory mode takes over.
        let (tight, tightPeak) = try Self.measured(["make", "--index", index.rawValue, "--memory-limit", "\(limit - (2 << 20))",
                                                    "old", "new", "p2"], cwd: dir.path)
        #expect(tight.status == 0, "\(tight.stderr)")
        #expect(tight.stdout.contains("low-memory mode"), "\(tight.stdout)")
        #expect(tightPeak <= limit - (2 << 20))
    }

    /// `make --index best` runs both indexes one after the other; its peak is the larger run's and the
    /// first run's patch (kept to compare), not that plus what the first run freed (the command maps
    /// large allocations, so frees go back).
    @Test func bestPeaksLikeTheLargerIndexAlone() throws {
        let dir = try TemporaryDirectory()
        // 24 MiB; new has a block inserted at 9 MiB and, from 17 MiB on, one byte value in 16 changed:
        // large streams for each run to free.
        let script = """
            set -e
            head -c 24M /dev/urandom > old
            head -c 9437184 old > new
            head -c 4096 /dev/urandom >> new
            tail -c +9437185 old | head -c 8M >> new
            tail -c +17825793 old | tr '\\000-\\017' '\\001-\\020' >> new
            """
        let r = try Run.process("/bin/sh", ["-c", script], cwd: dir.path)
        try #require(r.status == 0, "making the test files: \(r.stderr)")
        var peaks: [String: Int] = [:]
        for index in ["hash-chains", "suffix-array", "best"] {
            let (make, peak) = try Self.measured(["make", "--index", index, "old", "new", "p-\(index)"], cwd: dir.path)
            #expect(make.status == 0, "\(index): \(make.stderr)")
            peaks[index] = peak
        }
        let alone = max(peaks["hash-chains"]!, peaks["suffix-array"]!)
        // The chains run first; its patch is held while the suffix array runs. 8 MiB of slack: a run's
        // peak moves by a few MiB from one run to the next (when the chains' run was the larger, 4 held;
        // with block matches the suffix array's is), and what this test guards against is the first
        // run's freed index, tens of MiB here.
        let kept = (try FileManager.default.attributesOfItem(atPath: dir.file("p-hash-chains"))[.size] as? Int) ?? 0
        #expect(peaks["best"]! <= alone + kept + (8 << 20),
                "best peaked at \(peaks["best"]! >> 20) MiB, the larger index alone at \(alone >> 20), the first patch \(kept >> 20)")
    }

    @Test func aLimitBelowTheMinimumIsAUsageError() throws {
        let dir = try TemporaryDirectory()
        try dir.write("old", [1, 2, 3])
        try dir.write("new", [1, 2, 4])
        let r = try CLI.run("make", "--memory-limit", "64M", dir.file("old"), dir.file("new"), dir.file("p"))
        #expect(r.status == 1)
        #expect(r.stderr.contains("--memory-limit must be at least \(DiffEngine.minimumMemoryLimit >> 20)M"), "\(r.stderr)")
        let bad = try CLI.run("make", "--memory-limit", "lots", dir.file("old"), dir.file("new"), dir.file("p"))
        #expect(bad.status == 1)
        #expect(!FileManager.default.fileExists(atPath: dir.file("p")))
    }

    /// Opt-in (PHOENIX_LARGE_FILES=1; ~10 GB of sparse files, ~5 GB of memory for the apply): files
    /// over 4 GiB, changed beyond the 4 GiB mark, diffed under a 256 MiB limit.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["PHOENIX_LARGE_FILES"] == "1"))
    func filesOver4GiB() throws {
        let dir = try TemporaryDirectory()
        let size = (4 << 30) + (300 << 20)
        let script = """
            set -e
            truncate -s \(size) old
            for mb in 0 700 1500 2900 4095 4200 4390; do
              head -c 1M /dev/urandom | dd of=old bs=1M seek=$mb conv=notrunc status=none
            done
            cp --sparse=always old new
            head -c 1M /dev/urandom | dd of=new bs=1M seek=4300 conv=notrunc status=none
            for off in 7 \(3 << 30) \((4 << 30) + 12345) \((4200 << 20) + 99); do
              printf 'Y' | dd of=new bs=1 seek=$off conv=notrunc status=none
            done
            """
        let r = try Run.process("/bin/sh", ["-c", script], cwd: dir.path)
        try #require(r.status == 0, "making the test files: \(r.stderr)")
        let limit = 256 << 20
        let (make, peak) = try Self.measured(["make", "--memory-limit", "256M", "old", "new", "p"], cwd: dir.path)
        #expect(make.status == 0, "\(make.stderr)")
        #expect(peak <= limit, "peak RSS \(peak >> 20) MiB over the 256 MiB limit")
        let patchSize = try FileManager.default.attributesOfItem(atPath: dir.file("p"))[.size] as? Int ?? 0
        #expect(patchSize > 1 << 20 && patchSize < 3 << 20, "patch of \(patchSize) bytes for 1 MiB of new random data")
        let apply = try CLI.run("apply", dir.file("old"), dir.file("p"), dir.file("out"))
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try Run.process("/usr/bin/cmp", [dir.file("new"), dir.file("out")]).status == 0)
    }

    /// Without `--memory-limit`, `make` plans for three quarters of the memory this process may use,
    /// a control group's limit included: in a group capped at 448 MiB, a diff whose usual engine would
    /// need over 1 GiB takes the low-memory mode and finishes, where the usual engine would be killed.
    @Test(.enabled(if: MemoryCgroup.canCreate(), "needs a writable memory control group (cgroup v1 or v2)"))
    func withoutALimitMakeFitsItsControlGroup() throws {
        let dir = try TemporaryDirectory()
        try Self.makePair(in: dir.path, megabytes: 96, insertAt: 40 << 20,
                          edits: stride(from: 1_000, to: 96 << 20, by: 3_000_017).map { $0 })
        let make = try MemoryCgroup.run(limit: 448 << 20, "make old new p", cwd: dir.path)
        #expect(make.status == 0, "status \(make.status): \(make.stderr)")
        #expect(make.stdout.contains("low-memory mode"), "\(make.stdout)")
        #expect(make.stdout.contains("estimate is over"), "\(make.stdout)")
        #expect(make.stdout.contains("three quarters of the memory this process may use"), "\(make.stdout)")
        let apply = try CLI.run("apply", dir.file("old"), dir.file("p"), dir.file("out"))
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try Run.process("/usr/bin/cmp", [dir.file("new"), dir.file("out")]).status == 0)
    }

    /// Two trees: `old/lib.bin` and `new/lib.bin` the 96 MiB pair of `makePair`, a 12 MiB file added
    /// in new (stored whole, streamed), a small unchanged file.
    static func makeTrees(in dir: String) throws {
        try makePair(in: dir, megabytes: 96, insertAt: 40 << 20, edits: stride(from: 1_000, to: 96 << 20, by: 3_000_017).map { $0 })
        let script = """
            set -e
            mkdir old-tree new-tree
            mv old old-tree/lib.bin
            mv new new-tree/lib.bin
            head -c 12M /dev/urandom > new-tree/added.bin
            echo unchanged > old-tree/README
            cp old-tree/README new-tree/README
            """
        let r = try Run.process("/bin/sh", ["-c", script], cwd: dir)
        try #require(r.status == 0, "making the test trees: \(r.stderr)")
    }

    /// Applies bundle `p` to a copy of old-tree with the command line; the result must be new-tree.
    static func expectBundleApplies(in dir: TemporaryDirectory, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try TreeSpec.copy(dir.file("old-tree"), dir.file("installed"))
        let apply = try CLI.run("apply", dir.file("installed"), dir.file("p"))
        #expect(apply.status == 0, "\(apply.stderr)", sourceLocation: sourceLocation)
        let diff = try Run.process("/usr/bin/diff", ["-r", dir.file("new-tree"), dir.file("installed")])
        #expect(diff.status == 0, "\(diff.stdout)", sourceLocation: sourceLocation)
    }

    /// A directory bundle under `--memory-limit`: the changed 96 MiB file is diffed in the low-memory
    /// mode (in memory it would need ~1 GiB), the added 12 MiB one streamed, and the peak stays under.
    @Test func aBundleStaysUnderTheLimit() throws {
        let dir = try TemporaryDirectory()
        try Self.makeTrees(in: dir.path)
        let limit = 112 << 20
        let (make, peak) = try Self.measured(["make", "--memory-limit", "112M", "old-tree", "new-tree", "p"], cwd: dir.path)
        #expect(make.status == 0, "\(make.stderr)")
        #expect(make.stdout.contains("1 changed file diffed in the low-memory mode"), "\(make.stdout)")
        #expect(peak <= limit, "peak RSS \(peak >> 20) MiB over the \(limit >> 20) MiB limit")
        let bundleSize = try FileManager.default.attributesOfItem(atPath: dir.file("p"))[.size] as? Int ?? 0
        // The added file is random (12 MiB whole); the changed one costs its 4 KiB insert and edits.
        #expect(bundleSize > 12 << 20 && bundleSize < (12 << 20) + 300_000, "bundle of \(bundleSize) bytes")
        try Self.expectBundleApplies(in: dir)
    }

    /// Files that fit the limit one at a time but not two at once are diffed one at a time: four changed
    /// 12 MiB files (each ~90 MB by the estimate, ~95 MiB measured alone, ~180 MiB two side by side)
    /// under 160M, none in the low-memory mode.
    @Test func filesAreDiffedSideBySideOnlyAsManyAsFit() throws {
        let dir = try TemporaryDirectory()
        let script = """
            set -e
            mkdir old-tree new-tree
            for i in 1 2 3 4; do
              head -c 12M /dev/urandom > old-tree/f$i
              head -c 5000000 old-tree/f$i > new-tree/f$i
              head -c 2048 /dev/urandom >> new-tree/f$i
              tail -c +5000001 old-tree/f$i >> new-tree/f$i
            done
            """
        let r = try Run.process("/bin/sh", ["-c", script], cwd: dir.path)
        try #require(r.status == 0, "making the test trees: \(r.stderr)")
        let limit = 160 << 20
        let (make, peak) = try Self.measured(["make", "--threads", "4", "--memory-limit", "160M", "old-tree", "new-tree", "p"], cwd: dir.path)
        #expect(make.status == 0, "\(make.stderr)")
        #expect(make.stdout.contains("4 changed") && !make.stdout.contains("low-memory"), "\(make.stdout)")
        #expect(peak <= limit, "peak RSS \(peak >> 20) MiB over the 160 MiB limit")
        let bundleSize = try FileManager.default.attributesOfItem(atPath: dir.file("p"))[.size] as? Int ?? 0
        #expect(bundleSize > 4 * 2048 && bundleSize < 4 * 2048 + 20_000, "bundle of \(bundleSize) bytes")
        try Self.expectBundleApplies(in: dir)
    }

    /// Without `--memory-limit` a bundle, like a file patch, plans for three quarters of the memory the
    /// process may use: in a 448 MiB group the 96 MiB file's diff (usual engine ~1 GiB) takes the
    /// low-memory mode and the bundle is made, where it would be killed.
    @Test(.enabled(if: MemoryCgroup.canCreate(), "needs a writable memory control group (cgroup v1 or v2)"))
    func withoutALimitABundleFitsItsControlGroup() throws {
        let dir = try TemporaryDirectory()
        try Self.makeTrees(in: dir.path)
        let make = try MemoryCgroup.run(limit: 448 << 20, "make old-tree new-tree p", cwd: dir.path)
        #expect(make.status == 0, "status \(make.status): \(make.stderr)")
        #expect(make.stdout.contains("1 changed file diffed in the low-memory mode"), "\(make.stdout)")
        #expect(make.stdout.contains("three quarters of the memory this process may use"), "\(make.stdout)")
        try Self.expectBundleApplies(in: dir)
    }
}

/// A child of this process's memory control group with a limit, for one test (root, and a
/// hierarchy that lets us create groups: cgroup v1's memory controller, or v2 with it enabled).
struct MemoryCgroup {
    let path: String
    var procs: String { path + "/cgroup.procs" }

    /// This process's memory group directory and the name of its limit file.
    static func parent() -> (dir: String, limitFile: String)? {
        guard let listing = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        for line in listing.split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }
            if f[1].split(separator: ",").contains("memory") {
                return ("/sys/fs/cgroup/memory" + (f[2] == "/" ? "" : f[2]), "memory.limit_in_bytes")
            }
        }
        for line in listing.split(separator: "\n") where line.hasPrefix("0::") {
            let dir = "/sys/fs/cgroup" + (line.dropFirst(3) == "/" ? "" : line.dropFirst(3))
            if FileManager.default.fileExists(atPath: dir + "/memory.max") || FileManager.default.fileExists(atPath: dir + "/cgroup.subtree_control") {
                return (dir, "memory.max")
            }
        }
        return nil
    }

    static func canCreate() -> Bool {
        guard let g = try? MemoryCgroup(limit: 1 << 30) else { return false }
        g.remove()
        return true
    }

    init(limit: Int) throws {
        guard let (dir, limitFile) = Self.parent() else { throw CocoaError(.fileNoSuchFile) }
        path = dir + "/phoenix-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        do {
            try "\(limit)".write(toFile: path + "/" + limitFile, atomically: false, encoding: .utf8)
            // The limit must have taken: read it back.
            let back = try String(contentsOfFile: path + "/" + limitFile, encoding: .utf8)
            guard Int(back.split(whereSeparator: \.isWhitespace).first ?? "") == limit else { throw CocoaError(.fileWriteUnknown) }
        } catch {
            remove()
            throw error
        }
    }

    func remove() { rmdir(path) }

    /// Runs `phoenix-diff ARGUMENTS` (words split by the shell) inside a new group capped at `limit`.
    static func run(limit: Int, _ arguments: String, cwd: String) throws -> ProcessResult {
        let group = try MemoryCgroup(limit: limit)
        defer { group.remove() }
        return try Run.process("/bin/sh", ["-c", "echo $$ > \(group.procs) && exec \"$0\" \(arguments)", CLI.binary], cwd: cwd)
    }
}
