import ArgumentParser
import DiffEngine
#if canImport(FoundationEssentials)
import FoundationEssentials  // not all of Foundation: ICU and the rest cost ~9 MB of every run's memory
#else
import Foundation
#endif
import PatchFormat
import Patcher
import TreeIO

struct MakeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make",
        abstract: "Make a patch: make OLD NEW PATCH (files or directories), or make --full NEW_DIR PATCH.",
        discussion: """
            For two files the default format is phx (checksummed, xz); --format bsdiff writes a classic \
            BSDIFF40 patch that Debian's bspatch applies. For two directories the result is a bundle that \
            `apply DIR PATCH` applies in place; --full makes a bundle from the empty tree, which installs \
            or replaces a whole tree. The patch is written atomically.
            """
    )

    @Argument(help: ArgumentHelp("OLD NEW PATCH, or NEW_DIR PATCH with --full.", valueName: "path"))
    var paths: [String] = []

    @Flag(help: "Make a full bundle of NEW_DIR (from the empty tree).") var full = false
    @Option(help: "Patch format for files: phx or bsdiff.") var format: PatchKind = .phx
    @Option(help: "Codec: xz (default for file patches: smallest), zstd (default for bundles: fastest to apply), bzip2, zlib or none. bsdiff always uses bzip2.") var codec: CodecID?
    @Option(help: "Compression level (xz 0-9, default 6; zstd 1-22, default 19; bzip2 1-9; zlib 0-9).") var level: Int?
    @Option(help: "Diff order (phx files and bundles): auto (default: make both, keep the smaller; a file with under one diff byte in 2,048 changed keeps natural), natural, or context (old-context order; smaller on most executables, a little slower to apply).")
    var diffOrder: String = "auto"
    @Option(help: "Control stream layout (phx files and bundles): auto (default: make both, keep the smaller), interleaved, or split.")
    var control: String = "auto"
    @Option(help: ArgumentHelp("Most memory the diff may use, in bytes (suffixes K, M, G). When the usual engine would need more, a low-memory mode is used (anchor index; slightly larger patches; files of any size); in a bundle, files are diffed side by side only as many as fit, and a file too large alone takes that mode. At least \(DiffEngine.minimumMemoryLimit >> 20)M. Default: three quarters of the memory this process may use (the machine's RAM, or less where a control group caps it).", valueName: "bytes"))
    var memoryLimit: ByteCount?
    @Option(help: "How old is searched for matches (each changed file, in a bundle): auto (default: hash-chains for old files under 4 GiB, suffix-array from there), hash-chains (no suffix sort: 1.4-2.1x faster on the benchmark pairs, patches 3% smaller to 2% larger), suffix-array (the longest match everywhere; the smallest patches on most files) or best (files: make both, keep the smaller; about the time of both).")
    var index: MatchIndexKind = .auto
    @Option(help: "Threads (default: all cores). The patch bytes do not depend on it.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @OptionGroup var output: OutputOptions

    var options: DiffOptions {
        var o = DiffOptions(format: format, codec: codec, level: level, threads: threads)
        o.diffOrder = DiffOrder(rawValue: diffOrder)
        o.splitControl = control == "auto" ? nil : control == "split"
        // Without a limit, one the machine can hold: a diff too large for it takes the low-memory mode
        // rather than being killed by the kernel half-way. (Only regular files can be mapped for that
        // mode; /dev/null as old, "make a patch from nothing", is read as before.)
        let mappable = paths.count == 3 && paths.prefix(2).allSatisfy(POSIX.isRegularFile)
        o.memoryLimit = memoryLimit.map { Int(clamping: $0.value) } ?? (mappable ? UsableMemory.defaultMakeLimit() : nil)
        o.index = index
        return o
    }

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
        guard diffOrder == "auto" || DiffOrder(rawValue: diffOrder) != nil else {
            throw ValidationError("--diff-order must be auto, natural or context, got \(diffOrder)")
        }
        guard ["auto", "interleaved", "split"].contains(control) else {
            throw ValidationError("--control must be auto, interleaved or split, got \(control)")
        }
        if format == .bsdiff && (diffOrder != "auto" || control != "auto") {
            throw ValidationError("--diff-order and --control choose phx layouts; BSDIFF40 has one layout")
        }
        if full {
            guard paths.count == 2 else { throw ValidationError("make --full takes NEW_DIR PATCH (got \(paths.count) paths)") }
        } else {
            guard paths.count == 3 else { throw ValidationError("make takes OLD NEW PATCH (got \(paths.count) paths)") }
        }
        do { try options.validate() } catch let e as DiffEngineError { throw ValidationError(e.description) }
        if let m = memoryLimit?.value, m < DiffEngine.minimumMemoryLimit {
            throw ValidationError("--memory-limit must be at least \(DiffEngine.minimumMemoryLimit >> 20)M, got \(m) bytes")
        }
    }

    func run() throws {
        let started = Date()
        let bar = ProgressBar(label: "make", quiet: output.quiet)
        let patch = paths.last!
        // The patch must not replace an input (`make old new old` destroyed old, which the patch then
        // needs), nor a device or FIFO; and a wrong output directory fails now, not after the diff.
        // (A PATCH that is a symbolic link is replaced, not written through: never an input.)
        let patchIsLink = POSIX.isSymlink(patch)
        for input in paths.dropLast() {
            if !patchIsLink && POSIX.sameFile(input, patch) {
                throw DiffEngineError.unsupportedCombination("PATCH \(patch) is the input \(input): writing it would destroy that input")
            }
            // Inside a tree being diffed, the patch would change that tree (and no longer apply to it).
            if POSIX.isDirectory(input) {
                let tree = POSIX.resolvedPath(input), at = POSIX.resolvedPath(POSIX.directory(of: patch))
                if at == tree || at.hasPrefix(tree == "/" ? "/" : tree + "/") {
                    throw DiffEngineError.unsupportedCombination("PATCH \(patch) is inside the tree \(input), which it would change")
                }
            }
        }
        try POSIX.checkOutput(patch)
        let dirs = paths.dropLast().map { POSIX.isDirectory($0) }
        if full || dirs.allSatisfy({ $0 }) {
            if format == .bsdiff { throw ValidationError("directory bundles have their own format; --format bsdiff is for files") }
            if index == .best { throw ValidationError("--index best applies to the diff of two files; for bundles use auto, hash-chains or suffix-array") }
            for p in paths.dropLast() where !POSIX.isDirectory(p) {
                throw TreeIOError.io(operation: "not a directory:", path: p, errno: 20, message: "a bundle is made from directories")
            }
            // Without a limit, one the machine can hold, as for two files.
            let limit = memoryLimit.map { Int(clamping: $0.value) } ?? UsableMemory.defaultMakeLimit()
            var bundleOptions = BundleOptions(codec: codec ?? .zstd, level: level, threads: threads, index: index, memoryLimit: limit)
            bundleOptions.strictMemoryLimit = memoryLimit != nil
            bundleOptions.diffOrder = DiffOrder(rawValue: diffOrder)
            bundleOptions.splitControl = control == "auto" ? nil : control == "split"
            let summary = try BundleMaker.make(oldRoot: full ? nil : paths[0], newRoot: paths[paths.count - 2], to: patch,
                                               options: bundleOptions) {
                bar.update($0)
            }
            bar.finish()
            if !output.quiet {
                let why = memoryLimit == nil ? ", three quarters of the memory this process may use" : ""
                let lowMemory = summary.lowMemory == 0 ? "" : "; \(summary.lowMemory) changed file\(summary.lowMemory == 1 ? "" : "s") "
                    + "diffed in the low-memory mode (the usual engine's estimate is over what the limit of \(formatBytes(UInt64(limit ?? 0))) leaves\(why))"
                print("\(patch): \(full ? "full " : "")bundle, \(formatBytes(summary.bundleBytes)) for a "
                      + "\(formatBytes(summary.newBytes)) tree of \(summary.newEntries) entries: \(summary.added) added, "
                      + "\(summary.changed) changed, \(summary.removed) removed, \(summary.copied) moved or copied, "
                      + "\(summary.unchanged) unchanged\(lowMemory), in \(fixed(Date().timeIntervalSince(started), 2)) s")
            }
            return
        }
        if dirs.contains(true) {
            throw ValidationError("OLD and NEW must both be files or both be directories")
        }
        // `best` runs one diff after another: with glibc's default the second starts on top of memory
        // the first freed (ruff's peak 182-197 MB instead of 165); mapped, that memory goes back.
        if index == .best { POSIX.mapLargeAllocations(above: 1 << 20) }
        // Once: the default memory limit reads /proc and stats both inputs.
        let options = self.options
        let summary = try DiffEngine.makePatchFile(oldPath: paths[0], newPath: paths[1], to: patch, options: options) { f in
            bar.update(f)
        }
        bar.finish()
        let newSize = summary.newBytes
        if !output.quiet {
            let ratio = newSize == 0 ? 0 : Double(summary.patchBytes) / Double(newSize) * 100
            let chosen = memoryLimit == nil ? "; the usual engine's estimate is over \(formatBytes(UInt64(options.memoryLimit ?? 0))), three quarters of the memory this process may use" : ""
            let mode = summary.anchorSpacing.map { ", low-memory mode (an anchor every ~\($0) bytes\(chosen))" } ?? ""
            let kind = options.format == .phx ? "phx/\(options.codec.name)" : "bsdiff"
            print("\(patch): \(kind) patch, \(formatBytes(summary.patchBytes)) (\(fixed(ratio, 2))% of the new file's "
                  + "\(formatBytes(newSize)))\(mode), in \(fixed(Date().timeIntervalSince(started), 2)) s")
        }
    }
}

