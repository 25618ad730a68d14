import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not all of Foundation: ICU and the rest cost ~9 MB of every run's memory
#else
import Foundation
#endif
import PatchFormat
import Patcher
import TreeIO

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Apply a patch: apply OLD PATCH NEW, apply --in-place FILE PATCH, or apply DIR BUNDLE.",
        discussion: """
            Files: the result is written to a temporary file beside the destination, verified (phx: \
            SHA-256 of the old file before, of the result after), fsynced and renamed into place. \
            Bundles: DIR is checked against the bundle's old tree, the new tree is built and verified \
            beside it, then swapped in atomically; the replaced version is kept for `rollback`. On any \
            error the destination is untouched and nothing is left behind.
            """
    )

    @Argument(help: "The old file (with --in-place: the file to update; for a bundle: the installation directory).") var old: String
    @Argument(help: "The patch or bundle.") var patch: String
    @Argument(help: "Where to write the new file (omit with --in-place and for bundles).") var new: String?

    @Flag(help: "Replace the old file itself, atomically, keeping its permissions (through a symbolic link, the file it points to).") var inPlace = false
    @Option(help: "Refuse patches whose declared new size is above this (bytes; K, M, G, T suffixes).")
    var maxOutput = ByteCount(PatchLimits.defaultMaxOutputSize)
    @Option(help: "Threads for hashing trees (default: all cores).") var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Flag(help: "Print the result as JSON (bundles).") var json = false
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if inPlace && new != nil { throw ValidationError("--in-place takes FILE PATCH, not a third path") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if old.isEmpty || patch.isEmpty || new?.isEmpty == true { throw ValidationError("a path is empty") }
    }

    func run() throws {
        let started = Date()
        if new == nil && !inPlace {
            guard BundleApplier.isBundle(path: patch) else {
                if !POSIX.exists(patch) {
                    throw PatcherError.io(operation: "cannot open", path: patch, errno: 2, message: "No such file or directory")
                }
                if POSIX.isDirectory(old) {
                    // A directory takes a bundle: say what PATCH is instead of asking for a NEW (not a
                    // patch at all: the header reader's error, naming the magic or the short file).
                    _ = try PatchApplier.inspect(patchPath: patch)
                    throw ValidationError("\(patch) is a file patch; a directory is updated by a bundle (make OLD-DIR NEW-DIR BUNDLE)")
                }
                throw ValidationError("missing NEW: use apply OLD PATCH NEW, apply --in-place FILE PATCH, or apply DIR BUNDLE")
            }
            try applyBundle(started: started)
            return
        }
        if BundleApplier.isBundle(path: patch) {
            throw ValidationError("\(patch) is a directory bundle: apply it to an installation with `apply DIR BUNDLE` (no NEW)")
        }
        // In place through a symbolic link: the file it points to is updated and the link stays (as a
        // bundle's installation reached through a link is); replaced, the link became a copy.
        let destination = inPlace ? POSIX.resolvedPath(old) : new!
        try POSIX.checkOutput(destination)
        let bar = ProgressBar(label: "apply", quiet: output.quiet)
        let options = ApplyOptions(limits: PatchLimits(maxOutputSize: maxOutput.value)) { written, total in
            bar.update(total == 0 ? 1 : Double(written) / Double(total), detail: formatBytes(written))
        }
        let result = try PatchApplier.apply(oldPath: old, patchPath: patch, outputPath: destination, options: options)
        bar.finish()
        if !output.quiet {
            let verified = result.verified ? " (verified)" : " (bsdiff: no checksum to verify)"
            print("\(inPlace ? old : destination): \(formatBytes(result.newSize)), sha256 \(result.newSHA256)\(verified), "
                  + "in \(fixed(Date().timeIntervalSince(started), 2)) s")
        }
    }

    func applyBundle(started: Date) throws {
        let bar = ProgressBar(label: "update", quiet: output.quiet)
        var limits = BundleLimits()
        limits.maxFileBytes = maxOutput.value
        let result = try BundleApplier.apply(directory: old, bundlePath: patch, options: BundleApplyOptions(
            limits: limits, threads: threads, progress: { phase, f in bar.update(f, detail: phase) }))
        bar.finish()
        if output.quiet { return }
        if json {
            printJSON(result)
        } else if result.unchanged {
            print("\(result.directory): already the bundle's new tree \(result.newDigest.prefix(16)); nothing was changed")
        } else {
            print("\(result.directory): updated to tree \(result.newDigest.prefix(16)) (\(result.entries) entries, "
                  + "\(result.filesWritten) files written, \(formatBytes(result.bytesWritten))), previous version kept for "
                  + "rollback: \(result.backup == nil ? "no (fresh install)" : "yes"), in \(fixed(Date().timeIntervalSince(started), 2)) s")
        }
    }
}

struct RecoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Finish or undo an update of DIR that was interrupted (crash, kill, power cut).")

    @Argument(help: "The installation directory.") var directory: String

    func validate() throws {
        if directory.isEmpty { throw ValidationError("the installation directory is an empty path") }
    }
    @Flag(help: "Print the result as JSON.") var json = false
    @OptionGroup var output: OutputOptions

    func run() throws {
        try BundleApplier.requireInstallationOrState(directory: directory)
        let outcome = try BundleApplier.recover(directory: directory)
        if output.quiet { return }
        if json {
            printJSON(["directory": directory, "outcome": outcome.rawValue])
        } else {
            switch outcome {
            case .clean: print("\(directory): nothing to recover")
            case .finished: print("\(directory): finished the interrupted update; the tree is the new version")
            case .undone: print("\(directory): undid the interrupted update; the tree is the old version")
            }
        }
    }
}

struct RollbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Restore the version DIR had before its last update (verified by its digest).")

    @Argument(help: "The installation directory.") var directory: String

    func validate() throws {
        if directory.isEmpty { throw ValidationError("the installation directory is an empty path") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }
    @Option(help: "Threads for hashing trees (default: all cores).") var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Flag(help: "Print the result as JSON.") var json = false
    @OptionGroup var output: OutputOptions

    func run() throws {
        let result = try BundleApplier.rollback(directory: directory, options: BundleApplyOptions(threads: threads))
        if output.quiet { return }
        if json {
            printJSON(result)
        } else {
            print("\(result.directory): rolled back to tree \(result.newDigest.prefix(16)) (\(result.entries) entries); the version rolled back from is kept as the backup")
        }
    }
}

func printJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    if let data = try? encoder.encode(value) { print(String(decoding: data, as: UTF8.self)) }
}
